//! The lab's network: a node namespace holding a bridge, one namespace per pod and one for the
//! client, each joined to the bridge by a veth pair. Addresses come from 198.19.0.0/24 (reserved
//! for benchmarking), in namespaces the lab made, so no packet can reach a real network. `Drop`
//! deletes every namespace, and with them the bridge and the veth pairs.

use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};

/// The client's address.
pub const CLIENT_ADDR: &str = "198.19.0.2";

/// Pod `index`'s address.
pub fn pod_addr(index: usize) -> String {
    format!("198.19.0.{}", 10 + index)
}

/// The namespaces of one lab.
pub struct LabNet {
    pub client: String,
    pub pods: Vec<String>,
    /// Every namespace made so far, node first; what `Drop` deletes.
    made: Vec<String>,
}

impl LabNet {
    /// Creates the node bridge and `pods` pod namespaces plus the client's.
    pub fn create(pods: usize) -> Result<LabNet> {
        ensure!(
            (1..=200).contains(&pods),
            "the lab runs 1 to 200 pods, not {pods}"
        );
        // Interface names must fit in 15 bytes: "mml" + pid (<= 7 digits) + role + index.
        let tag = format!("mml{}", std::process::id());
        let mut net = LabNet {
            client: format!("{tag}c"),
            pods: (0..pods).map(|i| format!("{tag}p{i}")).collect(),
            made: Vec::new(),
        };
        let node = format!("{tag}n");
        net.add_netns(&node)?;
        ip(&["-n", &node, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &node, "link", "set", "br0", "up"])?;
        let mut hosts = vec![(
            net.client.clone(),
            CLIENT_ADDR.to_string(),
            format!("{tag}vc"),
        )];
        for (i, pod) in net.pods.iter().enumerate() {
            hosts.push((pod.clone(), pod_addr(i), format!("{tag}v{i}")));
        }
        for (ns, addr, veth) in hosts {
            net.add_netns(&ns)?;
            let peer = format!("{veth}b");
            ip(&[
                "link", "add", &veth, "netns", &ns, "type", "veth", "peer", "name", &peer, "netns",
                &node,
            ])?;
            ip(&["-n", &node, "link", "set", &peer, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &veth,
            ])?;
            ip(&["-n", &ns, "link", "set", &veth, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn add_netns(&mut self, name: &str) -> Result<()> {
        ip(&["netns", "add", name])?;
        self.made.push(name.to_string());
        Ok(())
    }
}

impl Drop for LabNet {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            let deleted = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
            if !deleted.is_ok_and(|s| s.success()) {
                eprintln!("lab: could not delete network namespace {ns}: `ip netns del {ns}`");
            }
        }
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let status = Command::new("ip")
        .args(args)
        .status()
        .context("running `ip` (iproute2)")?;
    ensure!(status.success(), "`ip {}` failed: {status}", args.join(" "));
    Ok(())
}
