//! Reading the guest's results back from its serial console: init.sh prints each result after a
//! `=== meshmark-<what> ===` marker line. Kernel messages (`[ 1.234] ...`) that land inside a
//! section are skipped; anything else that does not parse is left for the checks to report.

use std::collections::BTreeMap;

const OPEN: &str = "=== meshmark-";
const CLOSE: &str = " ===";

/// A workload's output: its ground-truth line and exit status.
#[derive(Debug, Default, PartialEq)]
pub struct Truth {
    pub line: Option<String>,
    pub status: Option<i32>,
}

/// One profile window's results (init.sh's `profile_window`).
#[derive(Debug, Default)]
pub struct Window {
    /// Seconds since the guest's boot (`/proc/uptime`) at each step.
    pub ready_at: Option<f64>,
    pub workloads_done_at: Option<f64>,
    pub agent_done_at: Option<f64>,
    pub truths: BTreeMap<String, Truth>,
    pub agent_status: Option<i32>,
    pub agent_stderr: Vec<String>,
    /// The profile JSON as printed; None when the section never came, empty when the agent
    /// wrote no file.
    pub profile: Option<String>,
    /// `note ...` markers: things init found wrong along the way.
    pub notes: Vec<String>,
    /// `run`'s windows with the same hooks (init.sh's `serve_windows`), if they started.
    pub serve: Option<Serve>,
}

/// `run` serving duty-cycled windows, after a profile window.
#[derive(Debug, Default)]
pub struct Serve {
    /// `meshmark_windows_total` when the guest stopped waiting.
    pub windows: Option<u32>,
    /// /api/v1/node then: the last window's JSON.
    pub node: Option<String>,
    pub agent_status: Option<i32>,
    /// The pid of the process that made syscalls all along.
    pub sleeper: Option<u32>,
    pub agent_stderr: Vec<String>,
    pub notes: Vec<String>,
}

/// Everything the guest printed between markers.
#[derive(Debug, Default)]
pub struct Guest {
    /// `uname -r` in the guest.
    pub release: Option<String>,
    /// Guest uptime when `/init` started.
    pub up_at: Option<f64>,
    /// The windows by run name, in the order they ran.
    pub windows: Vec<(String, Window)>,
    /// Notes from before the first window.
    pub notes: Vec<String>,
    /// The last marker came: the guest finished its script.
    pub ended: bool,
}

impl Guest {
    pub fn window(&self, run: &str) -> Option<&Window> {
        self.windows
            .iter()
            .find(|(name, _)| name == run)
            .map(|(_, w)| w)
    }

    /// The window being printed; markers before any `run` marker go to one named "".
    fn current(&mut self) -> &mut Window {
        if self.windows.is_empty() {
            self.windows.push((String::new(), Window::default()));
        }
        &mut self.windows.last_mut().expect("one window at least").1
    }

    /// The serving after the current window, once its `serve` marker came.
    fn serving(&mut self) -> Option<&mut Serve> {
        self.current().serve.as_mut()
    }
}

enum Section {
    None,
    Truth(String),
    Stderr,
    Profile,
    Node,
}

pub fn parse(console: &str) -> Guest {
    let mut guest = Guest::default();
    let mut section = Section::None;
    for line in console.lines() {
        // Firmware's terminal escapes can precede the first marker on its line.
        if let Some(marker) = line
            .find(OPEN)
            .and_then(|at| line[at + OPEN.len()..].trim_end().strip_suffix(CLOSE))
        {
            section = read_marker(&mut guest, marker);
            continue;
        }
        if is_kernel_message(line) {
            continue;
        }
        match &section {
            Section::None => {}
            Section::Truth(name) => {
                let truth = guest.current().truths.entry(name.clone()).or_default();
                if truth.line.is_none() && !line.trim().is_empty() {
                    truth.line = Some(line.trim().to_owned());
                }
            }
            Section::Stderr => match guest.serving() {
                Some(serve) => serve.agent_stderr.push(line.to_owned()),
                None => guest.current().agent_stderr.push(line.to_owned()),
            },
            Section::Node => {
                if let Some(serve) = guest.serving() {
                    let node = serve.node.get_or_insert_with(String::new);
                    node.push_str(line);
                    node.push('\n');
                }
            }
            Section::Profile => {
                let profile = guest.current().profile.get_or_insert_with(String::new);
                profile.push_str(line);
                profile.push('\n');
            }
        }
    }
    guest
}

/// Records one marker and returns the section that follows it.
fn read_marker(guest: &mut Guest, marker: &str) -> Section {
    let (word, rest) = marker.split_once(' ').unwrap_or((marker, ""));
    // `... at <seconds>` ends the markers that carry a time.
    let at = || {
        let words: Vec<&str> = rest.split_whitespace().collect();
        match words.as_slice() {
            [.., "at", seconds] => seconds.parse().ok(),
            _ => None,
        }
    };
    match word {
        "guest-up" => {
            guest.release = rest.split_whitespace().next().map(str::to_owned);
            guest.up_at = at();
        }
        "run" => guest.windows.push((rest.to_owned(), Window::default())),
        "agent-ready" => guest.current().ready_at = at(),
        "workloads-done" => guest.current().workloads_done_at = at(),
        "agent-status" => {
            let window = guest.current();
            window.agent_status = rest.split_whitespace().next().and_then(|s| s.parse().ok());
            window.agent_done_at = at();
        }
        "truth" => {
            guest.current().truths.entry(rest.to_owned()).or_default();
            return Section::Truth(rest.to_owned());
        }
        "truth-status" => {
            if let Some((name, status)) = rest.rsplit_once(' ') {
                let truth = guest.current().truths.entry(name.to_owned()).or_default();
                truth.status = status.parse().ok();
            }
        }
        "agent-stderr" => return Section::Stderr,
        "profile" => {
            guest.current().profile.get_or_insert_with(String::new);
            return Section::Profile;
        }
        "serve" => guest.current().serve = Some(Serve::default()),
        "serve-windows" => {
            if let Some(serve) = guest.serving() {
                serve.windows = rest.split_whitespace().next().and_then(|s| s.parse().ok());
            }
        }
        "serve-node" => {
            if let Some(serve) = guest.serving() {
                serve.node.get_or_insert_with(String::new);
                return Section::Node;
            }
        }
        "serve-agent-status" => {
            if let Some(serve) = guest.serving() {
                let words: Vec<&str> = rest.split_whitespace().collect();
                if let [status, "sleeper", pid] = words[..] {
                    serve.agent_status = status.parse().ok();
                    serve.sleeper = pid.parse().ok();
                }
            }
        }
        "note" if guest.windows.is_empty() => guest.notes.push(rest.to_owned()),
        "note" => match guest.serving() {
            Some(serve) => serve.notes.push(rest.to_owned()),
            None => guest.current().notes.push(rest.to_owned()),
        },
        "end" => guest.ended = true,
        _ => {}
    }
    Section::None
}

/// `[    1.234567] message`, as printk writes with timestamps on.
fn is_kernel_message(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('[') else {
        return false;
    };
    let Some((stamp, _)) = rest.split_once(']') else {
        return false;
    };
    let stamp = stamp.trim();
    !stamp.is_empty()
        && stamp.chars().all(|c| c.is_ascii_digit() || c == '.')
        && stamp.contains('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
SeaBIOS noise
Probing EDD (edd=off to disable)... o\x1bc\x1b[2Jk=== meshmark-guest-up 6.12.117+deb12-cloud-amd64 at 1.83 ===
=== meshmark-note lo not up ===
=== meshmark-run chosen ===
=== meshmark-agent-ready at 9.50 ===
=== meshmark-truth tcp ===
{\"server\":{\"pid\":80}}
=== meshmark-truth-status tcp 0 ===
=== meshmark-truth burn ===
[   12.000001] some kernel error
{\"pid\":90}
=== meshmark-truth-status burn 1 ===
=== meshmark-note bpffs not mounted ===
=== meshmark-workloads-done at 20.25 ===
=== meshmark-agent-status 0 at 41.00 ===
=== meshmark-agent-stderr ===
meshmark-agent: profiling for 30s
=== meshmark-agent-stderr-end ===
=== meshmark-profile ===
{
  \"schema\": \"meshmark.profile/v1\"
}

=== meshmark-profile-end ===
=== meshmark-serve chosen ===
=== meshmark-serve-windows 3 at 60.00 ===
=== meshmark-serve-node ===
{\"schema\": \"meshmark.profile/v1\"}

=== meshmark-serve-node-end ===
=== meshmark-serve-agent-status 0 sleeper 77 ===
=== meshmark-agent-stderr ===
INFO first window scored; ready
=== meshmark-agent-stderr-end ===
=== meshmark-run kretprobe ===
=== meshmark-note the agent exited before it started profiling ===
=== meshmark-agent-ready at 50.00 ===
=== meshmark-agent-status 1 at 55.00 ===
=== meshmark-profile ===

=== meshmark-profile-end ===
=== meshmark-dmesg-tail ===
[    0.000000] Linux version
=== meshmark-end ===
";

    #[test]
    fn reads_every_section() {
        let guest = parse(CONSOLE);
        assert_eq!(guest.release.as_deref(), Some("6.12.117+deb12-cloud-amd64"));
        assert_eq!(guest.up_at, Some(1.83));
        assert_eq!(guest.notes, ["lo not up"]);
        let names: Vec<&str> = guest.windows.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["chosen", "kretprobe"]);

        let chosen = guest.window("chosen").unwrap();
        assert_eq!(chosen.ready_at, Some(9.5));
        assert_eq!(chosen.workloads_done_at, Some(20.25));
        assert_eq!(chosen.agent_done_at, Some(41.0));
        assert_eq!(chosen.agent_status, Some(0));
        assert_eq!(
            chosen.truths["tcp"],
            Truth {
                line: Some("{\"server\":{\"pid\":80}}".into()),
                status: Some(0)
            }
        );
        assert_eq!(chosen.truths["burn"].line.as_deref(), Some("{\"pid\":90}"));
        assert_eq!(chosen.truths["burn"].status, Some(1));
        assert_eq!(chosen.notes, ["bpffs not mounted"]);
        assert_eq!(chosen.agent_stderr, ["meshmark-agent: profiling for 30s"]);
        let serve = chosen.serve.as_ref().unwrap();
        assert_eq!(
            (serve.windows, serve.agent_status, serve.sleeper),
            (Some(3), Some(0), Some(77))
        );
        assert_eq!(serve.agent_stderr, ["INFO first window scored; ready"]);
        let node: serde_json::Value = serde_json::from_str(serve.node.as_deref().unwrap()).unwrap();
        assert_eq!(node["schema"], "meshmark.profile/v1");
        let profile: serde_json::Value =
            serde_json::from_str(chosen.profile.as_deref().unwrap()).unwrap();
        assert_eq!(profile["schema"], "meshmark.profile/v1");

        let kretprobe = guest.window("kretprobe").unwrap();
        assert_eq!(kretprobe.agent_status, Some(1));
        assert_eq!(kretprobe.profile.as_deref().map(str::trim), Some(""));
        assert!(kretprobe.truths.is_empty());
        assert!(kretprobe.serve.is_none());
        assert_eq!(
            kretprobe.notes,
            ["the agent exited before it started profiling"]
        );
        assert!(guest.ended);
    }

    #[test]
    fn a_guest_that_died_early_has_no_results() {
        let guest = parse("=== meshmark-guest-up 6.1.0-56-cloud-amd64 at 2.0 ===\nKernel panic\n");
        assert!(guest.windows.is_empty());
        assert!(!guest.ended);
    }
}
