//! Kernel drift in one place: for each signal, the hooks that can collect it, best first, and
//! the choice among them for the running kernel. Hooks are chosen from what the kernel's BTF
//! has, never from its version number (distributions backport), and a hook the kernel lists but
//! refuses at attach (fexit on a kernel without BPF trampolines) gives way to the next.
//!
//! The kernel side keeps one body of logic per signal with a thin adapter program per hook
//! (`meshmark-ebpf`); this table names those adapters.

use std::collections::BTreeMap;

/// Where a program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookPoint {
    /// A BTF tracepoint that takes at least `args` arguments.
    Tracepoint { name: &'static str, args: usize },
    /// fexit on a kernel function (it must be in the kernel's BTF).
    FExit { function: &'static str },
    /// A kprobe on a kernel function (in the kernel's BTF, so the name is the kernel's own).
    KProbe { function: &'static str },
    /// A kretprobe on a kernel function.
    KRetProbe { function: &'static str },
}

impl std::fmt::Display for HookPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookPoint::Tracepoint { name, args } => write!(f, "tracepoint {name} ({args} args)"),
            HookPoint::FExit { function } => write!(f, "fexit on {function}"),
            HookPoint::KProbe { function } => write!(f, "kprobe on {function}"),
            HookPoint::KRetProbe { function } => write!(f, "kretprobe on {function}"),
        }
    }
}

/// A program of the eBPF object and where it attaches. A program that is not `required` is
/// attached where the kernel has its hook point and skipped where it does not (a function
/// removed in later kernels). A kprobe program may be listed at several points: it is loaded
/// once and attached at each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Program {
    pub name: &'static str,
    pub point: HookPoint,
    pub required: bool,
}

/// One way of collecting a signal: the name reports show, and its programs.
#[derive(Debug, PartialEq, Eq)]
pub struct Alternative {
    pub name: &'static str,
    pub programs: &'static [Program],
}

/// A signal and the ways of collecting it, best first.
#[derive(Debug, PartialEq, Eq)]
pub struct Signal {
    pub name: &'static str,
    pub alternatives: &'static [Alternative],
    /// Whether `run` may attach its programs for only part of each window (its duty cycle) and
    /// scale what they saw. Never for signals whose programs hand out thread slots or whose
    /// time must be exact (CPU, run queue, lifecycle). The collector scales exactly the
    /// counters the signal fills, so this flag is the one place that decides it.
    pub duty_cycled: bool,
    /// The fields of `meshmark_common::ThreadCounters` its programs fill (by
    /// `meshmark_common::COUNTER_FIELDS` name); each field is filled by one signal.
    pub counters: &'static [&'static str],
}

const fn tp(name: &'static str, tracepoint: &'static str, args: usize) -> Program {
    Program {
        name,
        point: HookPoint::Tracepoint {
            name: tracepoint,
            args,
        },
        required: true,
    }
}

const fn fexit(name: &'static str, function: &'static str, required: bool) -> Program {
    Program {
        name,
        point: HookPoint::FExit { function },
        required,
    }
}

const fn kprobe(name: &'static str, function: &'static str, required: bool) -> Program {
    Program {
        name,
        point: HookPoint::KProbe { function },
        required,
    }
}

const fn kretprobe(name: &'static str, function: &'static str, required: bool) -> Program {
    Program {
        name,
        point: HookPoint::KRetProbe { function },
        required,
    }
}

/// Everything the profiler collects.
pub const PROFILER: &[Signal] = &[
    Signal {
        name: "cpu",
        counters: &[
            "cpu_ns",
            "switches",
            // Read at the same switch-out, alongside the CPU time (meshmark-ebpf/src/disk.rs).
            "disk_read_bytes",
            "disk_write_bytes",
            "disk_cancelled_write_bytes",
            // The CPU's perf counters, read at the same switch-out where the agent opened them
            // (meshmark-ebpf/src/counters.rs).
            "cycles",
            "instructions",
            "llc_misses",
        ],
        duty_cycled: false,
        alternatives: &[
            // prev_state became the fourth argument in 5.18.
            Alternative {
                name: "sched_switch/4",
                programs: &[tp("sched_switch", "sched_switch", 4)],
            },
            Alternative {
                name: "sched_switch/3",
                programs: &[tp("sched_switch_3", "sched_switch", 3)],
            },
        ],
    },
    Signal {
        name: "run_queue",
        counters: &["runq_wait_ns"],
        duty_cycled: false,
        alternatives: &[Alternative {
            name: "sched_wakeup",
            programs: &[
                tp("sched_wakeup", "sched_wakeup", 1),
                tp("sched_wakeup_new", "sched_wakeup_new", 1),
            ],
        }],
    },
    Signal {
        name: "syscalls",
        counters: &["syscalls", "timed_syscalls", "syscall_ns", "syscall_hist"],
        duty_cycled: true,
        alternatives: &[Alternative {
            name: "sys_enter+sys_exit",
            programs: &[
                tp("sys_enter", "sys_enter", 2),
                tp("sys_exit", "sys_exit", 2),
            ],
        }],
    },
    Signal {
        name: "socket_bytes",
        // Request turns are timed from the same byte hooks (meshmark-ebpf/src/requests.rs).
        counters: &[
            "net_bytes",
            "requests",
            "request_ns",
            "mux_requests",
            "mux_request_ns",
            "inbound_requests",
            "inbound_request_ns",
            "request_hist",
            "inbound_request_hist",
        ],
        duty_cycled: true,
        alternatives: &[
            // 6.3+.
            Alternative {
                name: "tracepoint",
                programs: &[
                    tp("sock_send_length", "sock_send_length", 3),
                    tp("sock_recv_length", "sock_recv_length", 3),
                ],
            },
            // The functions those tracepoints wrap; sendpage until 6.5.
            Alternative {
                name: "fexit",
                programs: &[
                    fexit("fexit_inet_sendmsg", "inet_sendmsg", true),
                    fexit("fexit_inet6_sendmsg", "inet6_sendmsg", true),
                    fexit("fexit_unix_stream_sendmsg", "unix_stream_sendmsg", true),
                    fexit("fexit_unix_dgram_sendmsg", "unix_dgram_sendmsg", true),
                    fexit("fexit_inet_recvmsg", "inet_recvmsg", true),
                    fexit("fexit_inet6_recvmsg", "inet6_recvmsg", true),
                    fexit("fexit_unix_stream_recvmsg", "unix_stream_recvmsg", true),
                    fexit("fexit_unix_dgram_recvmsg", "unix_dgram_recvmsg", true),
                    fexit("fexit_inet_sendpage", "inet_sendpage", false),
                    fexit("fexit_unix_stream_sendpage", "unix_stream_sendpage", false),
                ],
            },
            // Where fexit is refused (Debian's arm64 6.1 lists the functions but has no ftrace
            // direct calls: 524 at attach): the kprobe parks the socket and flags in the
            // thread's slot for the kretprobe.
            Alternative {
                name: "kretprobe",
                programs: &[
                    kprobe("kprobe_sendmsg", "inet_sendmsg", true),
                    kprobe("kprobe_sendmsg", "inet6_sendmsg", true),
                    kprobe("kprobe_sendmsg", "unix_stream_sendmsg", true),
                    kprobe("kprobe_sendmsg", "unix_dgram_sendmsg", true),
                    kprobe("kprobe_sendmsg", "inet_sendpage", false),
                    kprobe("kprobe_sendmsg", "unix_stream_sendpage", false),
                    kprobe("kprobe_recvmsg", "inet_recvmsg", true),
                    kprobe("kprobe_recvmsg", "inet6_recvmsg", true),
                    kprobe("kprobe_recvmsg", "unix_stream_recvmsg", true),
                    kprobe("kprobe_recvmsg", "unix_dgram_recvmsg", true),
                    kretprobe("kretprobe_send", "inet_sendmsg", true),
                    kretprobe("kretprobe_send", "inet6_sendmsg", true),
                    kretprobe("kretprobe_send", "unix_stream_sendmsg", true),
                    kretprobe("kretprobe_send", "unix_dgram_sendmsg", true),
                    kretprobe("kretprobe_send", "inet_sendpage", false),
                    kretprobe("kretprobe_send", "unix_stream_sendpage", false),
                    kretprobe("kretprobe_recv", "inet_recvmsg", true),
                    kretprobe("kretprobe_recv", "inet6_recvmsg", true),
                    kretprobe("kretprobe_recv", "unix_stream_recvmsg", true),
                    kretprobe("kretprobe_recv", "unix_dgram_recvmsg", true),
                ],
            },
        ],
    },
    // Marks accepted TCP connections and ends their turns at close. Never duty-cycled: an
    // accept or close missed would leave a connection unmarked or its entry behind.
    Signal {
        name: "tcp_connections",
        counters: &[],
        duty_cycled: false,
        alternatives: &[Alternative {
            name: "inet_sock_set_state",
            programs: &[tp("inet_sock_set_state", "inet_sock_set_state", 3)],
        }],
    },
    // Marks accepted unix stream connections and forgets them when their socket is freed
    // (meshmark-ebpf/src/requests.rs); never duty-cycled, as above. Tracing programs may not
    // attach to LSM hooks, so fexit marks at `unix_accept`, the kprobe at the connect's LSM
    // hook. A kernel with neither measures no unix turns, and says so under `hooks`.
    Signal {
        name: "unix_connections",
        counters: &[],
        duty_cycled: false,
        alternatives: &[
            Alternative {
                name: "fexit",
                programs: &[
                    fexit("fexit_unix_accept", "unix_accept", true),
                    fexit("fexit_unix_sock_destructor", "unix_sock_destructor", true),
                ],
            },
            // Where fexit is refused (Debian's arm64 6.1).
            Alternative {
                name: "kprobe",
                programs: &[
                    kprobe(
                        "kprobe_unix_stream_connect",
                        "security_unix_stream_connect",
                        true,
                    ),
                    kprobe("kprobe_unix_sock_destructor", "unix_sock_destructor", true),
                ],
            },
            Alternative {
                name: "none",
                programs: &[],
            },
        ],
    },
    Signal {
        name: "process_lifecycle",
        counters: &[],
        duty_cycled: false,
        alternatives: &[Alternative {
            name: "sched_process_exec+fork",
            programs: &[
                tp("sched_process_exec", "sched_process_exec", 3),
                tp("sched_process_fork", "sched_process_fork", 2),
            ],
        }],
    },
    Signal {
        name: "process_exit",
        counters: &[],
        duty_cycled: false,
        alternatives: &[
            // group_dead arrived in 6.16.
            Alternative {
                name: "sched_process_exit/2",
                programs: &[tp("sched_process_exit", "sched_process_exit", 2)],
            },
            Alternative {
                name: "sched_process_exit/1",
                programs: &[tp("sched_process_exit_1", "sched_process_exit", 1)],
            },
        ],
    },
];

/// The signal of [`PROFILER`] whose programs fill `counter` (a `COUNTER_FIELDS` name).
pub fn filling(counter: &str) -> Option<&'static Signal> {
    PROFILER.iter().find(|s| s.counters.contains(&counter))
}

/// Indexes into `ThreadCounters::words` of the counters a duty cycle scales: the sums (not the
/// histograms) filled by a duty-cycled signal.
pub fn scaled_counter_words() -> impl Iterator<Item = usize> {
    meshmark_common::COUNTER_FIELDS
        .iter()
        .filter(|f| f.kind == meshmark_common::CounterKind::Sum)
        .filter(|f| filling(f.name).is_some_and(|s| s.duty_cycled))
        .flat_map(|f| f.first_word..f.first_word + f.words)
}

/// The empty syscall pair that `cargo xtask bench` measures as the floor.
pub const BENCH_FLOOR: &[Signal] = &[Signal {
    name: "syscalls",
    duty_cycled: false,
    counters: &[],
    alternatives: &[Alternative {
        name: "empty pair",
        programs: &[
            tp("bench_empty_sys_enter", "sys_enter", 2),
            tp("bench_empty_sys_exit", "sys_exit", 2),
        ],
    }],
}];

/// An empty program on every tracepoint the profiler uses on a current kernel, for `cargo xtask
/// bench` to set each of the profiler's programs beside the bare cost of its hook.
pub const BENCH_EMPTY: &[Signal] = &[Signal {
    name: "every hook",
    duty_cycled: false,
    counters: &[],
    alternatives: &[Alternative {
        name: "empty programs",
        programs: &[
            tp("bench_empty_sys_enter", "sys_enter", 2),
            tp("bench_empty_sys_exit", "sys_exit", 2),
            tp("bench_empty_sched_switch", "sched_switch", 4),
            tp("bench_empty_sched_wakeup", "sched_wakeup", 1),
            tp("bench_empty_sched_wakeup_new", "sched_wakeup_new", 1),
            tp("bench_empty_sock_send_length", "sock_send_length", 3),
            tp("bench_empty_sock_recv_length", "sock_recv_length", 3),
            tp("bench_empty_sched_process_exec", "sched_process_exec", 3),
            tp("bench_empty_sched_process_fork", "sched_process_fork", 2),
            tp("bench_empty_sched_process_exit", "sched_process_exit", 1),
        ],
    }],
}];

/// The syscall pair that only reads the clock on each side, for `cargo xtask bench`.
pub const BENCH_CLOCK: &[Signal] = &[Signal {
    name: "syscalls",
    duty_cycled: false,
    counters: &[],
    alternatives: &[Alternative {
        name: "clock pair",
        programs: &[
            tp("bench_clock_sys_enter", "sys_enter", 2),
            tp("bench_clock_sys_exit", "sys_exit", 2),
        ],
    }],
}];

/// What the running kernel offers, as its BTF tells.
pub trait KernelHooks {
    /// Arguments of BTF tracepoint `name`, `None` when the kernel has no such tracepoint.
    fn tracepoint_args(&self, name: &str) -> Option<usize>;
    /// Whether the kernel has a function `name` in its BTF.
    fn has_function(&self, name: &str) -> bool;
}

impl KernelHooks for meshmark_btf::Btf {
    fn tracepoint_args(&self, name: &str) -> Option<usize> {
        self.tracepoint_arg_count(name)
    }

    fn has_function(&self, name: &str) -> bool {
        self.has_function(name)
    }
}

/// Whether the kernel has `point`.
pub fn has_point(kernel: &impl KernelHooks, point: HookPoint) -> bool {
    match point {
        HookPoint::Tracepoint { name, args } => {
            kernel.tracepoint_args(name).is_some_and(|n| n >= args)
        }
        HookPoint::FExit { function }
        | HookPoint::KProbe { function }
        | HookPoint::KRetProbe { function } => kernel.has_function(function),
    }
}

/// A signal forced to one of its hooks (`--hook SIGNAL=HOOK`): to test a fallback on a kernel
/// that has better, or to step around a hook that misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookOverride {
    pub signal: &'static str,
    pub hook: &'static str,
}

impl std::str::FromStr for HookOverride {
    type Err = String;

    /// `SIGNAL=HOOK`, both names from the profiler's table.
    fn from_str(text: &str) -> Result<HookOverride, String> {
        let (signal_name, hook_name) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?} is not SIGNAL=HOOK (e.g. socket_bytes=fexit)"))?;
        let signal = PROFILER
            .iter()
            .find(|s| s.name == signal_name)
            .ok_or_else(|| {
                let names: Vec<&str> = PROFILER.iter().map(|s| s.name).collect();
                format!("no signal {signal_name:?}; signals: {}", names.join(", "))
            })?;
        let alternative = signal
            .alternatives
            .iter()
            .find(|a| a.name == hook_name)
            .ok_or_else(|| {
                let names: Vec<&str> = signal.alternatives.iter().map(|a| a.name).collect();
                format!(
                    "{signal_name} has no hook {hook_name:?}; its hooks: {}",
                    names.join(", ")
                )
            })?;
        Ok(HookOverride {
            signal: signal.name,
            hook: alternative.name,
        })
    }
}

/// `usable` with the overridden signal narrowed to its forced hook; an error when the kernel
/// does not have that hook.
pub fn apply_override<'s>(
    mut usable: Vec<(&'s Signal, Vec<&'s Alternative>)>,
    forced: Option<HookOverride>,
) -> Result<Vec<(&'s Signal, Vec<&'s Alternative>)>, String> {
    let Some(forced) = forced else {
        return Ok(usable);
    };
    for (signal, alternatives) in &mut usable {
        if signal.name == forced.signal {
            alternatives.retain(|a| a.name == forced.hook);
            if alternatives.is_empty() {
                return Err(format!(
                    "--hook {}={}: this kernel does not have that hook",
                    forced.signal, forced.hook
                ));
            }
        }
    }
    Ok(usable)
}

/// Whether every required program of `alternative` has its hook point in the kernel.
pub fn available(kernel: &impl KernelHooks, alternative: &Alternative) -> bool {
    alternative
        .programs
        .iter()
        .all(|p| !p.required || has_point(kernel, p.point))
}

/// Each signal with its alternatives that the kernel has, best first; or, for every signal
/// with none, a line saying what each alternative lacks.
pub fn candidates<'s>(
    signals: &'s [Signal],
    kernel: &impl KernelHooks,
) -> Result<Vec<(&'s Signal, Vec<&'s Alternative>)>, Vec<String>> {
    let mut chosen = Vec::new();
    let mut missing = Vec::new();
    for signal in signals {
        let usable: Vec<&Alternative> = signal
            .alternatives
            .iter()
            .filter(|a| available(kernel, a))
            .collect();
        if usable.is_empty() {
            let lacks: Vec<String> = signal
                .alternatives
                .iter()
                .map(|a| {
                    let absent: Vec<String> = a
                        .programs
                        .iter()
                        .filter(|p| p.required && !has_point(kernel, p.point))
                        .map(|p| p.point.to_string())
                        .collect();
                    format!("{} (no {})", a.name, absent.join(", no "))
                })
                .collect();
            missing.push(format!("{}: {}", signal.name, lacks.join("; or ")));
        } else {
            chosen.push((signal, usable));
        }
    }
    if missing.is_empty() {
        Ok(chosen)
    } else {
        Err(missing)
    }
}

/// The hook each signal uses, by signal name: what the profile JSON reports under `hooks`.
pub type ChosenHooks = BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    /// A kernel described by its tracepoints and functions.
    struct Kernel {
        tracepoints: HashMap<&'static str, usize>,
        functions: HashSet<&'static str>,
    }

    impl KernelHooks for Kernel {
        fn tracepoint_args(&self, name: &str) -> Option<usize> {
            self.tracepoints.get(name).copied()
        }
        fn has_function(&self, name: &str) -> bool {
            self.functions.contains(name)
        }
    }

    /// The tracepoints every supported kernel has, with `switch` and `exit` arities.
    fn kernel(
        switch: usize,
        exit: usize,
        sock_tracepoints: bool,
        functions: &[&'static str],
    ) -> Kernel {
        let mut tracepoints = HashMap::from([
            ("sched_switch", switch),
            ("sched_wakeup", 1),
            ("sched_wakeup_new", 1),
            ("sys_enter", 2),
            ("sys_exit", 2),
            ("sched_process_exec", 3),
            ("sched_process_fork", 2),
            ("sched_process_exit", exit),
            // 4.16+.
            ("inet_sock_set_state", 3),
        ]);
        if sock_tracepoints {
            tracepoints.insert("sock_send_length", 3);
            tracepoints.insert("sock_recv_length", 3);
        }
        Kernel {
            tracepoints,
            functions: functions.iter().copied().collect(),
        }
    }

    const FAMILY_FUNCTIONS: [&str; 8] = [
        "inet_sendmsg",
        "inet6_sendmsg",
        "unix_stream_sendmsg",
        "unix_dgram_sendmsg",
        "inet_recvmsg",
        "inet6_recvmsg",
        "unix_stream_recvmsg",
        "unix_dgram_recvmsg",
    ];

    fn first_choices(kernel: &Kernel) -> BTreeMap<&'static str, &'static str> {
        candidates(PROFILER, kernel)
            .expect("supported")
            .into_iter()
            .map(|(signal, usable)| (signal.name, usable[0].name))
            .collect()
    }

    #[test]
    fn each_kernel_generation_gets_its_hooks() {
        // 5.15: three-argument sched_switch, no sock tracepoints, sendpage still there.
        let mut with_sendpage = FAMILY_FUNCTIONS.to_vec();
        with_sendpage.extend(["inet_sendpage", "unix_stream_sendpage"]);
        let v5_15 = first_choices(&kernel(3, 1, false, &with_sendpage));
        assert_eq!(v5_15["cpu"], "sched_switch/3");
        assert_eq!(v5_15["socket_bytes"], "fexit");
        assert_eq!(v5_15["process_exit"], "sched_process_exit/1");
        // 6.1: prev_state as an argument, still no sock tracepoints.
        let v6_1 = first_choices(&kernel(4, 1, false, &FAMILY_FUNCTIONS));
        assert_eq!(v6_1["cpu"], "sched_switch/4");
        assert_eq!(v6_1["socket_bytes"], "fexit");
        // 6.12 has the tracepoints; 6.16+ adds group_dead.
        let v6_12 = first_choices(&kernel(4, 1, true, &FAMILY_FUNCTIONS));
        assert_eq!(v6_12["socket_bytes"], "tracepoint");
        let v6_18 = first_choices(&kernel(4, 2, true, &FAMILY_FUNCTIONS));
        assert_eq!(v6_18["process_exit"], "sched_process_exit/2");
    }

    #[test]
    fn fexit_stays_a_fallback_where_the_tracepoints_exist() {
        let choices = candidates(PROFILER, &kernel(4, 2, true, &FAMILY_FUNCTIONS)).unwrap();
        let (_, sockets) = choices
            .iter()
            .find(|(s, _)| s.name == "socket_bytes")
            .unwrap();
        let names: Vec<&str> = sockets.iter().map(|a| a.name).collect();
        assert_eq!(names, ["tracepoint", "fexit", "kretprobe"]);
    }

    #[test]
    fn a_kernel_with_neither_hook_is_refused_with_what_each_lacks() {
        let missing = candidates(PROFILER, &kernel(4, 1, false, &["inet_sendmsg"])).unwrap_err();
        assert_eq!(missing.len(), 1, "{missing:?}");
        let line = &missing[0];
        assert!(line.starts_with("socket_bytes: tracepoint (no tracepoint sock_send_length"));
        assert!(line.contains("fexit (no fexit on inet6_sendmsg"), "{line}");
        assert!(
            !line.contains("inet_sendpage"),
            "optional functions are not demanded"
        );
    }

    #[test]
    fn a_program_belongs_to_one_alternative_and_one_kind_of_hook() {
        let mut owner: HashMap<&str, (&str, std::mem::Discriminant<HookPoint>)> = HashMap::new();
        let mut points = HashSet::new();
        for signals in [PROFILER, BENCH_FLOOR, BENCH_CLOCK] {
            // BENCH_EMPTY reuses the floor's pair on purpose: it is a superset of it.
            for alternative in signals.iter().flat_map(|s| s.alternatives) {
                for program in alternative.programs {
                    let kind = std::mem::discriminant(&program.point);
                    let first = *owner
                        .entry(program.name)
                        .or_insert((alternative.name, kind));
                    assert_eq!(first, (alternative.name, kind), "{}", program.name);
                    assert!(
                        points.insert((program.name, program.point)),
                        "{program:?} twice"
                    );
                }
            }
        }
    }

    #[test]
    fn every_counter_is_filled_by_exactly_one_signal() {
        for field in meshmark_common::COUNTER_FIELDS {
            let fillers: Vec<&str> = PROFILER
                .iter()
                .filter(|s| s.counters.contains(&field.name))
                .map(|s| s.name)
                .collect();
            assert_eq!(fillers.len(), 1, "{} is filled by {fillers:?}", field.name);
        }
        for name in PROFILER.iter().flat_map(|s| s.counters) {
            assert!(
                meshmark_common::COUNTER_FIELDS
                    .iter()
                    .any(|f| f.name == *name),
                "{name} is no field of ThreadCounters"
            );
        }
    }

    #[test]
    fn overrides_name_a_signal_and_one_of_its_hooks() {
        let forced: HookOverride = "socket_bytes=kretprobe".parse().unwrap();
        assert_eq!((forced.signal, forced.hook), ("socket_bytes", "kretprobe"));
        assert!("socket_bytes"
            .parse::<HookOverride>()
            .unwrap_err()
            .contains("SIGNAL=HOOK"));
        assert!("sockets=fexit"
            .parse::<HookOverride>()
            .unwrap_err()
            .contains("signals: cpu"));
        assert!("cpu=fexit"
            .parse::<HookOverride>()
            .unwrap_err()
            .contains("sched_switch/4"));

        let v6_12 = kernel(4, 1, true, &FAMILY_FUNCTIONS);
        let usable = candidates(PROFILER, &v6_12).unwrap();
        let narrowed = apply_override(usable.clone(), Some(forced)).unwrap();
        let (_, sockets) = narrowed
            .iter()
            .find(|(s, _)| s.name == "socket_bytes")
            .unwrap();
        assert_eq!(
            sockets.iter().map(|a| a.name).collect::<Vec<_>>(),
            ["kretprobe"]
        );
        let old = kernel(4, 1, true, &[]);
        let usable = candidates(PROFILER, &old).unwrap();
        assert!(apply_override(usable, Some(forced)).is_err());
    }
}
