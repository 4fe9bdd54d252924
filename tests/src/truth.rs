//! Ground-truth records: what each `mm-workload` scenario measured of itself, printed as one
//! JSON line on stdout. The workload writes and the tests read these same types, so the two
//! cannot drift apart.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `burn`: CPU time the burner measured with its own clocks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Burn {
    pub pid: u32,
    /// `CLOCK_THREAD_CPUTIME_ID` of each burner thread when it stopped burning.
    pub thread_cpu_ns: Vec<u64>,
    /// `CLOCK_PROCESS_CPUTIME_ID` after every burner finished (all threads, main included).
    pub process_cpu_ns: u64,
}

/// `churn`: how many children came and went, and the CPU the kernel accounted for them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Churn {
    /// The parent; every child has its name.
    pub pid: u32,
    pub processes: u64,
    /// `RUSAGE_CHILDREN` user + system time of all reaped children.
    pub children_cpu_ns: u64,
}

/// `threads`: the id of every worker thread and the bytes they sent together.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Threads {
    pub pid: u32,
    /// Worker thread ids; empty when the main thread sent by itself.
    pub tids: Vec<u32>,
    pub tx_bytes: u64,
    /// `CLOCK_PROCESS_CPUTIME_ID` once every worker had sent and blocked.
    pub process_cpu_ns: u64,
}

/// Bytes one process moved through its socket, summed from syscall return values.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Endpoint {
    pub pid: u32,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    /// Bytes returned by reads with `MSG_PEEK`; also read again normally and counted once in
    /// `rx_bytes`, so a profiler that counts peeks overshoots by exactly this much.
    pub peeked_bytes: u64,
}

/// `stream` and `udp`: both ends of one exchange, each a separate process.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Exchange {
    /// The end that listens (stream) or receives first (udp); it peeks once.
    pub server: Endpoint,
    /// The end that connects and sends first.
    pub client: Endpoint,
}

/// `sleep`: how long each `nanosleep` took, measured on `CLOCK_MONOTONIC` around the call.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sleep {
    pub pid: u32,
    pub requested_ns: u64,
    pub durations_ns: Vec<u64>,
}

/// `http`: the responses its client read whole (each one request the server served), and the
/// time the server took for each.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct HttpRequests {
    pub pid: u32,
    pub requests: u64,
    pub sleep_ns: u64,
    /// The relay in front of the server (`--relay-delay-ms`), and the time it waited per
    /// request.
    #[serde(default)]
    pub relay_pid: Option<u32>,
    #[serde(default)]
    pub relay_delay_ns: Option<u64>,
}

/// `mesh-relay`, `mesh-upstream`: where a listening part of the mesh scenario accepts its
/// connection; printed before it serves, so the test can wire the next part to it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Listening {
    pub pid: u32,
    pub addr: SocketAddr,
}

/// `mesh-app`, `mesh-relay`, `mesh-upstream`: what one part of the mesh scenario measured of
/// itself once its work was done.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct MeshPart {
    pub pid: u32,
    /// `CLOCK_PROCESS_CPUTIME_ID` after the last byte moved: all the CPU the process used.
    pub process_cpu_ns: u64,
    /// Bytes over all its sockets, summed from syscall return values.
    pub tx_bytes: u64,
    pub rx_bytes: u64,
}

/// `disk`: the process's own task I/O accounting (`/proc/self/io`) after its work, every
/// worker thread joined: the kernel's figures the profiler must match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskIo {
    pub pid: u32,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub cancelled_write_bytes: u64,
}
