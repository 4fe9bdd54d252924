//! Disk bytes: what the profiler charges a process against the kernel's own task I/O
//! accounting (`/proc/<pid>/io`), exactly: for a process that exits inside the window, for a
//! live one (the difference of its `/proc/<pid>/io` at the window's edges) and for threads that
//! exit one by one. The files live under the target directory, on a disk: O_DIRECT needs a
//! filesystem that takes it (tmpfs does not), which the workload checks.

use meshmark_tests::check::assert_exact;
use meshmark_tests::lookup::process;
use meshmark_tests::truth::DiskIo;
use meshmark_tests::window::ProfiledWindow;
use meshmark_tests::{procfs, workload};

const MIB: u64 = 1 << 20;

/// An empty directory of this test under the target directory, removed with what is left in
/// it when the test ends (the workload removes its own files).
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("creating {dir:?}: {err}"));
        Scratch(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 target directory")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A scratch directory and a profiled window started after it; `None` where BPF cannot run.
fn scratch_window(name: &str) -> Option<(Scratch, ProfiledWindow)> {
    let scratch = Scratch::new(name);
    Some((scratch, ProfiledWindow::start()?))
}

fn assert_disk(what: &str, measured: &meshmark_agent::snapshot::ProcessSample, truth: DiskIo) {
    assert_exact(
        &format!("{what} read_bytes"),
        measured.read_bytes,
        truth.read_bytes,
    );
    assert_exact(
        &format!("{what} write_bytes"),
        measured.write_bytes,
        truth.write_bytes,
    );
    assert_exact(
        &format!("{what} cancelled_write_bytes"),
        measured.cancelled_write_bytes,
        truth.cancelled_write_bytes,
    );
}

#[test]
fn direct_io_of_a_process_that_exits_inside_the_window_is_exact() {
    let Some((scratch, window)) = scratch_window("disk-exit") else {
        return;
    };
    let dir = scratch.path();
    let mut writer = workload!("disk --dir {dir} --direct --write-mib 8 --read-mib 4");
    let truth: DiskIo = writer.truth();
    writer.finish();
    let snapshot = window.end();

    assert!(
        truth.write_bytes >= 8 * MIB && truth.read_bytes >= 4 * MIB,
        "the kernel saw the workload's O_DIRECT I/O: {truth:?}"
    );
    let sample = process(&snapshot, truth.pid);
    assert!(sample.exited, "pid {} exited inside the window", truth.pid);
    assert_disk("exited O_DIRECT process", sample, truth);
}

#[test]
fn buffered_writes_of_a_live_process_equal_its_proc_io_difference() {
    let scratch = Scratch::new("disk-live");
    let dir = scratch.path();
    let mut writer = workload!("disk --dir {dir} --write-mib 8 --wait-go --wait-after");
    let Some(window) = ProfiledWindow::start() else {
        return;
    };
    // The writer waits on stdin at both edges: nothing of it runs between a read of its
    // /proc/<pid>/io and the window's edge.
    let before = procfs::disk_io(writer.pid());
    writer.go();
    let reported: DiskIo = writer.truth();
    let after = procfs::disk_io(writer.pid());
    let snapshot = window.end();
    writer.finish();

    assert_eq!(reported, after, "nothing ran after the writer reported");
    assert!(
        after.write_bytes - before.write_bytes >= 8 * MIB,
        "dirtied pages count as written: {before:?} -> {after:?}"
    );
    let sample = process(&snapshot, after.pid);
    assert!(!sample.exited, "pid {} was alive at window end", after.pid);
    assert_disk(
        "live buffered writer",
        sample,
        DiskIo {
            pid: after.pid,
            read_bytes: after.read_bytes - before.read_bytes,
            write_bytes: after.write_bytes - before.write_bytes,
            cancelled_write_bytes: after.cancelled_write_bytes - before.cancelled_write_bytes,
        },
    );
}

#[test]
fn threads_that_do_io_and_exit_one_by_one_sum_exactly() {
    let Some((scratch, window)) = scratch_window("disk-threads") else {
        return;
    };
    let dir = scratch.path();
    let threads = 6;
    let mut writer = workload!(
        "disk --dir {dir} --direct --write-mib 2 --read-mib 1 --threads {threads} --wait-after"
    );
    let truth: DiskIo = writer.truth();
    let snapshot = window.end();
    writer.finish();

    assert!(
        truth.write_bytes >= threads * 2 * MIB && truth.read_bytes >= threads * MIB,
        "the kernel saw every thread's I/O: {truth:?}"
    );
    let sample = process(&snapshot, truth.pid);
    assert!(!sample.exited, "pid {} was alive at window end", truth.pid);
    eprintln!(
        "check disk threads: {} threads seen, {threads} workers and the main thread",
        sample.threads
    );
    assert_eq!(u64::from(sample.threads), threads + 1);
    assert_disk("threads exiting one by one", sample, truth);
}
