//! The role a process plays on the node; every process gets exactly one.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Role of a process in the MeshMark model (docs/formula.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Mesh data plane: sidecar or per-node proxy.
    Proxy,
    /// Application workload.
    App,
    /// Mesh control plane.
    Control,
    /// Everything else on the node, the agent included.
    Node,
    /// The idle task (pid 0).
    Idle,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Proxy,
        Role::App,
        Role::Control,
        Role::Node,
        Role::Idle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Proxy => "proxy",
            Role::App => "app",
            Role::Control => "control",
            Role::Node => "node",
            Role::Idle => "idle",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role {s:?}; expected one of proxy, app, control, node, idle")
            })
    }
}
