//! Two processes over connected UDP sockets, in lock step so no datagram can be dropped: the
//! client sends `count` datagrams of `size` bytes and waits for an `ack`-byte answer to each.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;

use anyhow::{ensure, Context, Result};

use super::{emit, emit_exchange, sock, spawn_peer};
use crate::truth::Endpoint;

/// Largest datagram either side sends; receive buffers are one byte bigger, so a truncated
/// datagram could not pass for a whole one.
const MAX_DATAGRAM: usize = 60_000;

/// The receiving side, which starts the sender as its peer.
#[derive(Debug, clap::Args)]
pub struct Server {
    #[arg(long, default_value = "127.0.0.1")]
    pub addr: IpAddr,
    /// Datagrams the client sends.
    #[arg(long)]
    pub count: u32,
    /// Bytes per client datagram.
    #[arg(long)]
    pub size: usize,
    /// Bytes per answer.
    #[arg(long)]
    pub ack: usize,
}

/// The sending side; started by [`Server`].
#[derive(Debug, clap::Args)]
pub struct Client {
    #[arg(long)]
    pub connect: SocketAddr,
    #[arg(long)]
    pub count: u32,
    #[arg(long)]
    pub size: usize,
}

pub fn serve(spec: &Server) -> Result<()> {
    ensure!(
        spec.size <= MAX_DATAGRAM && spec.ack <= MAX_DATAGRAM,
        "datagram too big"
    );
    let socket = UdpSocket::bind((spec.addr, 0)).context("binding UDP")?;
    sock::set_timeouts(socket.as_fd())?;
    let (connect, count, size) = (
        socket.local_addr()?.to_string(),
        spec.count.to_string(),
        spec.size.to_string(),
    );
    let client = spawn_peer(&[
        "udp-client",
        "--connect",
        &connect,
        "--count",
        &count,
        "--size",
        &size,
    ])?;

    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let (peeked, peer) = socket.peek_from(&mut buf).context("peeking")?;
    socket.connect(peer)?;
    let answer = vec![0xa5u8; spec.ack];
    let (mut rx_bytes, mut tx_bytes) = (0, 0);
    for _ in 0..spec.count {
        rx_bytes += sock::recv(socket.as_fd(), &mut buf, 0)? as u64;
        tx_bytes += sock::send(socket.as_fd(), &answer)? as u64;
    }
    emit_exchange(client, tx_bytes, rx_bytes, peeked as u64)
}

pub fn send(spec: &Client) -> Result<()> {
    ensure!(spec.size <= MAX_DATAGRAM, "datagram too big");
    let socket = UdpSocket::bind((spec.connect.ip(), 0)).context("binding UDP")?;
    socket.connect(spec.connect)?;
    sock::set_timeouts(socket.as_fd())?;
    let payload = vec![0x3cu8; spec.size];
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let (mut rx_bytes, mut tx_bytes) = (0, 0);
    for _ in 0..spec.count {
        tx_bytes += sock::send(socket.as_fd(), &payload)? as u64;
        rx_bytes += sock::recv(socket.as_fd(), &mut buf, 0)? as u64;
    }
    emit(&Endpoint {
        pid: std::process::id(),
        tx_bytes,
        rx_bytes,
        peeked_bytes: 0,
    })
}
