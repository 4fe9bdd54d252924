//! What runs inside each kernel: the workloads (one table, shared with the checks), the `/init`
//! script that runs them in one profile window, and the initramfs that carries it all, since
//! neither kernel has 9p to share a folder.

use std::{fs, path::Path, time::Duration};

use anyhow::{Context as _, Result};

use super::{binaries::Binaries, cpio::Archive, expect::Run};

/// Where busybox lives in the host (Debian's busybox-static): the host architecture's guests use
/// it, the others one downloaded for them (`download::busybox`).
pub const BUSYBOX: &str = "/bin/busybox";

/// The busybox applets `/init` calls, linked in `/bin`.
const APPLETS: &[&str] = &[
    "sh", "mount", "ip", "hostname", "grep", "sleep", "cat", "uname", "dmesg", "tail", "poweroff",
    "rm", "wget", "awk",
];

/// What each workload is, for the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An `Exchange` whose bytes go over loopback.
    Loopback,
    /// An `Exchange` over a unix socket pair.
    Unix,
    /// `Threads` with this many one-byte datagrams.
    Sends(u64),
    /// `Burn`.
    Burn,
    /// `HttpRequests`: each of the client's completed requests is one turn of the server's,
    /// exact, or multiplexed where the client sent before reading the last response.
    Requests { multiplexed: bool },
}

pub struct Workload {
    pub name: &'static str,
    pub args: &'static str,
    pub kind: Kind,
}

/// The workloads, run in this order inside one profile window; the names key the checks. The
/// byte counts match the host's tests/tests/net.rs; the two `threads` runs differ only in their
/// number of sends, so their syscall counts must differ by exactly that.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "tcp",
        args: "stream --kind tcp --send 1000003 --reply 250007",
        kind: Kind::Loopback,
    },
    Workload {
        name: "udp",
        args: "udp --count 200 --size 1200 --ack 16",
        kind: Kind::Loopback,
    },
    Workload {
        name: "unix",
        args: "stream --kind unix --send 1000003 --reply 250007",
        kind: Kind::Unix,
    },
    Workload {
        name: "sends-2000",
        args: "threads --threads 0 --datagrams 2000",
        kind: Kind::Sends(2000),
    },
    Workload {
        name: "sends-4000",
        args: "threads --threads 0 --datagrams 4000",
        kind: Kind::Sends(4000),
    },
    // Request turns over TCP (marked at the handshake) and over unix (marked by the
    // `unix_connections` hooks, fexit or kprobe), with an idle and a half-sent connection each.
    Workload {
        name: "http-tcp",
        args: "http --connections 2 --requests 10 --sleep-ms 5 --edge-cases",
        kind: Kind::Requests { multiplexed: false },
    },
    Workload {
        name: "http-unix",
        args: "http --unix --connections 2 --requests 10 --sleep-ms 5 --edge-cases",
        kind: Kind::Requests { multiplexed: false },
    },
    // Each request sent while the response to the one before is still unread.
    Workload {
        name: "http-unix-overlap",
        args: "http --unix --overlap --connections 1 --requests 4 --sleep-ms 5",
        kind: Kind::Requests { multiplexed: true },
    },
    Workload {
        name: "burn",
        args: "burn --threads 1 --cpu-ms 200",
        kind: Kind::Burn,
    },
];

/// `run`'s windows in the guest: short, so that a few of them (each attaching the duty-cycled
/// programs again) fit in little emulated time.
pub const SERVE_WINDOW: Duration = Duration::from_secs(4);
/// The share of each of those windows the sampled programs are attached for.
pub const SERVE_DUTY: f64 = 0.5;
/// How many windows `run` scores before the guest reads the last one: the third needs the
/// sampled programs attached a third time.
pub const SERVE_WINDOWS: u32 = 3;

/// The longest the guest waits for `run` to score its windows: one window more than they take,
/// plus what the agent may take to start.
pub fn serve_limit(ready: Duration) -> Duration {
    SERVE_WINDOW * (SERVE_WINDOWS + 1) + ready
}

/// `/init` that runs, per run, one profile window of `window` around all the workloads, waiting
/// at most `ready` for the agent to start it; after the window without forced hooks, `run` for
/// [`SERVE_WINDOWS`] windows, waiting at most `ready` more than they take.
pub fn init_script(runs: &[Run], window: Duration, ready: Duration) -> String {
    let workloads: Vec<String> = WORKLOADS
        .iter()
        .map(|w| format!("    run_workload {} {}", w.name, w.args))
        .collect();
    let runs: Vec<String> = runs
        .iter()
        .map(|run| match run.force {
            // `run` as on a node, with the hooks the kernel chooses; forced hooks only profile
            // (each serving costs the matrix 15 to 70 s under emulation).
            None => format!(
                "profile_window {name}\nserve_windows {name}",
                name = run.name
            ),
            Some(hook) => format!("profile_window {} --hook {hook}", run.name),
        })
        .collect();
    let serve_limit = serve_limit(ready);
    include_str!("init.sh")
        .replace("@DURATION@", &format!("{}s", window.as_secs()))
        .replace("@READY_TENTHS@", &(ready.as_millis() / 100).to_string())
        .replace("@WORKLOADS@", &workloads.join("\n"))
        .replace("@SERVE_WINDOW@", &format!("{}s", SERVE_WINDOW.as_secs()))
        .replace("@SERVE_WINDOWS@", &SERVE_WINDOWS.to_string())
        .replace("@SERVE_DUTY@", &format!("{}%", SERVE_DUTY * 100.0))
        .replace(
            "@SERVE_LIMIT_TENTHS@",
            &(serve_limit.as_millis() / 100).to_string(),
        )
        .replace("@RUNS@", &runs.join("\n"))
}

/// Writes the initramfs to `out`: folders, `/dev/console` (init's stdio before devtmpfs is
/// mounted), busybox and its applets, `/init`, and the two static binaries.
pub fn write_initramfs(out: &Path, init: &str, binaries: &Binaries) -> Result<()> {
    let read = |path: &Path| fs::read(path).with_context(|| format!("reading {}", path.display()));
    let mut archive = Archive::new();
    for dir in ["bin", "dev", "proc", "sys", "tmp", "etc"] {
        archive.dir(dir);
    }
    archive.char_device("dev/console", 0o600, 5, 1);
    archive.file("bin/busybox", 0o755, &read(&binaries.busybox)?);
    for applet in APPLETS {
        archive.symlink(&format!("bin/{applet}"), "busybox");
    }
    archive.file("bin/meshmark-agent", 0o755, &read(&binaries.agent)?);
    archive.file("bin/mm-workload", 0o755, &read(&binaries.workload)?);
    archive.file("init", 0o755, init.as_bytes());
    fs::write(out, archive.finish()).with_context(|| format!("writing {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_runs_every_workload_in_each_window() {
        let runs = crate::kernels::expect::MATRIX[1].runs;
        let init = init_script(runs, Duration::from_secs(40), Duration::from_secs(60));
        let unfilled = init
            .split('@')
            .skip(1)
            .any(|after| after.starts_with(|c: char| c.is_ascii_uppercase()));
        assert!(!unfilled, "unfilled field in:\n{init}");
        assert!(init.contains("profile --duration 40s --format json"));
        assert!(init.contains("-ge 600 ]"));
        for w in WORKLOADS {
            assert!(init.contains(&format!("    run_workload {} {}\n", w.name, w.args)));
        }
        assert!(init.contains(
            "\nprofile_window chosen\n\
             serve_windows chosen\n\
             profile_window fexit --hook socket_bytes=fexit\n\
             profile_window kretprobe --hook socket_bytes=kretprobe\n"
        ));
        assert!(init.contains("--window 4s --duty-cycle 50%"));
    }

    #[test]
    fn the_two_sends_differ_by_2000() {
        let sends: Vec<u64> = WORKLOADS
            .iter()
            .filter_map(|w| match w.kind {
                Kind::Sends(n) => Some(n),
                _ => None,
            })
            .collect();
        assert_eq!(sends, [2000, 4000]);
    }
}
