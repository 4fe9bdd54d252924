//! Workloads with known ground truth for meshmark's end-to-end tests. Each subcommand does a
//! measured amount of work and prints what it measured as one JSON line on stdout; see
//! `meshmark_tests::scenario` and `meshmark_tests::truth`.

use anyhow::Result;
use clap::Parser;
use meshmark_tests::scenario::{burn, churn, disk, http, mesh, sleep, stream, threads, udp};

#[derive(Parser)]
#[command(about = "Workloads that print their own ground truth, for meshmark's tests")]
enum Command {
    /// Spin on N threads until each has used the given CPU time.
    Burn(burn::Spec),
    /// Exchange bytes over a TCP or unix stream between two processes.
    Stream(stream::Server),
    #[command(hide = true)]
    StreamClient(stream::Client),
    /// Exchange datagrams over connected UDP sockets between two processes.
    Udp(udp::Server),
    #[command(hide = true)]
    UdpClient(udp::Client),
    /// Fork PROCESSES children one after another, each exiting at once; report their CPU.
    Churn(churn::Spec),
    /// Start threads, optionally at chosen ids, each sending one-byte datagrams.
    Threads(threads::Spec),
    /// Sleep COUNT times for MS milliseconds with nanosleep.
    Sleep(sleep::Spec),
    /// Write and read files of its own, O_DIRECT or buffered with fsync; report /proc/self/io.
    Disk(disk::Spec),
    /// An HTTP/1.1 keep-alive server taking a known time per request, and its client.
    Http(http::Spec),
    #[command(hide = true)]
    HttpRelay(http::Relay),
    /// Mesh scenario: the application, which burns CPU and makes requests through the relay.
    MeshApp(mesh::App),
    /// Mesh scenario: the sidecar relay, named `envoy`.
    MeshRelay(mesh::Relay),
    /// Mesh scenario: the upstream server behind the relay.
    MeshUpstream(mesh::Upstream),
}

fn main() -> Result<()> {
    match Command::parse() {
        Command::Burn(spec) => burn::run(&spec),
        Command::Stream(spec) => stream::serve(&spec),
        Command::StreamClient(spec) => stream::connect(&spec),
        Command::Udp(spec) => udp::serve(&spec),
        Command::UdpClient(spec) => udp::send(&spec),
        Command::Sleep(spec) => sleep::run(&spec),
        Command::Disk(spec) => disk::run(&spec),
        Command::Http(spec) => http::run(&spec),
        Command::HttpRelay(spec) => http::relay(&spec),
        Command::Threads(spec) => threads::run(&spec),
        Command::Churn(spec) => churn::run(&spec),
        Command::MeshApp(spec) => mesh::app(&spec),
        Command::MeshRelay(spec) => mesh::relay(&spec),
        Command::MeshUpstream(spec) => mesh::upstream(&spec),
    }
}
