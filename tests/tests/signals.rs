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
    // `head -c0` leaves at once, so the pipe has no reader by the time the window is written;
    // bash reports the agent's own status.
    let out = Command::new("bash")
        .args([
            "-c",
            "\"$0\" profile --duration 1s | head -c0; exit \"${PIPESTATUS[0]}\"",
        ])
        .arg(&bin)
        .stdin(Stdio::null())
        .output()
        .expect("running bash");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("broken pipe"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
