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
        if !gate::require_bpf() {
            return None;
        }
        let lock = BPF_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let profiler = Profiler::start(&ProfilerOptions::default())
            .unwrap_or_else(|err| panic!("starting the profiler: {err:#}"));
        Some(Self {
            profiler,
            _lock: lock,
        })
    }

    /// Ends the window, detaches the programs and releases the lock.
    pub fn end(mut self) -> Snapshot {
        self.profiler
            .end_window()
            .unwrap_or_else(|err| panic!("ending the window: {err:#}"))
    }
}
