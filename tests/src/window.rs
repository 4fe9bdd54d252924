//! One profiled window at a time.
//!
//! The profiler attaches node-wide programs and drains shared maps, so two tests of one binary
//! profiling at once would see each other's load and fight over the maps. A process-wide lock
//! serialises them; it survives a panicking test (poisoning is ignored) so one failure does not
//! cascade into the rest.

use std::sync::{Mutex, MutexGuard};

use meshmark_agent::snapshot::Snapshot;
use meshmark_agent::{Profiler, ProfilerOptions};

use crate::gate;

static BPF_LOCK: Mutex<()> = Mutex::new(());

/// A running profiler whose first window started at [`ProfiledWindow::start`].
pub struct ProfiledWindow {
    profiler: Profiler,
    _lock: MutexGuard<'static, ()>,
}

impl ProfiledWindow {
    /// Takes the lock and starts the profiler; `None` (after a loud skip) where BPF cannot run.
    pub fn start() -> Option<Self> {
        Self::start_with(&ProfilerOptions::default())
    }

    /// [`ProfiledWindow::start`] with other map sizes or options.
    pub fn start_with(options: &ProfilerOptions) -> Option<Self> {
        if !gate::require_bpf() {
            return None;
        }
        let lock = Self::lock();
        let profiler =
            Profiler::start(options).unwrap_or_else(|err| panic!("starting the profiler: {err:#}"));
        Some(Self {
            profiler,
            _lock: lock,
        })
    }

    /// The lock alone, for tests that profile through the agent binary instead.
    pub fn lock() -> MutexGuard<'static, ()> {
        BPF_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Ends the current window and starts the next at once, as the daemon does.
    pub fn cut(&mut self) -> Snapshot {
        self.profiler
            .end_window()
            .unwrap_or_else(|err| panic!("ending a window: {err:#}"))
    }

    /// The profiler itself, to drive its duty cycle by hand.
    pub fn profiler(&mut self) -> &mut Profiler {
        &mut self.profiler
    }

    /// Ends the window, detaches the programs and releases the lock.
    pub fn end(mut self) -> Snapshot {
        self.profiler
            .end_window()
            .unwrap_or_else(|err| panic!("ending the window: {err:#}"))
    }
}
