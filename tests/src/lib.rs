//! End-to-end tests of meshmark against ground truth the tests make themselves.
//!
//! The integration tests in `tests/` load the real kernel programs through
//! `meshmark_agent::probe`, run `mm-workload` (this crate's binary) as a child, and compare what
//! the profiler attributed to the child with what the child measured of itself or what the
//! kernel's own accounting says. This library holds what those tests and the workload share:
//!
//! - [`gate`]: skip loudly, or fail under `MESHMARK_REQUIRE_BPF=1`, when BPF cannot run here;
//! - [`window`]: one profiled window at a time per test binary;
//! - [`child`]: spawning a workload and reading its ground truth;
//! - [`truth`]: the ground-truth records the workload prints;
//! - [`scenario`]: the workload scenarios themselves; [`lab`] wires the mesh scenario's
//!   processes together from a test;
//! - [`http`]: a minimal loopback HTTP client for the endpoints of `run` and Prometheus;
//!   [`exposition`] reads `/metrics` back into samples; [`daemon`] runs the agent's `run` (or
//!   Prometheus) as a child with its output in a log, and scratch directories; [`prometheus`]
//!   starts a real Prometheus and queries it;
//! - [`kubelet`]: a kubelet serving a recorded pod list over real TLS on loopback;
//! - [`pidspace`]: `kernel.pid_max` raised for a test, and processes placed at chosen ids;
//! - [`lookup`], [`check`], [`procfs`], [`netns`], [`cgroup`]: finding a process in a snapshot,
//!   comparing numbers with their error printed, reading the kernel's counters, a throw-away
//!   pair of network namespaces, and a throw-away Kubernetes-style pod of cgroups.

pub mod cgroup;
pub mod check;
pub mod child;
pub mod daemon;
pub mod exposition;
pub mod gate;
pub mod http;
pub mod kubelet;
pub mod lab;
pub mod lookup;
pub mod meshlab;
pub mod netns;
pub mod pidspace;
pub mod procfs;
pub mod prometheus;
pub mod scenario;
pub mod truth;
pub mod window;
