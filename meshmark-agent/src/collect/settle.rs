//! Settling: a thread that is still running has not been charged for its current stretch on
//! the CPU (charges happen at switch-out). Waking a short-lived thread pinned to each CPU forces
//! a switch there, so a window's end includes the CPU time up to that moment.

use std::thread;

/// Forces at least one context switch on each of `cpus`, then returns.
pub fn settle(cpus: &[u32]) {
    let handles: Vec<_> = cpus
        .iter()
        .map(|&cpu| {
            thread::spawn(move || {
                // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it.
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu as usize, &mut set);
                    if libc::sched_setaffinity(0, size_of_cpu_set(), &set) == 0 {
                        // Now running on `cpu`: whatever ran there was switched out. Yield once
                        // more so a task preempted by our migration is charged too.
                        libc::sched_yield();
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
}

fn size_of_cpu_set() -> usize {
    std::mem::size_of::<libc::cpu_set_t>()
}
