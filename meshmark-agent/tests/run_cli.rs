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
        "NODE_IP",
        "MESHMARK_KUBELET",
        "MESHMARK_KUBELET_TOKEN",
        "MESHMARK_KUBELET_CA",
        "MESHMARK_KUBELET_INSECURE_SKIP_VERIFY",
    ] {
        cmd.env_remove(var);
    }
    // A lock of its own: agents of other tests on this machine hold theirs (or the node's).
    cmd.env("MESHMARK_LOCK_FILE", own_lock_file());
    cmd.envs(env.iter().copied());
    cmd.output().expect("running meshmark-agent run")
}

/// An empty file, of this test process, to lock.
fn own_lock_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("meshmark-run-cli-{}.lock", std::process::id()));
    std::fs::write(&path, "").expect("creating the test's lock file");
    path
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
fn bad_kubelet_options_are_refused_with_the_fix() {
    // These are checked once the port is bound: any free one will do.
    let run = |more: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(more);
        run(&args, env)
    };
    let out = run(&["--kubelet", "http://10.0.0.11:10255"], &[]);
    refused(
        "plain http",
        &out,
        &["not an https:// URL", "https://HOST:10250"],
    );
    let out = run(&[], &[("NODE_IP", "worker-1")]);
    refused(
        "NODE_IP",
        &out,
        &["NODE_IP=\"worker-1\"", "status.hostIP", "--kubelet"],
    );
    let kubelet = ["--kubelet", "https://127.0.0.1:10250"];
    let missing_ca = ["--kubelet-ca", "/nonexistent/ca.crt"];
    let out = run(&[&kubelet[..], &missing_ca[..]].concat(), &[]);
    refused(
        "missing CA",
        &out,
        &["/nonexistent/ca.crt", "--kubelet-insecure-skip-verify"],
    );
    // The variable set to false asks for no skipping: the CA is still read.
    let out = run(
        &kubelet,
        &[
            ("MESHMARK_KUBELET_CA", "/nonexistent/ca.crt"),
            ("MESHMARK_KUBELET_INSECURE_SKIP_VERIFY", "false"),
        ],
    );
    refused("missing CA from env", &out, &["cannot read the kubelet CA"]);
    let out = run(
        &[&kubelet[..], &missing_ca[..]].concat(),
        &[("MESHMARK_KUBELET_INSECURE_SKIP_VERIFY", "true")],
    );
    refused("CA and no check", &out, &["exclude each other"]);
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
        "--kubelet ",
        "MESHMARK_KUBELET",
        "https://$NODE_IP:10250",
        "--kubelet-token",
        "MESHMARK_KUBELET_TOKEN",
        "serviceaccount/token",
        "--kubelet-ca",
        "MESHMARK_KUBELET_CA",
        "serviceaccount/ca.crt",
        "--kubelet-insecure-skip-verify",
        "MESHMARK_KUBELET_INSECURE_SKIP_VERIFY",
        "/metrics",
        "/readyz",
    ] {
        assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
    }
}

/// A second `run` on the node refuses before it loads anything, naming the process that holds
/// the node's lock: here this test, holding it as a first agent would. It is the one test that
/// uses the node's own lock (`/sys/fs/cgroup`), so it never meets another test's agent.
#[test]
fn a_second_run_on_the_node_is_refused_naming_the_first() {
    use meshmark_agent::node_lock;
    let node = std::path::Path::new(node_lock::DEFAULT_LOCK_FILE);
    let _first = node_lock::acquire(node).expect("no agent on this node holds its lock");
    let me = std::process::id();
    let needles = [
        "another meshmark agent already runs on this node",
        &format!("process {me} ("),
        "/sys/fs/cgroup",
        "--lock-file",
    ];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshmark-agent"));
    cmd.args(["run", "--listen", "127.0.0.1:0"])
        .env_remove("MESHMARK_LOCK_FILE")
        .env_remove("MESHMARK_CONFIG");
    refused("second agent", &cmd.output().unwrap(), &needles);

    // As in the DaemonSet's pod: a network namespace of its own and the host's cgroup hierarchy
    // mounted read-only. Needs root (unshare); the lock is the same inode there.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP the pod-like half: not root");
        return;
    }
    let script =
        "mount --bind -o ro /sys/fs/cgroup /sys/fs/cgroup && exec \"$0\" run --listen 127.0.0.1:0";
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--net",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
        ])
        .arg(env!("CARGO_BIN_EXE_meshmark-agent"))
        .env_remove("MESHMARK_LOCK_FILE")
        .env_remove("MESHMARK_CONFIG")
        .output()
        .expect("running unshare");
    refused("second agent in its own namespaces", &out, &needles);
}
