//! The window loop: one thread owns the [`Profiler`], ends a window every `window`, scores it
//! and publishes the report with the running totals. Dropping the profiler at the end detaches
//! the programs.
//!
//! Windows are cut on a fixed schedule (start + n * window), so scoring time does not make them
//! drift; a loop that falls behind (a suspended node) starts a fresh schedule instead of
//! cutting a burst of short windows.
//!
//! With a duty cycle, the duty-cycled signals are attached for `observe` at a random moment of
//! each window, so that a load that comes and goes on a period of its own is not always seen at
//! the same phase; the profiler scales what they saw to the window.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tracing::{debug, error, info, warn};

use super::{Published, Scorer, Shared};
use crate::collect::{Profiler, ProfilerOptions};
use crate::export::totals::Totals;
use crate::report::Report;

/// When windows are cut, when the duty-cycled signals are observed, and what else is read.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub window: Duration,
    /// How long the duty-cycled signals are attached in each window; `None`: all the time.
    pub observe: Option<Duration>,
    /// Read the programs' run statistics after each window (only meaningful with them on).
    pub program_stats: bool,
}

/// The running loop: [`WindowLoop::stop`] ends it.
pub struct WindowLoop {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl WindowLoop {
    /// Starts the profiler on a new thread and returns once its programs are attached, or with
    /// the reason they could not be.
    pub fn start(
        options: ProfilerOptions,
        schedule: Schedule,
        score: Scorer,
        shared: Arc<Shared>,
    ) -> Result<WindowLoop> {
        let (stop, stopped) = mpsc::channel();
        let (started_tx, started) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("meshmark-windows".into())
            .spawn(move || {
                let profiler = match Profiler::start(&options) {
                    Ok(profiler) => {
                        let _ = started_tx.send(Ok(()));
                        profiler
                    }
                    Err(err) => {
                        let _ = started_tx.send(Err(err));
                        return;
                    }
                };
                run(profiler, schedule, score, &shared, &stopped);
            })
            .context("starting the window thread")?;
        match started.recv() {
            Ok(Ok(())) => Ok(WindowLoop { stop, thread }),
            Ok(Err(err)) => {
                let _ = thread.join();
                Err(err)
            }
            Err(_) => {
                let _ = thread.join();
                anyhow::bail!("the window thread ended while loading the programs")
            }
        }
    }

    /// Ends the loop (a window in progress is abandoned, not scored) and detaches the
    /// programs. Waits at most `limit` for that; returns whether it finished in time.
    pub fn stop(self, limit: Duration) -> bool {
        drop(self.stop);
        let deadline = Instant::now() + limit;
        while !self.thread.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.thread.join();
        true
    }
}

fn run(
    mut profiler: Profiler,
    schedule: Schedule,
    mut score: Scorer,
    shared: &Shared,
    stopped: &mpsc::Receiver<()>,
) {
    let window = schedule.window;
    let mut totals = Totals::default();
    let mut next = Instant::now() + window;
    // Anything but a timeout (the sender dropped, or a message) means the agent is stopping.
    let running = |until: Instant| {
        matches!(
            stopped.recv_timeout(until.saturating_duration_since(Instant::now())),
            Err(RecvTimeoutError::Timeout)
        )
    };
    loop {
        if let Some(observe) = schedule.observe {
            let start = next.checked_sub(window).unwrap_or(next);
            let slack = window.saturating_sub(observe);
            let from = start + slack.mul_f64(fastrand::f64());
            if !running(from) {
                break;
            }
            if let Err(err) = profiler.resume_sampled() {
                error!(error = %format!("{err:#}"), "cannot attach the duty-cycled programs");
            }
            let until = from + observe;
            let still = running(until);
            profiler.pause_sampled();
            if !still {
                break;
            }
        }
        if !running(next) {
            break;
        }
        let began = Instant::now();
        match profiler.end_window().and_then(&mut score) {
            Ok(report) => {
                totals.fold(&report);
                let programs = if schedule.program_stats {
                    profiler.program_stats().unwrap_or_else(|err| {
                        warn!(error = %format!("{err:#}"), "cannot read BPF program statistics");
                        Vec::new()
                    })
                } else {
                    Vec::new()
                };
                log_window(&report, totals.windows, began.elapsed());
                shared.publish(Published {
                    report: Some(Arc::new(report)),
                    totals: totals.clone(),
                    programs,
                });
            }
            Err(err) => {
                totals.fold_error();
                shared.count_error(&totals);
                error!(error = %format!("{err:#}"), "window lost");
            }
        }
        next += window;
        let now = Instant::now();
        if next <= now {
            warn!(
                behind_ms = super::millis(now.duration_since(next)),
                "the window loop fell behind; starting a fresh schedule"
            );
            next = now + window;
        }
    }
    drop(profiler);
    info!("programs detached");
}

/// One line per window: at info for the first (the agent is ready from then on), at debug after.
fn log_window(report: &Report, windows: u64, took: Duration) {
    if !report.snapshot.dropped.is_empty() {
        warn!(dropped = ?report.snapshot.dropped, "the kernel side lost data in this window");
    }
    let (score, processes, pods) = (
        report.meshmark.score,
        report.snapshot.processes.len(),
        report.pods.len(),
    );
    let took_ms = super::millis(took);
    if windows == 1 {
        info!(
            score,
            processes, pods, took_ms, "first window scored; ready"
        );
    } else {
        debug!(score, processes, pods, took_ms, "window scored");
    }
}
