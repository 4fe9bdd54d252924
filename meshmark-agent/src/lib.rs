//! meshmark's userspace agent.
//!
//! Data flows one way: `probe` (preflight, load, attach) -> `collect` (drain the kernel maps into
//! a [`snapshot::Snapshot`] per window) -> `inventory` (/proc and cgroup identity) -> `classify`
//! (rules -> role) -> `model` (MUE, MeshMark; pure) -> `export` (table, JSON). `probe` and
//! `collect` hold the kernel programs and maps through aya; everything after them works on plain
//! data. `serve` runs the whole flow continuously for `meshmark-agent run` and serves it over
//! HTTP; it and `cli` call aya only to switch the kernel's BPF run statistics on.

pub mod bounded;
pub mod collect;
pub mod probe;
pub mod role;
pub mod snapshot;

pub mod classify;
pub mod cli;
pub mod config;
pub mod duration;
pub mod export;
pub mod inventory;
pub mod model;
pub mod node_lock;
pub mod report;
pub mod saved_profile;
pub mod serve;

pub use collect::{Profiler, ProfilerOptions};
