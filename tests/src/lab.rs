//! The mesh scenario from a test's side: starts upstream, relay and app wired to each other
//! (see [`crate::scenario::mesh`]) and collects what each measured of itself.

use std::path::Path;

use crate::child::Workload;
use crate::scenario::mesh::Traffic;
use crate::truth::{Listening, MeshPart};

/// The three running processes. App and relay wait for [`MeshLab::go`]; the upstream serves at
/// once, as nothing moves it.
pub struct MeshLab {
    pub app: Workload,
    pub relay: Workload,
    pub upstream: Workload,
}

/// What each part measured once its work was done.
#[derive(Clone, Copy, Debug)]
pub struct MeshTruth {
    pub app: MeshPart,
    pub relay: MeshPart,
    pub upstream: MeshPart,
}

impl MeshLab {
    /// Starts the parts from `bin` (the `mm-workload` binary), each connected to the address the
    /// next one printed; the app burns `app_cpu_ms` of CPU in all.
    pub fn spawn(bin: &Path, traffic: &Traffic, app_cpu_ms: u64) -> Self {
        let mut upstream = Workload::spawn_line(bin, &format!("mesh-upstream {}", traffic.args()));
        let upstream_at: Listening = upstream.truth();
        let mut relay =
            Workload::spawn_line(bin, &format!("mesh-relay --upstream {}", upstream_at.addr));
        let relay_at: Listening = relay.truth();
        let app = Workload::spawn_line(
            bin,
            &format!(
                "mesh-app --relay {} --cpu-ms {app_cpu_ms} {}",
                relay_at.addr,
                traffic.args()
            ),
        );
        Self {
            app,
            relay,
            upstream,
        }
    }

    /// Lets app and relay start.
    pub fn go(&mut self) {
        self.relay.go();
        self.app.go();
    }

    /// Waits for every part's report; app and relay then idle until [`MeshLab::finish`].
    pub fn truth(&mut self) -> MeshTruth {
        MeshTruth {
            app: self.app.truth(),
            relay: self.relay.truth(),
            upstream: self.upstream.truth(),
        }
    }

    /// Ends app and relay and reaps all three, asserting each succeeded.
    pub fn finish(self) {
        for part in [self.app, self.relay, self.upstream] {
            part.finish();
        }
    }
}
