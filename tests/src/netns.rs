//! Two throw-away network namespaces joined by a veth pair, for traffic that is not loopback.
//!
//! Addresses come from 198.18.0.0/15 (reserved for benchmarking), so the test's packets can never
//! reach a real network. Names carry the test process id and a counter, so parallel runs and
//! parallel tests do not collide; `Drop` deletes both namespaces (and with them the veth pair)
//! even when the test panics.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Address of the first namespace's end of the veth pair.
pub const ADDR_A: &str = "198.18.0.1";
/// Address of the second namespace's end.
pub const ADDR_B: &str = "198.18.0.2";

/// Namespaces `a` (holding [`ADDR_A`]) and `b` (holding [`ADDR_B`]); usable with `ip netns
/// exec` or `setns` on `/run/netns/<name>`.
pub struct NetnsPair {
    pub a: String,
    pub b: String,
}

impl NetnsPair {
    /// Creates both namespaces, the veth pair and its addresses, and brings the links up.
    pub fn create() -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        // Interface names must fit in 15 bytes: "mm" + pid (<= 7 digits) + counter + 1.
        let tag = format!(
            "mm{}{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let pair = Self {
            a: format!("{tag}a"),
            b: format!("{tag}b"),
        };
        // From here on `pair` is dropped on any panic, which removes what was created so far.
        let (veth_a, veth_b) = (format!("{tag}x"), format!("{tag}y"));
        ip(&["netns", "add", &pair.a]);
        ip(&["netns", "add", &pair.b]);
        ip(&[
            "link", "add", &veth_a, "netns", &pair.a, "type", "veth", "peer", "name", &veth_b,
            "netns", &pair.b,
        ]);
        for (ns, dev, addr) in [(&pair.a, &veth_a, ADDR_A), (&pair.b, &veth_b, ADDR_B)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            // A namespace that was never created fails to delete; nothing else to do then.
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .unwrap_or_else(|err| panic!("running `ip` (iproute2): {err}"));
    assert!(status.success(), "`ip {}` failed: {status}", args.join(" "));
}
