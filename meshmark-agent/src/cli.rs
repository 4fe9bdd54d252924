//! The command line: argument parsing and one function per subcommand.

mod kubelet_args;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

use crate::{
    bounded,
    collect::{Profiler, ProfilerOptions},
    config::{self, Config, ConfigError},
    duration::parse_duration,
    export::{self, Format},
    inventory::{self, pod_metadata::PodMetadata},
    node_lock,
    probe::{PreflightError, Probe, ProbeOptions, ProgramSet},
    report::{build_report, Report},
    saved_profile, serve,
    snapshot::Snapshot,
};
pub use kubelet_args::{KubeletArgs, KubeletTarget};

/// Exit status for a preflight failure (privileges, kernel features) and for invalid input (a
/// configuration file or saved profile that cannot be used).
pub const EXIT_PREFLIGHT: u8 = 2;

/// `--thread-slots`: more slots than thread ids are never needed, and Linux's largest pid_max
/// is 2^22 (`PID_MAX_LIMIT`).
pub const THREAD_SLOTS_RANGE: std::ops::RangeInclusive<i64> =
    1..=(meshmark_common::PID_MAX_LIMIT as i64);
/// `--syscall-sample`, in `profile` and `attach`; a saved profile's `syscall_sample_every` is
/// checked against the same bounds.
pub const SYSCALL_SAMPLE_RANGE: std::ops::RangeInclusive<i64> =
    1..=(crate::snapshot::SYSCALL_SAMPLE_MAX as i64);
/// `--ring-bytes`: the kernel's smallest ring buffer is one page; 1 GiB, a thousand times the
/// default, is the most the probe will lock.
pub const RING_BYTES_RANGE: std::ops::RangeInclusive<i64> = 4096..=(1 << 30);

/// An input file the user must fix; reported with exit status 2, like a usage error.
#[derive(Debug)]
struct BadInput(String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

#[derive(Parser, Debug)]
#[command(
    name = "meshmark-agent",
    version,
    about = "What does the service mesh cost on this node?"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Profile this node for one window: what every process used, roles and MeshMark.
    Profile(ProfileArgs),
    /// Score a saved profile again, with roles derived afresh from its recorded identity.
    Score(ScoreArgs),
    /// Reports to hand on: one saved profile, or several side by side with their differences
    /// from the first (e.g. without the mesh, then with it).
    Report(ReportArgs),
    /// Score this node continuously, one window after another, and serve the latest window
    /// over HTTP: /metrics (Prometheus), /api/v1/node (the profile JSON), /healthz, /readyz.
    /// SIGTERM or SIGINT detaches and exits 0.
    Run(RunArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Attach a program set and hold it for a while (used by `cargo xtask bench`).
    #[command(hide = true)]
    Attach(AttachArgs),
}

#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// `profiler` (everything), `bench-floor` (empty sys_enter/sys_exit programs),
    /// `bench-clock` (a sys_enter/sys_exit pair that only reads the clock) or `bench-empty` (an
    /// empty program on every hook the profiler uses).
    #[arg(long, default_value = "profiler", value_parser = parse_program_set)]
    pub programs: ProgramSet,
    /// How long to stay attached; SIGINT or SIGTERM end it early.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Enable BPF run-time statistics and print them as JSON at the end.
    #[arg(long)]
    pub stats: bool,
    /// As for `profile`: time one syscall in N per thread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(SYSCALL_SAMPLE_RANGE))]
    pub syscall_sample: u32,
    /// As for `profile`: hardware counters, off or the software test event.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub counters: crate::probe::counters::CounterMode,
}

fn parse_program_set(text: &str) -> Result<ProgramSet, String> {
    match text {
        "profiler" => Ok(ProgramSet::Profiler),
        "bench-floor" => Ok(ProgramSet::BenchFloor),
        "bench-clock" => Ok(ProgramSet::BenchClock),
        "bench-empty" => Ok(ProgramSet::BenchEmpty),
        other => Err(format!(
            "unknown program set {other:?}; expected profiler, bench-floor, bench-clock or bench-empty"
        )),
    }
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Address and port to serve on.
    #[arg(
        long,
        env = "MESHMARK_LISTEN",
        default_value = "0.0.0.0:9477",
        value_name = "ADDR",
        value_parser = parse_listen
    )]
    pub listen: SocketAddr,
    /// Length of each scored window, e.g. 15s, 1m [default: the configuration's `window`,
    /// else 15s, as for `profile`].
    #[arg(long, env = "MESHMARK_WINDOW", value_name = "DUR", value_parser = parse_run_window)]
    pub window: Option<Duration>,
    /// Rules, weights and options (see docs/configuration.md).
    #[arg(long, env = "MESHMARK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub limits: ConfigLimit,
    /// The file whose lock keeps a second `run` off this node. The default, the root of the
    /// cgroup hierarchy, is one inode node-wide: an agent on the host and one in a pod that
    /// mounts the host's /sys/fs/cgroup (deploy/) see the same lock. Name another file only to
    /// run several agents on purpose, e.g. in tests (docs/configuration.md#one-agent-per-node).
    #[arg(long, env = "MESHMARK_LOCK_FILE", value_name = "FILE",
          default_value = crate::node_lock::DEFAULT_LOCK_FILE)]
    pub lock_file: PathBuf,
    /// Log level: error, warn, info, debug or trace.
    #[arg(
        long,
        env = "MESHMARK_LOG_LEVEL",
        default_value = "info",
        value_name = "LEVEL",
        value_parser = parse_log_level
    )]
    pub log_level: tracing::level_filters::LevelFilter,
    /// Name of this node in every series' `node` label and in /api/v1/node [default: the host
    /// name]. In Kubernetes set NODE_NAME from spec.nodeName, as deploy/ does: a pod's host
    /// name is the pod's.
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
    /// Share of each window during which syscalls and socket bytes are observed: their
    /// programs are attached for that long at a random moment of the window, and what they see
    /// is scaled to the whole window (an estimate, marked as such in the JSON and metrics).
    /// CPU, run-queue time and process lifecycle are observed all the time. 100% observes
    /// everything all the time, as `profile` does, at several times the cost
    /// (docs/how-it-measures.md#duty-cycle).
    #[arg(long, env = "MESHMARK_DUTY_CYCLE", value_name = "PERCENT",
          default_value = serve::DEFAULT_DUTY_CYCLE, value_parser = parse_duty_cycle)]
    pub duty_cycle: u8,
    /// Keep the kernel's BPF run statistics on for the meshmark_bpf_program_* metrics. The
    /// kernel then reads the clock twice around every program run, which costs the node more
    /// than some of the programs do; off by default.
    #[arg(long, env = "MESHMARK_BPF_STATS")]
    pub bpf_stats: bool,
    #[command(flatten)]
    pub serving: ServingArgs,
    #[command(flatten)]
    pub kernel: KernelArgs,
    #[command(flatten)]
    pub kubelet: KubeletArgs,
}

/// How `run` serves: TLS and authentication, and the limits that keep the endpoint up under
/// abuse (docs/configuration.md#serving).
#[derive(clap::Args, Debug)]
pub struct ServingArgs {
    /// TLS, basic authentication and response headers, in the Prometheus exporter-toolkit's
    /// web configuration format (node_exporter's --web.config.file); read again when it
    /// changes. /healthz and /readyz never ask for a password.
    #[arg(long, env = "MESHMARK_WEB_CONFIG", value_name = "FILE")]
    pub web_config: Option<PathBuf>,
    /// Also serve /healthz and /readyz, and nothing else, in plain HTTP on this address: for
    /// the kubelet's probes when the web configuration requires client certificates.
    #[arg(long, env = "MESHMARK_HEALTH_LISTEN", value_name = "ADDR", value_parser = parse_listen)]
    pub health_listen: Option<SocketAddr>,
    /// Most connections open at once; at the cap a new one replaces the one waiting longest.
    /// Lowered to what the open-file limit leaves room for.
    #[arg(long, env = "MESHMARK_MAX_CONNECTIONS", value_name = "N",
          default_value_t = serve::DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections: u32,
    /// Longest a client may take to send a request's head (and its TLS handshake) from its
    /// first byte.
    #[arg(long, env = "MESHMARK_HEADER_TIMEOUT", value_name = "DUR",
          default_value = "10s", value_parser = parse_timeout)]
    pub header_timeout: Duration,
    /// Longest a connection may stay open without a request.
    #[arg(long, env = "MESHMARK_IDLE_TIMEOUT", value_name = "DUR",
          default_value = "60s", value_parser = parse_timeout)]
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers) in bytes, 8192 to 1048576; larger ones
    /// are answered 431.
    #[arg(long, env = "MESHMARK_MAX_HEADER_BYTES", value_name = "BYTES",
          default_value_t = 65_536,
          value_parser = clap::value_parser!(u32).range(8_192..=1_048_576))]
    pub max_header_bytes: u32,
}

/// A timeout of the HTTP server: at least 100 ms, at most an hour.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_duration(text)?;
    if !(Duration::from_millis(100)..=Duration::from_secs(3_600)).contains(&timeout) {
        return Err(format!(
            "a timeout of {} is out of range; use 100ms to 1h, such as 10s",
            humantime::format_duration(timeout)
        ));
    }
    Ok(timeout)
}

impl ServingArgs {
    /// The web configuration, checked now: a bad file stops `run` before anything loads.
    fn web_config(&self) -> Result<Option<std::sync::Arc<serve::web_config::WebConfigSource>>> {
        self.web_config
            .as_deref()
            .map(|path| {
                serve::web_config::WebConfigSource::open(path)
                    .map(std::sync::Arc::new)
                    .map_err(|why| {
                        BadInput(format!(
                            "{why}\n(--web-config or MESHMARK_WEB_CONFIG; the format is in docs/configuration.md#serving)"
                        ))
                        .into()
                    })
            })
            .transpose()
    }

    fn limits(&self) -> serve::guard::Limits {
        serve::guard::Limits {
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_header_bytes: usize::try_from(self.max_header_bytes).unwrap_or(usize::MAX),
        }
    }
}

fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "{text:?} is not an address and port; write one such as 0.0.0.0:9477, \
             127.0.0.1:9477 or [::]:9477"
        )
    })
}

fn parse_run_window(text: &str) -> Result<Duration, String> {
    let window = parse_duration(text)?;
    check_run_window(window)?;
    Ok(window)
}

/// `run` refuses windows shorter than [`serve::MIN_WINDOW`].
fn check_run_window(window: Duration) -> Result<(), String> {
    if window < serve::MIN_WINDOW {
        return Err(format!(
            "a window of {} is too short to score continuously; use {} or longer, such as 15s",
            humantime::format_duration(window),
            humantime::format_duration(serve::MIN_WINDOW)
        ));
    }
    Ok(())
}

fn parse_log_level(text: &str) -> Result<tracing::level_filters::LevelFilter, String> {
    match text.to_ascii_lowercase().as_str() {
        "error" | "warn" | "info" | "debug" | "trace" => Ok(text.parse().expect("a known level")),
        _ => Err(format!(
            "unknown log level {text:?}; expected error, warn, info, debug or trace"
        )),
    }
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate a configuration file; every problem is reported with its line.
    Check {
        /// The TOML file to check.
        file: PathBuf,
        #[command(flatten)]
        limits: ConfigLimit,
    },
}

/// How large a configuration file may be.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct ConfigLimit {
    /// Largest configuration file read, in bytes; a larger one is refused before it is parsed
    /// (16,000 rules take about 1 MiB).
    #[arg(long, env = "MESHMARK_MAX_CONFIG_BYTES", value_name = "BYTES",
          default_value_t = bounded::DEFAULT_MAX_CONFIG_BYTES,
          value_parser = parse_byte_limit)]
    pub max_config_bytes: u64,
}

/// How large a saved profile may be.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct ProfileLimit {
    /// Largest saved profile read, in bytes (about 1 KiB per process); a larger one is refused.
    #[arg(long, env = "MESHMARK_MAX_PROFILE_BYTES", value_name = "BYTES",
          default_value_t = bounded::DEFAULT_MAX_PROFILE_BYTES,
          value_parser = parse_byte_limit)]
    pub max_profile_bytes: u64,
}

/// A byte limit: a whole number of bytes from 1 up, as the flags that take one say.
fn parse_byte_limit(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(bytes @ 1..) => Ok(bytes),
        _ => Err(format!(
            "{text:?} is not a number of bytes; write a whole number from 1 to {}, such as \
             16777216 for 16 MiB",
            u64::MAX
        )),
    }
}

/// Where output goes and in which form.
#[derive(clap::Args, Debug)]
pub struct OutputArgs {
    /// Output format: table, json (the profile document), smp (a Service Mesh Performance
    /// result, docs/smp.md) or html (one self-contained page, docs/reports.md).
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Write the output to this file instead of standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ScoreArgs {
    /// A profile written by `profile --format json`.
    #[arg(long)]
    pub input: PathBuf,
    /// Rules, weights and options to score with (see docs/configuration.md).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub limits: ConfigLimit,
    #[command(flatten)]
    pub profile_limit: ProfileLimit,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// A profile written by `profile --format json`; repeat for a comparison, baseline first.
    #[arg(long, required = true)]
    pub input: Vec<PathBuf>,
    /// The name of each input, in the same order (default: the file name without `.json`).
    #[arg(long)]
    pub label: Vec<String>,
    /// Rules, weights and options to score every input with (see docs/configuration.md).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub limits: ConfigLimit,
    #[command(flatten)]
    pub profile_limit: ProfileLimit,
    /// Output format: table, json, html or smp (one input only). One input gives what `score`
    /// gives; several give the comparison (json: the `meshmark.comparison/v1` document).
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Write the output to this file instead of standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ProfileArgs {
    /// Length of the window, e.g. 10s, 500ms, 1m (default: the configuration's window, else
    /// 15s). Ctrl-C, SIGTERM or SIGHUP end it early, and the window is still written.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Rules, weights and options (see docs/configuration.md).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub limits: ConfigLimit,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub kernel: KernelArgs,
    #[command(flatten)]
    pub kubelet: KubeletArgs,
}

/// Sizes and hooks of the kernel side, shared by `profile` and `run`.
#[derive(clap::Args, Debug)]
pub struct KernelArgs {
    /// Slots of the kernel's per-thread table, 1 to 4194304 (the largest pid_max).
    #[arg(long, env = "MESHMARK_THREAD_SLOTS", value_name = "N",
          default_value_t = meshmark_common::DEFAULT_THREAD_SLOTS,
          value_parser = clap::value_parser!(u32).range(THREAD_SLOTS_RANGE))]
    pub thread_slots: u32,
    /// Bytes of the kernel's event ring buffer, 4096 (one page) to 1073741824 (1 GiB); rounded
    /// up to a power of two. Raise it if `dropped` shows event_ring_full or flush_ring_full.
    #[arg(long, env = "MESHMARK_RING_BYTES", value_name = "BYTES",
          default_value_t = meshmark_common::DEFAULT_EVENT_RING_BYTES,
          value_parser = clap::value_parser!(u32).range(RING_BYTES_RANGE))]
    pub ring_bytes: u32,
    /// Accepted TCP connections whose request turns are measured at once, 1 to 4194304 (about
    /// 64 bytes of kernel memory each). Raise it if `dropped` shows request_conns_full.
    #[arg(long, env = "MESHMARK_CONNECTIONS", value_name = "N",
          default_value_t = meshmark_common::DEFAULT_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(meshmark_common::MAX_CONNECTIONS)))]
    pub connections: u32,
    /// Time one syscall in N per thread instead of every one: two clock reads per timed
    /// syscall are most of meshmark's cost on syscall-heavy nodes. Counts stay exact; time
    /// inside syscalls is scaled from the timed ones (see docs/how-it-measures.md).
    #[arg(long, env = "MESHMARK_SYSCALL_SAMPLE", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(SYSCALL_SAMPLE_RANGE))]
    pub syscall_sample: u32,
    /// Collect SIGNAL with HOOK instead of the best hook the kernel has, e.g.
    /// `socket_bytes=fexit` (hooks per signal: docs/how-it-measures.md).
    #[arg(long, env = "MESHMARK_HOOK", value_name = "SIGNAL=HOOK")]
    pub hook: Option<crate::probe::hooks::HookOverride>,
    /// Hardware counters (cycles, instructions, last-level cache misses) for the `microarch`
    /// class: `auto` opens them where the node has a PMU, `off` never; `software` counts the
    /// cpu-clock event in their place, to test the path on a node without a PMU (its readings
    /// are nanoseconds, not cycles).
    #[arg(
        long,
        env = "MESHMARK_COUNTERS",
        value_name = "MODE",
        default_value = "auto"
    )]
    pub counters: crate::probe::counters::CounterMode,
}

impl KernelArgs {
    fn probe_options(&self) -> ProbeOptions {
        ProbeOptions {
            thread_slots: self.thread_slots,
            ring_bytes: self.ring_bytes,
            connections: self.connections,
            counters: self.counters,
            syscall_sample_every: self.syscall_sample,
            hook_override: self.hook,
        }
    }
}

/// `--duty-cycle`: a whole percentage of each window, 1 to 100, with or without `%`.
fn parse_duty_cycle(text: &str) -> Result<u8, String> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<u8>() {
        Ok(percent @ 1..=100) => Ok(percent),
        _ => Err(format!(
            "{text:?} is not a percentage from 1 to 100; write e.g. 10% (the default), or 100% \
             to observe every signal all the time"
        )),
    }
}

/// Runs the parsed command; errors are printed here, and the exit status says what kind.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Profile(args) => profile(args).await,
        Command::Attach(args) => attach(args).await,
        Command::Score(args) => score(args),
        Command::Report(args) => report_command(args),
        Command::Run(args) => run_continuously(args).await,
        Command::Config(ConfigCommand::Check { file, limits }) => {
            return config_check(&file, limits)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(err),
    }
}

fn report(err: anyhow::Error) -> ExitCode {
    if let Some(preflight) = err.downcast_ref::<PreflightError>() {
        eprintln!("meshmark-agent: preflight failed: {preflight}");
        return ExitCode::from(EXIT_PREFLIGHT);
    }
    if let Some(bad) = err.downcast_ref::<BadInput>() {
        eprintln!("meshmark-agent: {bad}");
        return ExitCode::from(EXIT_PREFLIGHT);
    }
    if let Some(held) = err.downcast_ref::<node_lock::Held>() {
        eprintln!("meshmark-agent: {held}");
        return ExitCode::from(EXIT_PREFLIGHT);
    }
    if let Some(closed) = err.downcast_ref::<OutputClosed>() {
        eprintln!("meshmark-agent: {closed}");
        return ExitCode::from(EXIT_OUTPUT_CLOSED);
    }
    eprintln!("meshmark-agent: error: {err:#}");
    ExitCode::FAILURE
}

async fn profile(args: ProfileArgs) -> Result<()> {
    // Read the configuration before loading anything: a typo should not cost a window.
    let config = load_config(args.config.as_deref(), args.limits)?;
    // Warnings only: a kubelet that cannot be read is said, the rest stays quiet.
    serve::init_logging(tracing::level_filters::LevelFilter::WARN);
    let pods = pod_metadata(&args.kubelet)?;
    let options = ProfilerOptions {
        probe: args.kernel.probe_options(),
        duty_cycled: false,
    };
    let mut profiler = Profiler::start(&options)?;
    let duration = args.duration.unwrap_or(config.window);
    // Handlers first: a signal sent as soon as the window is announced must end it, not kill it.
    let signals = EndSignals::install()?;
    eprintln!(
        "meshmark-agent: profiling for {} (Ctrl-C, SIGTERM or SIGHUP end the window early)",
        humantime::format_duration(duration)
    );
    signals.wait(duration).await;
    let snapshot = profiler.end_window()?;
    drop(profiler);
    let report = live_scorer(config, pods)(snapshot)?;
    write_output(&report, &args.output)
}

/// The pod metadata the kubelet options give (NODE_IP names the default kubelet); an option
/// that cannot work is a [`BadInput`].
fn pod_metadata(args: &KubeletArgs) -> Result<Option<PodMetadata>> {
    let node_ip = std::env::var("NODE_IP").ok();
    args.pod_metadata(node_ip.as_deref())
        .map_err(|why| BadInput(why).into())
}

/// How a window this agent measured is scored, by `profile` and `run` alike: processes in pods
/// are named from the kubelet's pod list where there is one, the agent is itself
/// (`builtin:self`) and command lines are read from /proc for `cmdline` rules.
fn live_scorer(
    config: Config,
    mut pods: Option<PodMetadata>,
) -> impl FnMut(Snapshot) -> Result<Report> + Send + 'static {
    let classifier = config.classifier(Some(std::process::id()));
    move |mut snapshot| {
        if let Some(pods) = pods.as_mut() {
            pods.annotate(&mut snapshot, std::time::Instant::now());
        }
        Ok(build_report(
            snapshot,
            &classifier,
            &config.model,
            &inventory::cmdline,
        )?)
    }
}

async fn run_continuously(args: RunArgs) -> Result<()> {
    // Everything the user can get wrong is checked before the programs load.
    let config = load_config(args.config.as_deref(), args.limits)?;
    let window = match (args.window, args.config.as_deref()) {
        (Some(window), _) => window,
        (None, Some(path)) if config.sets(config::TopKey::Window) => {
            check_run_window(config.window)
                .map_err(|why| BadInput(format!("{}: window: {why}", path.display())))?;
            config.window
        }
        _ => config::DEFAULT_WINDOW,
    };
    // Before anything is bound or loaded: a second agent says so and leaves the first alone.
    let _node_lock = node_lock::acquire(&args.lock_file)?;
    let listener = std::net::TcpListener::bind(args.listen).map_err(|e| {
        BadInput(format!(
            "cannot listen on {}: {e}; choose a free local address and port with --listen \
             (or MESHMARK_LISTEN)",
            args.listen
        ))
    })?;
    let health_listener = args
        .serving
        .health_listen
        .map(|address| {
            std::net::TcpListener::bind(address).map_err(|e| {
                BadInput(format!(
                    "cannot listen on {address}: {e}; choose a free address and port with \
                     --health-listen (or MESHMARK_HEALTH_LISTEN)"
                ))
            })
        })
        .transpose()?;
    let web = args.serving.web_config()?;
    serve::init_logging(args.log_level);
    let pods = pod_metadata(&args.kubelet)?;
    serve::run(serve::RunOptions {
        listener,
        health_listener,
        web,
        limits: serve::fit_to_open_files(args.serving.limits()),
        window,
        node_name: args.node_name,
        profiler: ProfilerOptions {
            probe: args.kernel.probe_options(),
            duty_cycled: args.duty_cycle < 100,
        },
        duty_cycle: f64::from(args.duty_cycle) / 100.0,
        bpf_stats: args.bpf_stats,
        score: Box::new(live_scorer(config, pods)),
    })
    .await
}

fn score(args: ScoreArgs) -> Result<()> {
    let config = load_config(args.config.as_deref(), args.limits)?;
    let report = score_profile(&args.input, &config, args.profile_limit)?;
    write_output(&report, &args.output)
}

/// Reads a saved profile and scores it again under `config`; a bad file is a [`BadInput`].
fn score_profile(path: &std::path::Path, config: &Config, limit: ProfileLimit) -> Result<Report> {
    let snapshot = read_profile(path, limit)?;
    // The agent that measured the profile is still the agent, not a workload.
    let recorded_self = snapshot
        .processes
        .iter()
        .find(|p| p.rule.as_deref() == Some(crate::classify::SELF_RULE))
        .map(|p| p.pid);
    let classifier = config.classifier(recorded_self);
    let no_cmdline = |_| None;
    Ok(build_report(
        snapshot,
        &classifier,
        &config.model,
        &no_cmdline,
    )?)
}

fn report_command(args: ReportArgs) -> Result<()> {
    if !args.label.is_empty() && args.label.len() != args.input.len() {
        return Err(BadInput(format!(
            "{} --label for {} --input; give one label per input, in the same order, or none",
            args.label.len(),
            args.input.len()
        ))
        .into());
    }
    if args.format == Format::Smp && args.input.len() > 1 {
        return Err(BadInput(
            "--format smp describes one profile; give one --input, or use json for a comparison"
                .into(),
        )
        .into());
    }
    let config = load_config(args.config.as_deref(), args.limits)?;
    let reports = args
        .input
        .iter()
        .map(|path| score_profile(path, &config, args.profile_limit))
        .collect::<Result<Vec<Report>>>()?;
    if let [one] = reports.as_slice() {
        // One profile: exactly what `score` writes, in every format.
        let output = OutputArgs {
            format: args.format,
            output: args.output,
        };
        return write_output(one, &output);
    }
    let labels: Vec<String> = if args.label.is_empty() {
        default_labels(&args.input)
    } else {
        args.label.clone()
    };
    let labeled: Vec<export::compare::Labeled> = labels
        .iter()
        .zip(&reports)
        .map(|(label, report)| export::compare::Labeled { label, report })
        .collect();
    let comparison = export::compare::Comparison::build(&labeled);
    let text = match args.format {
        Format::Table => export::compare_table::render(&comparison),
        Format::Html => export::html::render_comparison(&comparison),
        // smp with several inputs was refused above.
        Format::Json | Format::Smp => comparison.to_json()?,
    };
    write_text(text, args.output.as_deref())
}

/// `runs/with-mesh.json` -> `with-mesh`; the whole paths where two file names are the same.
fn default_labels(paths: &[PathBuf]) -> Vec<String> {
    let stems: Vec<String> = paths
        .iter()
        .map(|path| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string())
        })
        .collect();
    let unique = stems
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        == stems.len();
    if unique {
        stems
    } else {
        paths.iter().map(|p| p.display().to_string()).collect()
    }
}

fn config_check(file: &std::path::Path, limits: ConfigLimit) -> ExitCode {
    let (text, ok) = config::config_check_report(file, limits.max_config_bytes);
    if ok {
        match write_text(format!("{text}\n"), None) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => report(err),
        }
    } else {
        eprintln!("{}", export::terminal::escape_lines(&text));
        ExitCode::from(EXIT_PREFLIGHT)
    }
}

/// The configuration at `path`, or the defaults; a bad file is a [`BadInput`].
fn load_config(path: Option<&std::path::Path>, limits: ConfigLimit) -> Result<Config> {
    match path {
        None => Ok(Config::default()),
        Some(path) => {
            config::load_config(path, limits.max_config_bytes).map_err(|e: ConfigError| {
                let problems = export::terminal::escape_lines(&e.to_string());
                BadInput(format!("invalid configuration:\n{problems}")).into()
            })
        }
    }
}

/// A saved `meshmark.profile/v1` document, checked by [`saved_profile::parse_profile`]; read
/// as a stream, so that only the parsed profile is held, never its text as well.
fn read_profile(path: &std::path::Path, limit: ProfileLimit) -> Result<Snapshot> {
    let limit = bounded::Limit {
        bytes: limit.max_profile_bytes,
        flag: Some("--max-profile-bytes"),
    };
    let bad = |why: String| anyhow::Error::from(BadInput(why));
    let reader = bounded::open(path, limit).map_err(|e| match e {
        bounded::ReadError::Io { error, .. } => {
            bad(format!("cannot read profile {}: {error}", path.display()))
        }
        too_large => bad(format!("profile: {too_large}")),
    })?;
    saved_profile::read_profile(reader).map_err(|e| match e {
        saved_profile::ReadError::TooLarge => bad(format!(
            "profile: {}",
            bounded::ReadError::TooLarge {
                path: path.to_owned(),
                limit
            }
        )),
        saved_profile::ReadError::Refused { position, error } => match position {
            Some((line, column)) => bad(format!("{}:{line}:{column}: {error}", path.display())),
            None => bad(format!("{}: {error}", path.display())),
        },
    })
}

async fn attach(args: AttachArgs) -> Result<()> {
    // Statistics stay on while this file descriptor is open.
    let _stats = args
        .stats
        .then(|| aya::sys::enable_stats(aya::sys::Stats::RunTime))
        .transpose()
        .context("enabling BPF statistics")?;
    let options = ProbeOptions {
        syscall_sample_every: args.syscall_sample,
        counters: args.counters,
        ..ProbeOptions::default()
    };
    let probe = Probe::load(&options, args.programs)?;
    let signals = EndSignals::install()?;
    // Say when the programs are attached, so a benchmark knows when to start.
    eprintln!("meshmark-agent: attached");
    signals.wait(args.duration).await;
    if args.stats {
        println!("{}", serde_json::to_string(&probe.program_stats()?)?);
    }
    Ok(())
}

/// SIGINT, SIGTERM and SIGHUP (a closed terminal or ssh session), caught from the moment they
/// are installed, so that any of them ends a window early and the window is still written.
struct EndSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl EndSignals {
    fn install() -> Result<EndSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(EndSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Sleeps for `duration` or until one of the signals, whichever comes first.
    async fn wait(mut self, duration: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = self.interrupt.recv() => eprintln!("meshmark-agent: interrupted, ending early"),
            _ = self.terminate.recv() => eprintln!("meshmark-agent: terminated, ending early"),
            _ = self.hangup.recv() => eprintln!("meshmark-agent: hung up, ending early"),
        }
    }
}

fn write_output(report: &Report, output: &OutputArgs) -> Result<()> {
    let text = match output.format {
        Format::Table => export::table::render(report),
        Format::Json => export::json::to_json(report)?,
        Format::Smp => export::smp::to_smp_json(report)?,
        Format::Html => export::html::render_profile(report),
    };
    write_text(text, output.output.as_deref())
}

/// Exit status when standard output was closed before everything was written (`profile |
/// head -1`): the reader left, which is not an error of the agent's, but the output is short.
pub const EXIT_OUTPUT_CLOSED: u8 = 3;

/// Standard output closed by its reader.
#[derive(Debug)]
struct OutputClosed;

impl std::fmt::Display for OutputClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed before the output was complete (broken pipe)")
    }
}

impl std::error::Error for OutputClosed {}

/// Writes `text` to `path` or standard output. A full disk or any other write error is an
/// error naming the destination (exit 1); a reader that closed the pipe is [`OutputClosed`].
fn write_text(text: String, path: Option<&std::path::Path>) -> Result<()> {
    use std::io::Write as _;
    match path {
        Some(path) => {
            let written = std::fs::File::create(path).and_then(|mut file| {
                file.write_all(text.as_bytes())?;
                // A full disk may show only when the data reaches it.
                file.sync_all()
            });
            written.with_context(|| format!("writing {}", path.display()))
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(OutputClosed.into()),
                Err(e) => Err(anyhow::Error::from(e).context("writing to standard output")),
            }
        }
    }
}
