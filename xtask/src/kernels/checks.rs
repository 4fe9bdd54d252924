//! The checks of one kernel, from what its guest printed: the agent ran and wrote a profile
//! (so every program loaded and attached), chose the expected hook per signal, counted socket
//! bytes exactly per process, direction and peer kind (as tests/tests/net.rs does on the host),
//! counted syscalls exactly, saw plausible CPU time, and lost nothing; then that `run`, with the
//! hooks the kernel chooses, scored its duty-cycled windows with the sampled programs attached again in each:
//! the last window observed part of itself and saw a sleeper's syscalls and the agent's
//! own socket bytes (the guest polling its /metrics).
//!
//! The JSON types below are the few fields read here, mirrored from `meshmark_tests::truth` and
//! `meshmark_agent::snapshot` (the xtask cannot depend on those crates: it sets up what builds
//! them). serde ignores the other fields.

use std::{collections::BTreeMap, time::Duration};

use serde::{de::DeserializeOwned, Deserialize};

use super::{
    console::{Guest, Serve, Window},
    expect::{Hooks, Run},
    guest::{Kind, SERVE_WINDOWS, WORKLOADS},
};

/// CPU time the profile may show for the burner, as a fraction of what it measured of itself.
/// TCG's clocks are not a measure of accuracy, so this only shows that CPU time is attributed.
const BURN_LOW: f64 = 0.5;
const BURN_HIGH: f64 = 2.0;

#[derive(Deserialize)]
struct Endpoint {
    pid: u32,
    tx_bytes: u64,
    rx_bytes: u64,
    peeked_bytes: u64,
}

#[derive(Deserialize)]
struct Exchange {
    server: Endpoint,
    client: Endpoint,
}

#[derive(Deserialize)]
struct Threads {
    pid: u32,
    tx_bytes: u64,
}

#[derive(Deserialize)]
struct HttpRequests {
    pid: u32,
    requests: u64,
}

#[derive(Deserialize)]
struct Burn {
    pid: u32,
    process_cpu_ns: u64,
}

#[derive(Deserialize)]
struct Profile {
    schema: String,
    processes: Vec<Process>,
    #[serde(default)]
    dropped: BTreeMap<String, u64>,
    /// Absent from profiles of agents that did not yet report their hooks.
    hooks: Option<serde_json::Value>,
    /// Present when signals were observed for part of the window (`run`'s duty cycle).
    sampled: Option<Sampled>,
    window: Option<WindowSpan>,
}

#[derive(Deserialize, Debug)]
struct Sampled {
    signals: Vec<String>,
    observed_ns: u64,
}

#[derive(Deserialize)]
struct WindowSpan {
    duration_ns: u64,
}

#[derive(Deserialize)]
struct Process {
    pid: u32,
    #[serde(default)]
    comm: String,
    cpu_ns: u64,
    net: Net,
    syscalls: Syscalls,
    #[serde(default)]
    requests: Option<Requests>,
}

#[derive(Deserialize)]
struct Requests {
    count: u64,
    #[serde(default)]
    multiplexed_turns: u64,
}

#[derive(Deserialize, Debug)]
struct Net {
    tx_bytes: u64,
    rx_bytes: u64,
    loopback_tx_bytes: u64,
    loopback_rx_bytes: u64,
    unix_tx_bytes: u64,
    unix_rx_bytes: u64,
}

#[derive(Deserialize)]
struct Syscalls {
    count: u64,
}

/// One check: what was looked at, and what was expected and found.
pub struct Check {
    pub what: String,
    pub passed: bool,
    pub detail: String,
}

#[derive(Default)]
pub struct Checks(pub Vec<Check>);

impl Checks {
    fn add(&mut self, what: impl Into<String>, passed: bool, detail: impl Into<String>) {
        self.0.push(Check {
            what: what.into(),
            passed,
            detail: detail.into(),
        });
    }

    fn exact(&mut self, what: String, found: u64, expected: u64) {
        self.add(
            what,
            found == expected,
            format!("expected {expected}, found {found}"),
        );
    }

    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.0.iter().filter(|c| !c.passed)
    }
}

/// Runs every check on one guest's output: it finished, and each of `runs` passes.
pub fn run(guest: &Guest, runs: &[Run], window: Duration) -> Checks {
    let mut checks = Checks::default();
    checks.add(
        "guest finished its script",
        guest.ended,
        if guest.ended {
            "the end marker came".to_owned()
        } else {
            format!(
                "no end marker (booted: {}; notes: {:?})",
                guest.release.as_deref().unwrap_or("never reached /init"),
                guest.notes
            )
        },
    );
    for run in runs {
        let Some(output) = guest.window(run.name) else {
            checks.add(
                format!("{}: window ran", run.name),
                false,
                "the guest never started this window",
            );
            continue;
        };
        for mut check in check_window(output, &run.hooks, window).0 {
            check.what = format!("{}: {}", run.name, check.what);
            checks.0.push(check);
        }
        if run.force.is_none() {
            for mut check in check_serve(output.serve.as_ref(), &run.hooks).0 {
                check.what = format!("{} run: {}", run.name, check.what);
                checks.0.push(check);
            }
        }
    }
    checks
}

/// The checks of one profile window.
fn check_window(guest: &Window, hooks: &Hooks, window: Duration) -> Checks {
    let mut checks = Checks::default();
    checks.add(
        "agent exited 0",
        guest.agent_status == Some(0),
        format!(
            "exit status {:?}; its stderr: {}{}",
            guest.agent_status,
            guest.agent_stderr.join(" | "),
            if guest.notes.is_empty() {
                String::new()
            } else {
                format!("; notes: {:?}", guest.notes)
            }
        ),
    );
    // Workloads that outlast the window fail the byte checks below; this says why.
    if let (Some(ready), Some(done)) = (guest.ready_at, guest.workloads_done_at) {
        let end = ready + window.as_secs_f64();
        checks.add(
            "workloads ran inside the window",
            done <= end,
            format!(
                "the window ran from {ready:.1} s to about {end:.1} s, the workloads were done at \
                 {done:.1} s (guest uptime)"
            ),
        );
    }
    let profile = match guest.profile.as_deref().map(str::trim) {
        None | Some("") => {
            checks.add(
                "a profile was written (every program loaded and attached)",
                false,
                "no profile on the console",
            );
            return checks;
        }
        Some(text) => match serde_json::from_str::<Profile>(text) {
            Ok(profile) => profile,
            Err(error) => {
                checks.add(
                    "a profile was written (every program loaded and attached)",
                    false,
                    format!("the profile does not parse: {error}"),
                );
                return checks;
            }
        },
    };
    checks.add(
        "a profile was written (every program loaded and attached)",
        profile.schema == "meshmark.profile/v1",
        format!(
            "schema {:?}, {} processes",
            profile.schema,
            profile.processes.len()
        ),
    );
    check_hooks(&mut checks, profile.hooks.as_ref(), hooks);
    checks.add(
        "nothing dropped",
        profile.dropped.is_empty(),
        format!("dropped: {:?}", profile.dropped),
    );

    let mut sends = Vec::new();
    for workload in WORKLOADS {
        let truth = guest.truths.get(workload.name);
        let status = truth.and_then(|t| t.status);
        checks.add(
            format!("{}: workload exited 0", workload.name),
            status == Some(0),
            format!("exit status {status:?}"),
        );
        let line = truth.and_then(|t| t.line.as_deref()).unwrap_or("");
        match workload.kind {
            Kind::Loopback | Kind::Unix => {
                if let Some(exchange) = parse::<Exchange>(&mut checks, workload.name, line) {
                    check_exchange(
                        &mut checks,
                        &profile,
                        workload.name,
                        workload.kind,
                        &exchange,
                    );
                }
            }
            Kind::Sends(n) => {
                if let Some(threads) = parse::<Threads>(&mut checks, workload.name, line) {
                    if let Some(p) = process(&mut checks, &profile, workload.name, threads.pid) {
                        checks.exact(
                            format!("{}: loopback tx bytes", workload.name),
                            p.net.loopback_tx_bytes,
                            threads.tx_bytes,
                        );
                        sends.push((workload.name, n, p.syscalls.count));
                    }
                }
            }
            Kind::Requests { multiplexed } => {
                if let Some(http) = parse::<HttpRequests>(&mut checks, workload.name, line) {
                    if let Some(p) = process(&mut checks, &profile, workload.name, http.pid) {
                        let (exact, mux) = p
                            .requests
                            .as_ref()
                            .map_or((0, 0), |r| (r.count, r.multiplexed_turns));
                        // Each request is a turn of its own: exact, or all multiplexed.
                        let (want_exact, want_mux) = if multiplexed {
                            (0, http.requests)
                        } else {
                            (http.requests, 0)
                        };
                        checks.exact(format!("{}: exact turns", workload.name), exact, want_exact);
                        checks.exact(
                            format!("{}: multiplexed turns", workload.name),
                            mux,
                            want_mux,
                        );
                    }
                }
            }
            Kind::Burn => {
                if let Some(burn) = parse::<Burn>(&mut checks, workload.name, line) {
                    if let Some(p) = process(&mut checks, &profile, workload.name, burn.pid) {
                        let ratio = p.cpu_ns as f64 / burn.process_cpu_ns.max(1) as f64;
                        checks.add(
                            format!("{}: CPU time present and plausible", workload.name),
                            (BURN_LOW..=BURN_HIGH).contains(&ratio),
                            format!(
                                "profile {} ns, the burner measured {} ns: ratio {ratio:.3} \
                                 (allowed {BURN_LOW} to {BURN_HIGH})",
                                p.cpu_ns, burn.process_cpu_ns
                            ),
                        );
                    }
                }
            }
        }
    }
    if let [(a, n_a, count_a), (b, n_b, count_b)] = sends[..] {
        checks.add(
            format!("syscalls: {b} minus {a}"),
            count_b.checked_sub(count_a) == Some(n_b - n_a),
            format!(
                "expected a difference of exactly {}, found {count_b} - {count_a} = {}",
                n_b - n_a,
                i128::from(count_b) - i128::from(count_a)
            ),
        );
    }
    checks
}

/// The checks of `run`'s duty-cycled windows after a profile window.
fn check_serve(serve: Option<&Serve>, hooks: &Hooks) -> Checks {
    let mut checks = Checks::default();
    let Some(serve) = serve else {
        checks.add("started", false, "the guest never started serving");
        return checks;
    };
    let notes = if serve.notes.is_empty() {
        String::new()
    } else {
        format!("; notes: {:?}", serve.notes)
    };
    checks.add(
        format!("{SERVE_WINDOWS} windows scored"),
        serve.windows.is_some_and(|n| n >= SERVE_WINDOWS),
        format!(
            "meshmark_windows_total {:?}; its stderr: {}{notes}",
            serve.windows,
            serve.agent_stderr.join(" | ")
        ),
    );
    checks.add(
        "agent exited 0 on SIGTERM",
        serve.agent_status == Some(0),
        format!("exit status {:?}", serve.agent_status),
    );
    let node = serve.node.as_deref().map(str::trim).unwrap_or("");
    let report = match serde_json::from_str::<Profile>(node) {
        Ok(report) => report,
        Err(error) => {
            checks.add(
                "the last window's report",
                false,
                format!("/api/v1/node gave no report ({error}): {node:.200}"),
            );
            return checks;
        }
    };
    check_hooks(&mut checks, report.hooks.as_ref(), hooks);
    checks.add(
        "nothing dropped",
        report.dropped.is_empty(),
        format!("dropped: {:?}", report.dropped),
    );
    // Not how long: under emulation attaching kprobes takes seconds, which count as observed,
    // and the window loop falls behind and stretches windows.
    let duration = report.window.as_ref().map_or(0, |w| w.duration_ns);
    match &report.sampled {
        Some(sampled) => checks.add(
            "observed for part of the window",
            sampled.signals == ["syscalls", "socket_bytes"]
                && sampled.observed_ns > 0
                && sampled.observed_ns < duration,
            format!(
                "{:?} observed {} ns of a {duration} ns window",
                sampled.signals, sampled.observed_ns
            ),
        ),
        None => checks.add(
            "observed for part of the window",
            false,
            "the report has no `sampled`: the window was not duty-cycled",
        ),
    }
    // Seen only if the programs came back after the first windows' detaches.
    let sleeper = serve
        .sleeper
        .and_then(|pid| report.processes.iter().find(|p| p.pid == pid));
    checks.add(
        "syscalls seen after re-attaching",
        sleeper.is_some_and(|p| p.syscalls.count > 0),
        format!(
            "the sleeper (pid {:?}) made {:?} syscalls in the last window",
            serve.sleeper,
            sleeper.map(|p| p.syscalls.count)
        ),
    );
    let agent = report.processes.iter().find(|p| p.comm == "meshmark-agent");
    checks.add(
        "socket bytes seen after re-attaching",
        agent.is_some_and(|p| p.net.loopback_tx_bytes > 0),
        format!(
            "the agent answered /metrics polls; its loopback tx bytes in the last window: {:?}",
            agent.map(|p| p.net.loopback_tx_bytes)
        ),
    );
    checks
}

fn check_hooks(checks: &mut Checks, found: Option<&serde_json::Value>, expected: &Hooks) {
    for (signal, want) in expected.by_signal() {
        let got = found.and_then(|h| h.get(signal)).and_then(|v| v.as_str());
        checks.add(
            format!("hook for {signal}"),
            got == Some(want),
            match (found, got) {
                (None, _) => format!("expected {want:?}, the profile has no `hooks` object"),
                (Some(_), None) => format!("expected {want:?}, `hooks` has no string `{signal}`"),
                (Some(_), Some(got)) => format!("expected {want:?}, found {got:?}"),
            },
        );
    }
}

/// Bytes of each end: exact for the workload's peer kind, and the totals equal too, so that no
/// byte went under another kind.
fn check_exchange(checks: &mut Checks, profile: &Profile, name: &str, kind: Kind, ex: &Exchange) {
    checks.add(
        format!("{name}: the server peeked"),
        ex.server.peeked_bytes > 0,
        format!("peeked {} bytes", ex.server.peeked_bytes),
    );
    for (end, truth) in [("server", &ex.server), ("client", &ex.client)] {
        let Some(p) = process(checks, profile, &format!("{name} {end}"), truth.pid) else {
            continue;
        };
        let (label, tx, rx) = match kind {
            Kind::Unix => ("unix", p.net.unix_tx_bytes, p.net.unix_rx_bytes),
            _ => ("loopback", p.net.loopback_tx_bytes, p.net.loopback_rx_bytes),
        };
        checks.exact(
            format!("{name} {end}: {label} tx bytes"),
            tx,
            truth.tx_bytes,
        );
        checks.exact(
            format!("{name} {end}: {label} rx bytes"),
            rx,
            truth.rx_bytes,
        );
        checks.add(
            format!("{name} {end}: no bytes under another kind"),
            (p.net.tx_bytes, p.net.rx_bytes) == (truth.tx_bytes, truth.rx_bytes),
            format!(
                "expected totals tx {} rx {}, found {:?}",
                truth.tx_bytes, truth.rx_bytes, p.net
            ),
        );
    }
}

fn parse<T: DeserializeOwned>(checks: &mut Checks, name: &str, line: &str) -> Option<T> {
    match serde_json::from_str(line) {
        Ok(truth) => Some(truth),
        Err(error) => {
            checks.add(
                format!("{name}: ground truth"),
                false,
                format!("its line {line:?} does not parse: {error}"),
            );
            None
        }
    }
}

fn process<'a>(
    checks: &mut Checks,
    profile: &'a Profile,
    what: &str,
    pid: u32,
) -> Option<&'a Process> {
    let found = profile.processes.iter().find(|p| p.pid == pid);
    if found.is_none() {
        checks.add(
            format!("{what}: process in the profile"),
            false,
            format!("pid {pid} is not in the profile"),
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kernels::{console::Truth, expect::MATRIX};

    /// 6.1's first window: fexit for socket bytes.
    fn chosen() -> &'static [Run] {
        &MATRIX[0].runs[..1]
    }

    const WINDOW: Duration = Duration::from_secs(25);

    fn process(pid: u32, net: [u64; 4], syscalls: u64, cpu_ns: u64) -> serde_json::Value {
        let [loopback_tx, loopback_rx, unix_tx, unix_rx] = net;
        json!({
            "pid": pid, "comm": "mm-workload", "exited": true, "cpu_ns": cpu_ns,
            "net": {
                "tx_bytes": loopback_tx + unix_tx, "rx_bytes": loopback_rx + unix_rx,
                "loopback_tx_bytes": loopback_tx, "loopback_rx_bytes": loopback_rx,
                "external_tx_bytes": 0, "external_rx_bytes": 0,
                "unix_tx_bytes": unix_tx, "unix_rx_bytes": unix_rx,
            },
            "syscalls": { "count": syscalls, "total_ns": 0, "latency_log2_ns": [] },
        })
    }

    /// The `http` workload's process, with its exact and multiplexed turns.
    fn served(pid: u32, exact: u64, multiplexed: u64) -> serde_json::Value {
        let mut p = process(pid, [0, 0, 0, 0], 9, 1);
        p["requests"] = json!({"count": exact, "total_ns": 0, "latency_log2_ns": []});
        if multiplexed > 0 {
            p["requests"]["multiplexed_turns"] = json!(multiplexed);
        }
        p
    }

    fn exchange(server: u32, client: u32) -> String {
        json!({
            "server": {"pid": server, "tx_bytes": 11, "rx_bytes": 7, "peeked_bytes": 3},
            "client": {"pid": client, "tx_bytes": 7, "rx_bytes": 11, "peeked_bytes": 0},
        })
        .to_string()
    }

    /// A guest whose profile agrees with every workload's truth, as on a passing kernel.
    fn passing_guest() -> (Guest, serde_json::Value) {
        let lines = [
            ("tcp", exchange(10, 11)),
            ("udp", exchange(12, 13)),
            ("unix", exchange(14, 15)),
            (
                "sends-2000",
                json!({"pid": 16, "tx_bytes": 2000}).to_string(),
            ),
            (
                "sends-4000",
                json!({"pid": 17, "tx_bytes": 4000}).to_string(),
            ),
            (
                "http-tcp",
                json!({"pid": 19, "requests": 21, "sleep_ns": 5_000_000}).to_string(),
            ),
            (
                "http-unix",
                json!({"pid": 20, "requests": 20, "sleep_ns": 5_000_000}).to_string(),
            ),
            (
                "http-unix-overlap",
                json!({"pid": 21, "requests": 4, "sleep_ns": 5_000_000}).to_string(),
            ),
            (
                "burn",
                json!({"pid": 18, "process_cpu_ns": 200_000_000}).to_string(),
            ),
        ];
        let truths = lines
            .into_iter()
            .map(|(name, line)| {
                let truth = Truth {
                    line: Some(line),
                    status: Some(0),
                };
                (name.to_owned(), truth)
            })
            .collect();
        let profile = json!({
            "schema": "meshmark.profile/v1",
            "hooks": {"cpu": "sched_switch/4", "socket_bytes": "fexit",
                      "process_exit": "sched_process_exit/1", "unix_connections": "fexit"},
            "dropped": {},
            "processes": [
                process(10, [11, 7, 0, 0], 9, 1), process(11, [7, 11, 0, 0], 9, 1),
                process(12, [11, 7, 0, 0], 9, 1), process(13, [7, 11, 0, 0], 9, 1),
                process(14, [0, 0, 11, 7], 9, 1), process(15, [0, 0, 7, 11], 9, 1),
                process(16, [2000, 0, 0, 0], 2063, 1), process(17, [4000, 0, 0, 0], 4063, 1),
                process(18, [0, 0, 0, 0], 9, 210_000_000),
                served(19, 21, 0), served(20, 20, 0), served(21, 0, 4),
            ],
        });
        let window = Window {
            ready_at: Some(10.0),
            workloads_done_at: Some(16.0),
            agent_status: Some(0),
            truths,
            serve: Some(passing_serve()),
            ..Window::default()
        };
        let guest = Guest {
            windows: vec![("chosen".to_owned(), window)],
            ended: true,
            ..Guest::default()
        };
        (guest, profile)
    }

    /// `run` after it: three windows, the last half observed, with the sleeper's syscalls and
    /// the agent's bytes.
    fn passing_serve() -> Serve {
        let mut agent = process(30, [900, 300, 0, 0], 40, 1);
        agent["comm"] = json!("meshmark-agent");
        let node = json!({
            "schema": "meshmark.profile/v1",
            "window": {"duration_ns": 4_000_000_000u64},
            "sampled": {"signals": ["syscalls", "socket_bytes"], "observed_ns": 2_000_000_000u64},
            "hooks": {"cpu": "sched_switch/4", "socket_bytes": "fexit",
                      "process_exit": "sched_process_exit/1", "unix_connections": "fexit"},
            "processes": [process(31, [0, 0, 0, 0], 700, 1), agent],
        });
        Serve {
            windows: Some(3),
            node: Some(node.to_string()),
            agent_status: Some(0),
            sleeper: Some(31),
            ..Serve::default()
        }
    }

    #[test]
    fn a_run_that_never_attached_again_is_named() {
        let (mut guest, profile) = passing_guest();
        let serve = guest.windows[0].1.serve.as_mut().unwrap();
        let mut node: serde_json::Value =
            serde_json::from_str(serve.node.as_deref().unwrap()).unwrap();
        node["processes"][0]["syscalls"]["count"] = json!(0);
        node["processes"][1]["net"]["loopback_tx_bytes"] = json!(0);
        node["sampled"]["observed_ns"] = json!(4_000_000_000u64);
        serve.node = Some(node.to_string());
        serve.windows = Some(2);
        let found = failures(&mut guest, &profile);
        let expected = [
            "chosen run: 3 windows scored",
            "chosen run: observed for part of the window",
            "chosen run: syscalls seen after re-attaching",
            "chosen run: socket bytes seen after re-attaching",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (found, expected) in found.iter().zip(expected) {
            assert!(found.starts_with(expected), "{found} vs {expected}");
        }
    }

    fn failures(guest: &mut Guest, profile: &serde_json::Value) -> Vec<String> {
        guest.windows[0].1.profile = Some(profile.to_string());
        run(guest, chosen(), WINDOW)
            .failed()
            .map(|c| format!("{}: {}", c.what, c.detail))
            .collect()
    }

    #[test]
    fn agreeing_profile_passes_every_check() {
        let (mut guest, profile) = passing_guest();
        assert_eq!(failures(&mut guest, &profile), Vec::<String>::new());
    }

    #[test]
    fn each_disagreement_is_named() {
        let (mut guest, mut profile) = passing_guest();
        // The tcp server's rx one byte short; a unix byte counted as loopback for the client.
        profile["processes"][0]["net"]["loopback_rx_bytes"] = json!(6);
        profile["processes"][5]["net"]["loopback_rx_bytes"] = json!(1);
        profile["processes"][5]["net"]["rx_bytes"] = json!(12);
        // One syscall too many in the second sender; the burner not seen at all.
        profile["processes"][7]["syscalls"]["count"] = json!(4064);
        profile["processes"][8]["cpu_ns"] = json!(0);
        // A unix turn missed; a TCP connection taken as multiplexed.
        profile["processes"][10]["requests"]["count"] = json!(19);
        profile["processes"][9]["requests"]["multiplexed_turns"] = json!(1);
        profile["hooks"]["socket_bytes"] = json!("tracepoint");
        profile["dropped"] = json!({"ring_full": 3});
        let found = failures(&mut guest, &profile);
        let expected = [
            "chosen: hook for socket_bytes: expected \"fexit\", found \"tracepoint\"",
            "chosen: nothing dropped: dropped: {\"ring_full\": 3}",
            "chosen: tcp server: loopback rx bytes: expected 7, found 6",
            "chosen: unix client: no bytes under another kind",
            "chosen: http-tcp: multiplexed turns: expected 0, found 1",
            "chosen: http-unix: exact turns: expected 20, found 19",
            "chosen: burn: CPU time present and plausible: profile 0 ns",
            "chosen: syscalls: sends-4000 minus sends-2000: expected a difference of exactly 2000, \
             found 4064 - 2063 = 2001",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (found, expected) in found.iter().zip(expected) {
            assert!(found.starts_with(expected), "{found} vs {expected}");
        }
    }

    #[test]
    fn missing_hooks_and_profile_are_failures() {
        let (mut guest, mut profile) = passing_guest();
        profile.as_object_mut().unwrap().remove("hooks");
        let found = failures(&mut guest, &profile);
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(found[0].contains("the profile has no `hooks` object"));

        guest.windows[0].1.agent_status = Some(2);
        guest.windows[0].1.profile = Some(String::new());
        let checks = run(&guest, MATRIX[0].runs, WINDOW);
        let found: Vec<&str> = checks.failed().map(|c| c.what.as_str()).collect();
        assert_eq!(
            found,
            [
                "chosen: agent exited 0",
                "chosen: a profile was written (every program loaded and attached)",
                "kretprobe: window ran",
            ]
        );
    }

    #[test]
    fn workloads_that_outlast_the_window_are_named() {
        let (mut guest, profile) = passing_guest();
        guest.windows[0].1.workloads_done_at = Some(40.0);
        let found = failures(&mut guest, &profile);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with("chosen: workloads ran inside the window"));
    }
}
