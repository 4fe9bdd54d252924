//! The kernel's own accounting (CPU, disk I/O), as a second ground truth next to the child's clock.

use std::fs;

/// Nanoseconds on CPU of all live threads of `pid`: the sum of the first field of
/// `/proc/<pid>/task/*/schedstat` (`se.sum_exec_runtime`). `/proc/<pid>/schedstat` alone covers
/// only the main thread, and threads that already exited are gone from `task/`, so read this
/// while every thread is still alive.
pub fn task_schedstat_ns(pid: u32) -> u64 {
    task_schedstat_field(pid, 0)
}

/// Nanoseconds all live threads of `pid` waited on a run queue: the second field of
/// `/proc/<pid>/task/*/schedstat` (`sched_info.run_delay`), read like [`task_schedstat_ns`].
pub fn task_run_delay_ns(pid: u32) -> u64 {
    task_schedstat_field(pid, 1)
}

fn task_schedstat_field(pid: u32, field: usize) -> u64 {
    let dir = format!("/proc/{pid}/task");
    let tasks = fs::read_dir(&dir).unwrap_or_else(|err| panic!("reading {dir}: {err}"));
    tasks
        .map(|task| {
            let path = task
                .unwrap_or_else(|err| panic!("listing {dir}: {err}"))
                .path()
                .join("schedstat");
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
            text.split_whitespace()
                .nth(field)
                .and_then(|value| value.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{}: unexpected content {text:?}", path.display()))
        })
        .sum()
}

/// Nanoseconds the hypervisor stole from all CPUs since boot (`steal` in `/proc/stat`, ticks of
/// `USER_HZ`). The kernel's per-task CPU clocks leave stolen time out; a profiler that charges
/// wall-clock deltas between context switches cannot, so CPU tests print it next to their error.
pub fn steal_ns() -> u64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_else(|err| panic!("/proc/stat: {err}"));
    let ticks = stat
        .lines()
        .next()
        .and_then(|cpu| cpu.split_whitespace().nth(8))
        .and_then(|field| field.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("/proc/stat has no steal field"));
    // SAFETY: sysconf has no preconditions.
    let user_hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    ticks * (1_000_000_000 / user_hz)
}

/// `read_bytes`, `write_bytes` and `cancelled_write_bytes` of `/proc/<pid>/io`: the kernel's
/// task I/O accounting of the whole process, exited threads included.
pub fn disk_io(pid: u32) -> crate::truth::DiskIo {
    let path = format!("/proc/{pid}/io");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {path}: {err}"));
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("{path} has no {name}: {text:?}"))
    };
    crate::truth::DiskIo {
        pid,
        read_bytes: field("read_bytes"),
        write_bytes: field("write_bytes"),
        cancelled_write_bytes: field("cancelled_write_bytes"),
    }
}
