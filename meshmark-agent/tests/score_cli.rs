//! `meshmark-agent score` and `config check` through the real binary: the worked example of
//! docs/formula.md is the test vector, and bad input must exit 2 naming what is wrong.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};

use common::{agent, scratch, worked_example, POD};
use serde_json::{json, Value};

fn score_json(args: &[&str]) -> Value {
    let out = agent(args);
    assert!(
        out.status.success(),
        "score failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("score --format json prints JSON")
}

#[test]
fn worked_example_scores_as_the_spec_says() {
    let input = scratch("worked.json");
    worked_example(&input);
    let input = input.to_str().unwrap();
    let report = score_json(&["score", "--input", input, "--format", "json"]);
    let score = report["meshmark"]["score"].as_f64().unwrap();
    assert!((score - 56.458_333_333).abs() < 1e-6, "node score {score}");
    assert!(
        (report["meshmark"]["unit_costs"]["proxy_cpu_ns_per_kib"]
            .as_f64()
            .unwrap()
            - 12_800.0)
            .abs()
            < 1e-6
    );
    let roles: Vec<(&str, &str)> = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["comm"].as_str().unwrap(), p["role"].as_str().unwrap()))
        .collect();
    assert!(
        roles.contains(&("envoy", "proxy")) && roles.contains(&("app-server", "app")),
        "{roles:?}"
    );
    assert!(roles.contains(&("kubelet", "node")), "{roles:?}");
    let measuring_agent = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == 9)
        .unwrap();
    assert_eq!(
        measuring_agent["rule"], "builtin:self",
        "the measuring agent stays itself on re-scoring"
    );
    let pods = report["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0]["pod_uid"], POD);
    assert!((pods[0]["meshmark"]["score"].as_f64().unwrap() - 56.458_333_333).abs() < 1e-6);

    let table = agent(&["score", "--input", input]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("MeshMark (node): 56.5"), "{table}");

    let config = scratch("weights.toml");
    std::fs::write(&config, "[weights]\nnet = 0.2\n").unwrap();
    let weighted = score_json(&[
        "score",
        "--input",
        input,
        "--config",
        config.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let score = weighted["meshmark"]["score"].as_f64().unwrap();
    assert!((score - 58.125).abs() < 1e-9, "weighted score {score}");
}

#[test]
fn bad_inputs_exit_2_and_say_what_is_wrong() {
    let input = scratch("for-bad-config.json");
    worked_example(&input);
    let config = scratch("bad.toml");
    std::fs::write(&config, "window = \"10s\"\n\n[weights]\nnet = 0.9\n").unwrap();
    let config = config.to_str().unwrap();

    let check = agent(&["config", "check", config]);
    assert_eq!(check.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains(&format!("{config}:4:")) && stderr.contains("net"),
        "{stderr}"
    );

    let scored = agent(&[
        "score",
        "--input",
        input.to_str().unwrap(),
        "--config",
        config,
    ]);
    assert_eq!(scored.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&scored.stderr).contains("invalid configuration"));

    let not_a_profile = scratch("not-a-profile.json");
    std::fs::write(&not_a_profile, "{\"hello\": 1}").unwrap();
    let out = agent(&["score", "--input", not_a_profile.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a meshmark profile"));

    let good = scratch("good.toml");
    std::fs::write(&good, "[weights]\ncpu = -0.5\n").unwrap();
    let ok = agent(&["config", "check", good.to_str().unwrap()]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

/// The worked example with `edit` applied to its JSON text.
fn crafted(name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let path = scratch(name);
    worked_example(&path);
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut doc);
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// Runs `score --input path` expecting a refusal; returns the one line it printed.
fn refusal(path: &Path) -> String {
    let out = agent(&["score", "--input", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("meshmark-agent profile --format json"),
        "no fix: {stderr}"
    );
    stderr
}

#[test]
fn crafted_profiles_are_refused_with_one_message() {
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit, &str); 6] = [
        (
            "overflow.json",
            |doc| {
                doc["processes"][0]["cpu_ns"] = json!(u64::MAX);
                doc["processes"][1]["cpu_ns"] = json!(u64::MAX);
            },
            "cpu_ns add up to more than 18446744073709551615",
        ),
        (
            "negative.json",
            |doc| doc["processes"][1]["syscalls"]["count"] = json!(-5),
            "invalid value: integer `-5`, expected u64",
        ),
        (
            "fraction.json",
            |doc| doc["ncpu"] = json!(1.5),
            "invalid type: floating point `1.5`, expected u32",
        ),
        (
            "net.json",
            |doc| doc["processes"][0]["net"]["rx_bytes"] = json!(1),
            "processes[0] (pid 100): net.rx_bytes is 1",
        ),
        (
            "window.json",
            |doc| doc["window"]["duration_ns"] = json!(0),
            "window.duration_ns is 0",
        ),
        (
            "buckets.json",
            |doc| {
                doc["processes"][0]["syscalls"]["latency_log2_ns"] =
                    json!([{"lo_ns": 5, "hi_ns": 10, "count": 1}])
            },
            "latency_log2_ns[0] is [5, 10), not a log2 bucket",
        ),
    ];
    for (name, edit, needle) in cases {
        let message = refusal(&crafted(name, edit));
        assert!(message.contains(needle), "{name}: {message}");
    }

    let nan = scratch("nan.json");
    worked_example(&nan);
    let text = std::fs::read_to_string(&nan).unwrap();
    std::fs::write(&nan, text.replacen("\"idle_ns\": 0", "\"idle_ns\": NaN", 1)).unwrap();
    assert!(refusal(&nan).contains("expected value"));

    let deep = scratch("deep.json");
    std::fs::write(
        &deep,
        format!("{}{}", "[".repeat(200_000), "]".repeat(200_000)),
    )
    .unwrap();
    assert!(refusal(&deep).contains("is not a meshmark profile"));
}

#[test]
fn extreme_but_valid_profiles_score() {
    let largest = crafted("largest.json", |doc| {
        let envoy = &mut doc["processes"][1];
        envoy["cpu_ns"] = json!(0);
        envoy["rss_bytes"] = json!(0);
        let app = &mut doc["processes"][0];
        app["cpu_ns"] = json!(u64::MAX);
        app["syscalls"]["count"] = json!(u64::MAX);
        app["rss_bytes"] = json!(u64::MAX);
        // The others must not push the node's sums past u64::MAX, or the file is refused.
        for other in 1..4 {
            doc["processes"][other]["cpu_ns"] = json!(0);
            doc["processes"][other]["syscalls"]["count"] = json!(0);
        }
    });
    let report = score_json(&[
        "score",
        "--input",
        largest.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(report["meshmark"]["sums"]["app"]["cpu_ns"], json!(u64::MAX));
    let compute = report["meshmark"]["classes"]["compute"]["mues"]["cpu"].as_f64();
    assert_eq!(compute, Some(1.0), "the proxy used no CPU");

    // A million processes are scored in saved_profile's unit tests; through the debug binary
    // and its JSON, fewer keep the test quick.
    let many = crafted("many.json", |doc| {
        let template = doc["processes"][0].clone();
        let processes: Vec<Value> = (1..=20_000u32)
            .map(|pid| {
                let mut p = template.clone();
                p["pid"] = json!(pid);
                p["cpu_ns"] = json!(1);
                p
            })
            .collect();
        doc["processes"] = Value::Array(processes);
    });
    let report = score_json(&[
        "score",
        "--input",
        many.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(
        report["meshmark"]["sums"]["app"]["processes"],
        json!(20_000)
    );
    assert_eq!(report["meshmark"]["sums"]["app"]["cpu_ns"], json!(20_000));
}

/// `meshmark-agent ARGS` with its address space capped at 1 GiB (reading an endless file whole
/// fails against the cap instead of taking the machine's memory), `stdin` and `stdout` as given.
fn capped(args: &[&str], stdin: Stdio, stdout: Stdio) -> std::process::Child {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshmark-agent"));
    cmd.args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            let cap = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &cap) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("running meshmark-agent")
}

/// Waits for `child` at most `limit`; its status code (`None`: killed by a signal, a panic's
/// abort or the time limit) and stderr.
fn finish(mut child: std::process::Child, limit: Duration) -> (Option<i32>, String) {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return (None, format!("still running after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `config check /dev/zero` and `score --input /dev/zero` grew to 16 GB: every file is read up
/// to a limit, and the refusal names the limit and its flag.
#[test]
fn endless_and_oversized_inputs_are_refused_quickly_in_bounded_memory() {
    let limit = Duration::from_secs(10);
    let profile = scratch("bounded.json");
    worked_example(&profile);
    let profile = profile.to_str().unwrap();
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["config", "check", "/dev/zero"],
            &[
                "/dev/zero is larger than 8388608 bytes",
                "--max-config-bytes",
            ],
        ),
        (
            &["score", "--input", profile, "--config", "/dev/zero"],
            &["/dev/zero is larger than", "--max-config-bytes"],
        ),
        (
            &["score", "--input", "/dev/zero"],
            &["/dev/zero", "not a meshmark profile"],
        ),
        (
            &["score", "--input", profile, "--max-profile-bytes", "100"],
            &[
                "larger than 100 bytes",
                "raise the limit with --max-profile-bytes",
            ],
        ),
    ];
    for (args, needles) in cases {
        let child = capped(args, Stdio::null(), Stdio::null());
        let (status, stderr) = finish(child, limit);
        assert_eq!(status, Some(2), "{args:?}: {stderr}");
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{args:?} lacks {needle:?}: {stderr}"
            );
        }
    }

    // An endless stream that is all white space, which a parser would take in forever.
    let child = capped(
        &[
            "score",
            "--input",
            "/dev/stdin",
            "--max-profile-bytes",
            "65536",
        ],
        Stdio::piped(),
        Stdio::null(),
    );
    let mut child = child;
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write as _;
        let spaces = [b' '; 4096];
        // Ends with a broken pipe once the agent has refused.
        while stdin.write_all(&spaces).is_ok() {}
    });
    let (status, stderr) = finish(child, limit);
    feeder.join().unwrap();
    assert_eq!(status, Some(2), "{stderr}");
    assert!(
        stderr.contains("larger than 65536 bytes") && stderr.contains("--max-profile-bytes"),
        "{stderr}"
    );
}

/// A standard output with no reader and one with no room end with a message and a documented
/// status (3 for a closed pipe, 1 for a write error), never a panic (101).
#[test]
fn closed_and_full_outputs_end_with_a_message_not_a_panic() {
    let profile = scratch("outputs.json");
    worked_example(&profile);
    let profile = profile.to_str().unwrap();
    let good = scratch("outputs.toml");
    std::fs::write(&good, "window = \"5s\"\n").unwrap();
    let good = good.to_str().unwrap();

    for args in [
        &["score", "--input", profile][..],
        &["report", "--input", profile, "--format", "json"][..],
        &["config", "check", good][..],
    ] {
        // A pipe whose reading end is closed before the agent starts: `| head -0`, made certain.
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
        let child = capped(args, Stdio::null(), Stdio::from(writer));
        let (status, stderr) = finish(child, Duration::from_secs(10));
        assert_eq!(status, Some(3), "{args:?}: {stderr}");
        assert!(stderr.contains("broken pipe"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");

        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let child = capped(args, Stdio::null(), Stdio::from(full));
        let (status, stderr) = finish(child, Duration::from_secs(10));
        assert_eq!(status, Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("writing to standard output") && stderr.contains("No space left"),
            "{args:?}: {stderr}"
        );
    }
    let out = agent(&["score", "--input", profile, "--output", "/dev/full"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("writing /dev/full") && stderr.contains("No space left"),
        "{stderr}"
    );
}

/// Invalid UTF-8 is placed like any other problem, FILE:LINE:COLUMN, in a configuration and in
/// a saved profile.
#[test]
fn invalid_utf8_is_placed_at_file_line_and_column() {
    let config = scratch("latin1.toml");
    std::fs::write(&config, b"window = \"10s\"\n# caf\xe9\n").unwrap();
    let out = agent(&["config", "check", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("latin1.toml:2:6: invalid UTF-8"),
        "{stderr}"
    );

    let good = scratch("utf8-good.json");
    worked_example(&good);
    let mut bytes = std::fs::read(&good).unwrap();
    let at = bytes
        .windows(5)
        .position(|w| w == b"envoy")
        .expect("the example has an envoy");
    bytes[at + 1] = 0xff;
    let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
    let bad = scratch("latin1.json");
    std::fs::write(&bad, &bytes).unwrap();
    let out = agent(&["score", "--input", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("latin1.json:{line}:")),
        "line {line}: {stderr}"
    );
}

/// Checking a configuration was quadratic in its rules (16,000 rules: 4 s): duplicate names
/// were searched for in a list, and each rule's line was counted from the top of the file.
#[test]
fn sixteen_thousand_rules_are_checked_quickly() {
    let mut text = String::new();
    for i in 0..16_000 {
        text.push_str(&format!(
            "[[rules]]\nname = \"rule-{i}\"\nrole = \"app\"\ncomm = \"proc-{i}\"\n\n"
        ));
    }
    let config = scratch("many-rules.toml");
    std::fs::write(&config, &text).unwrap();
    let started = Instant::now();
    let out = agent(&["config", "check", config.to_str().unwrap()]);
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Well under a second in a release build; a debug build is several times slower.
    let bound = if cfg!(debug_assertions) { 5 } else { 1 };
    assert!(took < Duration::from_secs(bound), "{took:?}");

    // The same rules, every name used twice: each duplicate is found, the first 100 listed.
    text.push_str(&text.clone());
    std::fs::write(&config, &text).unwrap();
    let started = Instant::now();
    let out = agent(&["config", "check", config.to_str().unwrap()]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("rule name \"rule-0\" is already used on line 2")
            && stderr.ends_with("16000 problems found\n"),
        "{}",
        &stderr[stderr.len().saturating_sub(500)..]
    );
    assert_eq!(
        stderr.lines().count(),
        102,
        "100 listed, one for the rest, one count"
    );
    assert!(took < Duration::from_secs(2 * bound), "{took:?}");
}
