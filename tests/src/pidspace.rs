//! Thread ids as production nodes have them: `kernel.pid_max` raised to 4,194,304 (what systemd
//! sets) for the length of a test and restored afterwards, and processes placed at chosen ids
//! through `/proc/sys/kernel/ns_last_pid`, so that tests can make ids that share their low bits.

use std::fs;
use std::process::{Child, Command};

use anyhow::{Context, Result};

const PID_MAX: &str = "/proc/sys/kernel/pid_max";
const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";

/// What systemd sets on real nodes: `PID_MAX_LIMIT` on 64-bit.
pub const SYSTEMD_PID_MAX: u32 = 4_194_304;

/// Attempts at placing one process: another process of the node may take the id first.
const PLACE_ATTEMPTS: usize = 20;

/// `kernel.pid_max` raised for as long as this lives; the old value is put back on drop.
pub struct PidMax {
    previous: String,
}

impl PidMax {
    pub fn raise(to: u32) -> PidMax {
        let previous = fs::read_to_string(PID_MAX).expect("reading kernel.pid_max");
        fs::write(PID_MAX, to.to_string()).expect("raising kernel.pid_max (root needed)");
        eprintln!("kernel.pid_max: {} -> {to} for this test", previous.trim());
        PidMax { previous }
    }
}

impl Drop for PidMax {
    fn drop(&mut self) {
        if let Err(err) = fs::write(PID_MAX, self.previous.trim()) {
            eprintln!(
                "restoring kernel.pid_max to {}: {err}",
                self.previous.trim()
            );
        }
    }
}

/// Makes `last` the last id handed out, so the next process or thread gets `last + 1` if free.
pub fn set_last_pid(last: u32) -> Result<()> {
    fs::write(NS_LAST_PID, last.to_string()).with_context(|| format!("writing {NS_LAST_PID}"))
}

/// Spawns `command` as process id `pid`; when another process of the node takes that id first,
/// tries `pid + step`, `pid + 2 * step`, ... (a multiple of 65,536 keeps the low bits).
pub fn spawn_at(pid: u32, step: u32, command: &mut Command) -> Child {
    let mut want = pid;
    for _ in 0..PLACE_ATTEMPTS {
        set_last_pid(want - 1).expect("placing a pid (root needed)");
        let mut child = command.spawn().expect("spawning a placed process");
        if child.id() == want {
            return child;
        }
        let _ = child.kill();
        let _ = child.wait();
        want += step;
    }
    panic!("could not start a process at pid {pid} or after in {PLACE_ATTEMPTS} attempts");
}
