//! A service mesh in miniature, for the live MeshMark test: an application that burns a known
//! amount of CPU between request/response round trips over loopback TCP, a sidecar relay whose
//! command name is `envoy`, and an upstream server that answers each request.
//!
//! Three processes, each a role of its own as in a real node: the test moves the app and the
//! relay into two containers of one pod; the upstream stays outside it. As a thread of the relay
//! the upstream would charge the server's CPU and bytes to the proxy and so inflate the mesh's
//! cost. The relay's own cost is what a sidecar's is: for every message a wake-up, a read and a
//! write on each leg, each through the loopback TCP stack, so it grows with the traffic.
//!
//! App and relay wait for [`super::GO`] before any work, so the test can move them first, and
//! report their CPU clock and bytes only once they have moved their last byte. Then they stay
//! alive, idle, until stdin closes: the profiler reads pod and container from /proc at the end
//! of its window, so they must outlive it, and as they do nothing more their clocks cover all
//! that the window charges them. The upstream, which the test does not examine, just exits.

use std::ffi::CStr;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::{ensure, Context, Result};

use super::burn::spin_until;
use super::{clock_ns, emit, sock, wait_for_go, wait_for_stdin_close, WAIT_LIMIT};
use crate::truth::{Listening, MeshPart};

/// The relay's command name: the one the `preset:envoy` rule recognises.
const PROXY_COMM: &CStr = c"envoy";

/// Size of the relay's buffer, one read's worth.
const RELAY_CHUNK: usize = 64 * 1024;

/// The exchange between app and upstream, which both ends must agree on.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct Traffic {
    /// Round trips the app makes.
    #[arg(long)]
    pub requests: u32,
    #[arg(long)]
    pub request_bytes: u64,
    #[arg(long)]
    pub response_bytes: u64,
}

impl Traffic {
    /// The command-line arguments that give this traffic to `mesh-app` or `mesh-upstream`.
    pub fn args(&self) -> String {
        format!(
            "--requests {} --request-bytes {} --response-bytes {}",
            self.requests, self.request_bytes, self.response_bytes
        )
    }
}

/// The application: burns CPU and makes requests through the relay.
#[derive(Debug, clap::Args)]
pub struct App {
    /// The relay's address.
    #[arg(long)]
    pub relay: SocketAddr,
    /// CPU time the app's thread has used when its last request leaves, burned in even slices
    /// before each request; the requests' own CPU counts towards it.
    #[arg(long)]
    pub cpu_ms: u64,
    #[command(flatten)]
    pub traffic: Traffic,
}

/// The sidecar: relays one connection to the upstream and back.
#[derive(Debug, clap::Args)]
pub struct Relay {
    #[arg(long)]
    pub upstream: SocketAddr,
}

/// The upstream server: answers each request with a response.
#[derive(Debug, clap::Args)]
pub struct Upstream {
    #[command(flatten)]
    pub traffic: Traffic,
}

pub fn app(spec: &App) -> Result<()> {
    wait_for_go()?;
    let conn: OwnedFd = TcpStream::connect_timeout(&spec.relay, WAIT_LIMIT)
        .context("connecting to the relay")?
        .into();
    sock::set_timeouts(conn.as_fd())?;
    let Traffic {
        requests,
        request_bytes,
        response_bytes,
    } = spec.traffic;
    let burn_ns = spec.cpu_ms * 1_000_000;
    let (mut tx_bytes, mut rx_bytes) = (0, 0);
    for done in 1..=u64::from(requests) {
        // Absolute targets, so the overshoot of one slice is taken from the next.
        spin_until(burn_ns * done / u64::from(requests));
        tx_bytes += sock::send_counted(conn.as_fd(), request_bytes)?;
        let got = sock::recv_up_to(conn.as_fd(), response_bytes)?;
        rx_bytes += got;
        ensure!(
            got == response_bytes,
            "response {done} ended after {got} bytes"
        );
    }
    sock::shutdown_write(conn.as_fd())?;
    rx_bytes += sock::recv_to_eof(conn.as_fd())?;
    report_and_stay(tx_bytes, rx_bytes)
}

pub fn relay(spec: &Relay) -> Result<()> {
    // SAFETY: PR_SET_NAME reads a NUL-terminated name; the kernel keeps its first 15 bytes.
    let rc = unsafe { libc::prctl(libc::PR_SET_NAME, PROXY_COMM.as_ptr()) };
    ensure!(
        rc == 0,
        "prctl(PR_SET_NAME): {}",
        std::io::Error::last_os_error()
    );
    let listener = listen()?;
    wait_for_go()?;
    let downstream = sock::accept(listener.as_fd()).context("waiting for the app")?;
    let upstream: OwnedFd = TcpStream::connect_timeout(&spec.upstream, WAIT_LIMIT)
        .context("connecting to the upstream")?
        .into();
    for conn in [&downstream, &upstream] {
        sock::set_timeouts(conn.as_fd())?;
    }
    let (tx_bytes, rx_bytes) = pump(downstream.as_fd(), upstream.as_fd())?;
    report_and_stay(tx_bytes, rx_bytes)
}

pub fn upstream(spec: &Upstream) -> Result<()> {
    let listener = listen()?;
    let conn = sock::accept(listener.as_fd()).context("waiting for the relay")?;
    sock::set_timeouts(conn.as_fd())?;
    let Traffic {
        requests,
        request_bytes,
        response_bytes,
    } = spec.traffic;
    let (mut tx_bytes, mut rx_bytes) = (0, 0);
    for done in 1..=requests {
        let got = sock::recv_up_to(conn.as_fd(), request_bytes)?;
        rx_bytes += got;
        ensure!(
            got == request_bytes,
            "request {done} ended after {got} bytes"
        );
        tx_bytes += sock::send_counted(conn.as_fd(), response_bytes)?;
    }
    let extra = sock::recv_to_eof(conn.as_fd())?;
    ensure!(extra == 0, "{extra} bytes after the last request");
    sock::shutdown_write(conn.as_fd())?;
    emit(&part(tx_bytes, rx_bytes))
}

/// Binds a loopback port the kernel picks and prints where it is.
fn listen() -> Result<TcpListener> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding TCP")?;
    emit(&Listening {
        pid: std::process::id(),
        addr: listener.local_addr()?,
    })?;
    Ok(listener)
}

/// Relays bytes both ways between `a` and `b` as they arrive, and passes each side's shutdown
/// on to the other, until both sides have shut down; returns the bytes sent and received.
fn pump(a: BorrowedFd, b: BorrowedFd) -> Result<(u64, u64)> {
    let ends = [a, b];
    let mut open = [true, true];
    let mut buf = vec![0u8; RELAY_CHUNK];
    let (mut tx_bytes, mut rx_bytes) = (0, 0);
    while open.contains(&true) {
        let sides: Vec<usize> = (0..2).filter(|&side| open[side]).collect();
        let fds: Vec<BorrowedFd> = sides.iter().map(|&side| ends[side]).collect();
        let ready = sock::wait_readable(&fds).context("relaying")?;
        for (&side, _) in sides.iter().zip(ready).filter(|(_, ready)| *ready) {
            let (from, to) = (ends[side], ends[1 - side]);
            match sock::recv(from, &mut buf, 0)? {
                0 => {
                    sock::shutdown_write(to)?;
                    open[side] = false;
                }
                n => {
                    rx_bytes += n as u64;
                    tx_bytes += sock::send_all(to, &buf[..n])?;
                }
            }
        }
    }
    Ok((tx_bytes, rx_bytes))
}

/// Reports this process's clock and bytes, then stays alive and idle (see the module docs).
fn report_and_stay(tx_bytes: u64, rx_bytes: u64) -> Result<()> {
    emit(&part(tx_bytes, rx_bytes))?;
    wait_for_stdin_close()
}

fn part(tx_bytes: u64, rx_bytes: u64) -> MeshPart {
    MeshPart {
        pid: std::process::id(),
        process_cpu_ns: clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID),
        tx_bytes,
        rx_bytes,
    }
}
