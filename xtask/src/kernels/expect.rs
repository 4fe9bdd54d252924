//! The matrix itself, in one table: which Debian kernel series boot on which architecture, how
//! their packages are named, and, for each profile window the guest runs, the `--hook` it forces
//! and the hook the agent must then report for each signal. The hooks follow from what each
//! kernel's BTF has (docs/how-it-measures.md, kernel support), never from the version number: 6.1 lacks the
//! `sock_send_length`/`sock_recv_length` tracepoints (6.3+), so socket bytes come from fexit;
//! all have the four-argument `sched_switch` (5.18+) and none has `group_dead` in
//! `sched_process_exit` (6.16+). Debian's arm64 6.1 lists fexit's functions but refuses fexit at
//! attach (error 524: its ftrace has no direct calls), so there the agent falls back to kprobes
//! by itself. The forced windows run the socket-byte fallbacks that the development kernel
//! cannot attach (fexit, kretprobe), each against the same exact byte counts; on arm64 they read
//! the arguments from arm64's registers.

use crate::platform::{Platform, AARCH64, X86_64};

/// The hook the profile's `hooks` object must name for each signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hooks {
    pub cpu: &'static str,
    pub socket_bytes: &'static str,
    pub process_exit: &'static str,
    pub unix_connections: &'static str,
}

impl Hooks {
    /// (JSON key, expected value) for each signal, in the order the checks print them.
    pub fn by_signal(&self) -> [(&'static str, &'static str); 4] {
        [
            ("cpu", self.cpu),
            ("socket_bytes", self.socket_bytes),
            ("process_exit", self.process_exit),
            ("unix_connections", self.unix_connections),
        ]
    }
}

/// One profile window in the guest, around all the workloads.
#[derive(Debug)]
pub struct Run {
    /// Names the window in markers and messages.
    pub name: &'static str,
    /// The agent's `--hook` value, if the window forces one.
    pub force: Option<&'static str>,
    pub hooks: Hooks,
}

/// One kernel series of the matrix. Its packages are named `<prefix><n><suffix>`; the newest `n`
/// that apt knows is the one tested.
#[derive(Debug)]
pub struct Series {
    /// Short name for messages and log files.
    pub name: &'static str,
    /// The architecture its kernels, QEMU and guest binaries are for.
    pub platform: &'static Platform,
    pub prefix: &'static str,
    pub suffix: &'static str,
    /// The windows, in the order the guest runs them; the first chooses its hooks itself.
    pub runs: &'static [Run],
}

/// Socket bytes forced through the kprobes, which every kernel of the matrix has.
const FORCED_KRETPROBE: Run = Run {
    name: "kretprobe",
    force: Some("socket_bytes=kretprobe"),
    hooks: Hooks {
        cpu: "sched_switch/4",
        socket_bytes: "kretprobe",
        process_exit: "sched_process_exit/1",
        unix_connections: "fexit",
    },
};

/// 6.12's windows, the same on both architectures: the tracepoints by choice, then fexit and
/// the kprobes forced.
const RUNS_6_12: &[Run] = &[
    Run {
        name: "chosen",
        force: None,
        hooks: Hooks {
            cpu: "sched_switch/4",
            socket_bytes: "tracepoint",
            process_exit: "sched_process_exit/1",
            unix_connections: "fexit",
        },
    },
    Run {
        name: "fexit",
        force: Some("socket_bytes=fexit"),
        hooks: Hooks {
            cpu: "sched_switch/4",
            socket_bytes: "fexit",
            process_exit: "sched_process_exit/1",
            unix_connections: "fexit",
        },
    },
    FORCED_KRETPROBE,
];

pub const MATRIX: &[Series] = &[
    Series {
        name: "6.1",
        platform: &X86_64,
        prefix: "linux-image-6.1.0-",
        suffix: "-cloud-amd64-unsigned",
        runs: &[
            Run {
                name: "chosen",
                force: None,
                hooks: Hooks {
                    cpu: "sched_switch/4",
                    socket_bytes: "fexit",
                    process_exit: "sched_process_exit/1",
                    unix_connections: "fexit",
                },
            },
            FORCED_KRETPROBE,
        ],
    },
    Series {
        name: "6.12",
        platform: &X86_64,
        prefix: "linux-image-6.12.",
        suffix: "+deb12-cloud-amd64-unsigned",
        runs: RUNS_6_12,
    },
    // Debian's arm64 6.1 refuses fexit (524), so its own choice is the kprobe fallback.
    Series {
        name: "6.1",
        platform: &AARCH64,
        prefix: "linux-image-6.1.0-",
        suffix: "-cloud-arm64-unsigned",
        runs: &[Run {
            name: "chosen",
            force: None,
            hooks: Hooks {
                cpu: "sched_switch/4",
                socket_bytes: "kretprobe",
                process_exit: "sched_process_exit/1",
                // No fexit here: the kprobe on the connect's LSM hook.
                unix_connections: "kprobe",
            },
        }],
    },
    Series {
        name: "6.12",
        platform: &AARCH64,
        prefix: "linux-image-6.12.",
        suffix: "+deb12-cloud-arm64-unsigned",
        runs: RUNS_6_12,
    },
];

impl Series {
    /// The series and its architecture, for messages: `6.1 aarch64`.
    pub fn label(&self) -> String {
        format!("{} {}", self.name, self.platform.arch)
    }

    /// The number `n` in a package name of this series, or None for another package.
    pub fn number(&self, package: &str) -> Option<u32> {
        let n = package
            .strip_prefix(self.prefix)?
            .strip_suffix(self.suffix)?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n.parse().ok()
    }

    /// The package with the highest number among `packages`.
    pub fn newest<'a>(&self, packages: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        packages
            .into_iter()
            .filter_map(|p| Some((self.number(p)?, p)))
            .max_by_key(|(n, _)| *n)
            .map(|(_, p)| p)
    }

    /// An `apt-cache search --names-only` regular expression for this series.
    pub fn search_pattern(&self) -> String {
        format!(
            "^{}[0-9]+{}$",
            self.prefix.replace('.', "\\.").replace('+', "\\+"),
            self.suffix.replace('.', "\\.").replace('+', "\\+")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_compares_numbers_not_strings() {
        let [v61, v612] = [&MATRIX[0], &MATRIX[1]];
        let found = [
            "linux-image-6.1.0-9-cloud-amd64-unsigned",
            "linux-image-6.1.0-56-cloud-amd64-unsigned",
            "linux-image-6.1.0-56-cloud-amd64-dbg",
            "linux-image-6.12.117+deb12-cloud-amd64-unsigned",
            "linux-image-6.12.99+deb12-cloud-amd64-unsigned",
            "linux-image-6.12.120+deb12-rt-amd64-unsigned",
        ];
        assert_eq!(
            v61.newest(found),
            Some("linux-image-6.1.0-56-cloud-amd64-unsigned")
        );
        assert_eq!(
            v612.newest(found),
            Some("linux-image-6.12.117+deb12-cloud-amd64-unsigned")
        );
        assert_eq!(v61.newest([]), None);
    }

    #[test]
    fn each_kernel_first_chooses_by_itself_then_forces_only_socket_bytes() {
        for series in MATRIX {
            assert_eq!(series.runs[0].force, None, "{}", series.name);
            for run in &series.runs[1..] {
                let forced = run.force.unwrap();
                assert_eq!(forced, format!("socket_bytes={}", run.hooks.socket_bytes));
                assert_eq!(forced.split_once('=').unwrap().1, run.name);
            }
        }
    }

    #[test]
    fn every_architecture_boots_both_series_and_packages_name_theirs() {
        for platform in crate::platform::PLATFORMS {
            let names: Vec<&str> = MATRIX
                .iter()
                .filter(|s| s.platform.arch == platform.arch)
                .map(|s| s.name)
                .collect();
            assert_eq!(names, ["6.1", "6.12"], "{}", platform.arch);
        }
        for series in MATRIX {
            let arch = format!("-{}-", series.platform.oci_arch);
            assert!(series.suffix.contains(&arch), "{}", series.label());
        }
    }

    #[test]
    fn patterns_escape_dots_and_plus() {
        assert_eq!(
            MATRIX[1].search_pattern(),
            "^linux-image-6\\.12\\.[0-9]+\\+deb12-cloud-amd64-unsigned$"
        );
    }
}
