//! `meshmark-agent run`: the programs load once, a window is scored every `window`, and the
//! latest window is served over HTTP until SIGTERM or SIGINT.
//!
//! Three parts, one job each: [`windows`] (the thread that owns the profiler and cuts
//! windows), [`http`] (the endpoints, reading only what the loop published) and [`shutdown`]
//! (the signals). They meet in [`Shared`]: the latest report with the running totals, replaced
//! whole at each window, so nothing here grows with time.

pub mod guard;
pub mod http;
pub mod shutdown;
pub mod web_config;
pub mod windows;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use tracing::{info, level_filters::LevelFilter, warn};

use crate::collect::ProfilerOptions;
use crate::export::totals::Totals;
use crate::probe::ProgramStats;
use crate::report::Report;
use crate::snapshot::Snapshot;

/// Share of each window during which `run` observes the duty-cycled signals (syscalls and
/// socket bytes) unless told otherwise: the share at which the mesh lab's throughput cost fell
/// under 2% (docs/benchmarks.md).
pub const DEFAULT_DUTY_CYCLE: &str = "10%";
/// Shortest time the duty-cycled signals are observed in a window: less would leave too few
/// events to scale from.
const MIN_OBSERVED: Duration = Duration::from_millis(10);

/// Shortest window `run` accepts: scoring a window takes a few milliseconds per hundred
/// processes, and shorter windows would spend the node's CPU on that.
pub const MIN_WINDOW: Duration = Duration::from_millis(100);
/// Connections `run` serves at once unless told otherwise: Prometheus (a pair, for high
/// availability), the kubelet's probes and a few people need a handful; each may hold up to
/// `--max-header-bytes` plus TLS buffers, so 256 bound the server's memory to some tens of MiB.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 256;
/// File descriptors kept free of connections for the agent's own work: the BPF programs, maps
/// and links (the duty cycle attaches some again every window), /proc reads and the log.
const RESERVED_FDS: u64 = 256;

/// `limits` with the connection cap lowered to what the open-file limit (RLIMIT_NOFILE) leaves
/// after [`RESERVED_FDS`], so that idle connections can never take the descriptors the window
/// loop needs.
pub fn fit_to_open_files(limits: guard::Limits) -> guard::Limits {
    let mut rlimit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlimit) } != 0 {
        return limits;
    }
    let room = rlimit.rlim_cur.saturating_sub(RESERVED_FDS).max(1);
    let max = usize::try_from(room).unwrap_or(usize::MAX);
    if max < limits.max_connections {
        warn!(
            max_connections = max,
            asked = limits.max_connections,
            open_files = rlimit.rlim_cur,
            "the open-file limit leaves room for fewer connections than --max-connections"
        );
        return guard::Limits {
            max_connections: max,
            ..limits
        };
    }
    limits
}

/// How long the HTTP server may take to finish the requests in flight after a signal.
const DRAIN_LIMIT: Duration = Duration::from_millis(500);
/// How long the window loop may take to stop and detach the programs after a signal.
const DETACH_LIMIT: Duration = Duration::from_millis(1_200);

/// Turns a measured window into a scored report (pod names, classification and model); it may
/// keep state between windows (the kubelet's pod list).
pub type Scorer = Box<dyn FnMut(Snapshot) -> Result<Report> + Send>;

/// What `run` needs, already validated.
pub struct RunOptions {
    /// Bound before the programs load, so a taken port costs nothing.
    pub listener: std::net::TcpListener,
    /// A second, plain-HTTP listener that serves only /healthz and /readyz, for the kubelet's
    /// probes when the main one requires client certificates.
    pub health_listener: Option<std::net::TcpListener>,
    /// TLS and authentication of the main listener (`--web-config`).
    pub web: Option<Arc<web_config::WebConfigSource>>,
    pub limits: guard::Limits,
    pub window: Duration,
    /// The node's name for labels and the JSON, instead of the host name.
    pub node_name: Option<String>,
    pub profiler: ProfilerOptions,
    /// Share of each window, in (0, 1], during which the duty-cycled signals are observed; 1
    /// observes them all the time.
    pub duty_cycle: f64,
    /// Keep BPF run statistics on for the per-program metrics.
    pub bpf_stats: bool,
    pub score: Scorer,
}

/// What the window loop last published.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// The latest scored window; `None` until the first.
    pub report: Option<Arc<Report>>,
    pub totals: Totals,
    /// Run statistics of the programs at the end of that window.
    pub programs: Vec<ProgramStats>,
}

/// The meeting point of the window loop and the HTTP handlers.
#[derive(Debug)]
pub struct Shared {
    /// The node label before the first window names it.
    pub node: String,
    latest: Mutex<Arc<Published>>,
    /// The HTTP server's counters.
    pub http: Arc<guard::HttpStats>,
}

impl Shared {
    pub fn new(node: String) -> Shared {
        Shared {
            node,
            latest: Mutex::new(Arc::new(Published::default())),
            http: Arc::default(),
        }
    }

    pub fn latest(&self) -> Arc<Published> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn publish(&self, published: Published) {
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(published);
    }

    /// Keeps the latest report but counts a lost window.
    fn count_error(&self, totals: &Totals) {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = Published::clone(&latest);
        next.totals = totals.clone();
        *latest = Arc::new(next);
    }
}

/// Structured logs to stderr at `level`.
pub fn init_logging(level: LevelFilter) {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(level)
        .with_target(false)
        .try_init();
}

/// Runs until SIGTERM or SIGINT; then stops serving, detaches and returns.
pub async fn run(options: RunOptions) -> Result<()> {
    let mut signals = shutdown::Signals::install()?;
    let address = options.listener.local_addr()?;
    let listener = runtime_listener(options.listener)?;
    let health = options
        .health_listener
        .map(|l| Ok::<_, anyhow::Error>((l.local_addr()?, runtime_listener(l)?)))
        .transpose()?;

    // Run statistics stay on while this file descriptor is open (the kernel counts the time of
    // every program run only then: two clock reads per run).
    // Without CAP_SYS_ADMIN enabling fails, but the kernel still counts while the node's
    // kernel.bpf_stats_enabled sysctl is 1: the statistics are read either way.
    let _stats = options
        .bpf_stats
        .then(|| {
            aya::sys::enable_stats(aya::sys::Stats::RunTime)
                .inspect_err(|err| {
                    warn!(error = %err, "cannot enable BPF run statistics (CAP_SYS_ADMIN); meshmark_bpf_program_* count only while kernel.bpf_stats_enabled is 1")
                })
                .ok()
        })
        .flatten();

    let shared = Arc::new(Shared::new(
        options
            .node_name
            .clone()
            .unwrap_or_else(crate::collect::hostname),
    ));
    let score = named(options.score, options.node_name);
    let observe = observed_part(options.window, options.duty_cycle);
    info!(
        version = env!("CARGO_PKG_VERSION"),
        window_ms = millis(options.window),
        sampled_ms = observe.map(millis),
        bpf_stats = options.bpf_stats,
        "loading the kernel programs"
    );
    let windows = tokio::task::block_in_place(|| {
        windows::WindowLoop::start(
            crate::collect::ProfilerOptions {
                duty_cycled: observe.is_some(),
                ..options.profiler
            },
            windows::Schedule {
                window: options.window,
                observe,
                program_stats: options.bpf_stats,
            },
            score,
            shared.clone(),
        )
    })?;
    give_back_load_memory();
    info!(
        %address,
        tls = options.web.as_ref().is_some_and(|w| w.current().is_ok_and(|c| c.tls.is_some())),
        basic_auth = options.web.as_ref().is_some_and(|w| w.current().is_ok_and(|c| !c.users.is_empty())),
        max_connections = options.limits.max_connections,
        "attached; serving /metrics, /api/v1/node, /healthz, /readyz"
    );

    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let endpoint = guard::Endpoint {
        router: http::router(shared.clone()),
        limits: options.limits,
        web: options.web,
        stats: shared.http.clone(),
    };
    if let Some((health_address, health)) = health {
        info!(address = %health_address, "serving /healthz and /readyz in plain HTTP");
        let endpoint = guard::Endpoint {
            router: http::health_router(shared.clone()),
            limits: guard::Limits {
                max_connections: HEALTH_CONNECTIONS,
                ..options.limits
            },
            web: None,
            stats: shared.http.clone(),
        };
        tokio::spawn(guard::serve(health, endpoint, drain_rx.clone()));
    }
    let mut server = tokio::spawn(guard::serve(listener, endpoint, drain_rx));
    let signal = tokio::select! {
        signal = signals.received() => signal,
        ended = &mut server => {
            // The server only ends by itself on a fatal error.
            windows.stop(DETACH_LIMIT);
            return Err(match ended {
                Ok(()) => anyhow::anyhow!("the HTTP server stopped"),
                Err(err) => anyhow::Error::from(err).context("the HTTP server task"),
            });
        }
    };
    info!(signal, "stopping: no more scrapes, then detaching");
    // Graceful: no new connections; a request in flight is answered, then its connection
    // closes, and idle keep-alive connections close at once.
    let _ = drain_tx.send(true);
    if tokio::time::timeout(DRAIN_LIMIT, &mut server)
        .await
        .is_err()
    {
        warn!("requests still in flight after the drain limit; dropping them");
        server.abort();
    }
    let detached = tokio::task::block_in_place(|| windows.stop(DETACH_LIMIT));
    if detached {
        info!("stopped");
    } else {
        warn!("the window loop did not stop in time; exiting, which detaches the programs");
    }
    Ok(())
}

/// Connections the plain health listener takes at once: the kubelet's probes need one or two.
const HEALTH_CONNECTIONS: usize = 16;

fn runtime_listener(listener: std::net::TcpListener) -> Result<tokio::net::TcpListener> {
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
        .context("handing the listening socket to the runtime")
}

/// Loading parses the kernel's BTF (megabytes of type information) and frees it; glibc keeps
/// freed memory in its arenas unless asked, and a process that runs for days should not hold
/// its start-up peak. (musl, which the shipped binary uses, returns it by itself.)
fn give_back_load_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How long the duty-cycled signals are observed in each window: `None` for all of it.
fn observed_part(window: Duration, duty_cycle: f64) -> Option<Duration> {
    if duty_cycle >= 1.0 {
        return None;
    }
    Some(
        window
            .mul_f64(duty_cycle.max(0.0))
            .clamp(MIN_OBSERVED, window),
    )
}

/// `score`, with the report's node renamed to `name` when one is given.
fn named(mut score: Scorer, name: Option<String>) -> Scorer {
    match name {
        None => score,
        Some(name) => Box::new(move |snapshot| {
            let mut report = score(snapshot)?;
            report.snapshot.node.clone_from(&name);
            Ok(report)
        }),
    }
}

/// Whole milliseconds, for log fields.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
