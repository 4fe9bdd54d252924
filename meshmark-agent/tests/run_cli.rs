//! `meshmark-agent run` refuses bad input before it loads anything: exit status 2 and one
//! message that names the problem and the fix, whether the value came from a flag, the
//! environment or the configuration file. (Running it for real is tests/tests/serve.rs.)

use std::process::{Command, Output};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshmark-agent"));
    cmd.arg("run").args(args);
    for var in [
        "MESHMARK_LISTEN",
        "MESHMARK_WINDOW",
        "MESHMARK_CONFIG",
        "MESHMARK_LOG_LEVEL",
        "NODE_NAME",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("running meshmark-agent run")
}

/// Asserts exit status 2 and that stderr says each of `needles`; returns stderr.
fn refused(what: &str, output: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(2),
        "{what}: status; stderr:\n{stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{what}: stderr lacks {needle:?}:\n{stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "{what}:\n{stderr}");
    assert!(
        stderr.lines().count() <= 5,
        "{what}: one short message:\n{stderr}"
    );
    stderr
}

#[test]
fn bad_listen_addresses_are_refused_with_the_fix() {
    let out = run(&["--listen", "localhost"], &[]);
    refused(
        "no port",
        &out,
        &["--listen", "\"localhost\"", "such as 0.0.0.0:9477"],
    );
    let out = run(&[], &[("MESHMARK_LISTEN", "9477")]);
    refused(
        "env without address",
        &out,
        &["\"9477\"", "such as 0.0.0.0:9477"],
    );

    // A port that is taken: the message names the address and how to choose another.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let out = run(&["--listen", &address], &[]);
    refused(
        "taken port",
        &out,
        &[&format!("cannot listen on {address}"), "--listen"],
    );
}

#[test]
fn bad_windows_are_refused_with_the_fix() {
    let out = run(&["--window", "fast"], &[]);
    refused(
        "not a duration",
        &out,
        &["--window", "\"fast\"", "such as \"10s\""],
    );
    let out = run(&["--window", "0s"], &[]);
    refused("zero", &out, &["\"0s\" is zero"]);
    let out = run(&["--window", "25h"], &[]);
    refused("too long", &out, &["longest window, 24h"]);
    let out = run(&[], &[("MESHMARK_WINDOW", "1ms")]);
    refused(
        "too short from env",
        &out,
        &["1ms", "too short", "100ms or longer"],
    );

    let dir = std::env::temp_dir().join(format!("meshmark-run-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("short.toml");
    std::fs::write(&config, "window = \"50ms\"\n").unwrap();
    let out = run(&["--config", config.to_str().unwrap()], &[]);
    refused(
        "too short in the file",
        &out,
        &["short.toml", "window", "100ms or longer"],
    );
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "window = \"soon\"\n").unwrap();
    let out = run(&[], &[("MESHMARK_CONFIG", bad.to_str().unwrap())]);
    refused(
        "bad file from env",
        &out,
        &["invalid configuration", "bad.toml:1:"],
    );
    let _ = std::fs::remove_dir_all(&dir);

    let out = run(&["--log-level", "chatty"], &[]);
    refused(
        "log level",
        &out,
        &["\"chatty\"", "error, warn, info, debug or trace"],
    );
}

#[test]
fn help_shows_every_flag_its_variable_and_default() {
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--listen",
        "MESHMARK_LISTEN",
        "0.0.0.0:9477",
        "--window",
        "MESHMARK_WINDOW",
        "else 15s",
        "--config",
        "MESHMARK_CONFIG",
        "--log-level",
        "MESHMARK_LOG_LEVEL",
        "--node-name",
        "NODE_NAME",
        "/metrics",
        "/readyz",
    ] {
        assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
    }
}
