//! `profile` ends well however it is ended: SIGHUP (a closed terminal or ssh session) writes the
//! window as SIGINT and SIGTERM do, instead of killing the agent with the window unwritten, and a
//! reader that leaves (`profile | head -1`) ends it with status 3 and a message, not a panic.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshmark_tests::gate::require_agent_bin;
use serde_json::Value;

#[test]
fn sighup_writes_the_window() {
    let Some(bin) = require_agent_bin() else {
        return;
    };
    for (name, signal) in [("SIGHUP", libc::SIGHUP), ("SIGTERM", libc::SIGTERM)] {
        let mut child = Command::new(&bin)
            .args(["profile", "--duration", "60s", "--format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting meshmark-agent profile");
        // Programs attached and the window begun once it says so.
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("profiling for") {
            line.clear();
            let read = stderr.read_line(&mut line).unwrap();
            assert!(read > 0, "{name}: the agent ended before its window began");
        }
        let sent = Instant::now();
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: signalling our own unreaped child.
        unsafe { libc::kill(pid, signal) };
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let status = child.wait().unwrap();
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).unwrap();
        assert!(status.success(), "{name}: {status}; stderr:\n{rest}");
        assert!(
            sent.elapsed() < Duration::from_secs(20),
            "{name}: ended {:?} after the signal",
            sent.elapsed()
        );
        let profile: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{name}: no profile on stdout ({e}):\n{stdout}"));
        assert_eq!(profile["schema"], "meshmark.profile/v1", "{name}");
        let window_ns = profile["window"]["duration_ns"].as_u64().unwrap();
        assert!(
            window_ns < 30_000_000_000,
            "{name}: the window ({window_ns} ns) ended at the signal"
        );
        assert!(
            profile["processes"]
                .as_array()
                .is_some_and(|p| !p.is_empty()),
            "{name}"
        );
        assert!(rest.contains("ending early"), "{name}: {rest}");
    }
}

#[test]
fn a_reader_that_leaves_ends_profile_with_status_3() {
    let Some(bin) = require_agent_bin() else {
        return;
    };
    // A pipe whose reader is gone before the window ends, as `profile | head -1` leaves it.
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the array it is given.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors are new and owned here.
    let (reader, writer) = unsafe {
        use std::os::fd::FromRawFd as _;
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    drop(reader);
    let out = Command::new(&bin)
        .args(["profile", "--duration", "1s"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .output()
        .expect("running meshmark-agent profile");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("broken pipe"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
