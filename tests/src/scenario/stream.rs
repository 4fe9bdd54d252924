//! Two processes over one stream socket (TCP or unix): the client sends `send` bytes and shuts
//! its side; the server peeks once, reads to EOF, then sends `reply` bytes back.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{self, UnixListener, UnixStream};

use anyhow::{Context, Result};

use super::{clock_ns, emit, emit_exchange, sock, spawn_peer, WAIT_LIMIT};
use crate::truth::Endpoint;

/// Which socket family carries the stream.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Kind {
    Tcp,
    Unix,
}

impl Kind {
    fn arg(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Unix => "unix",
        }
    }
}

/// The server side, which starts the client as its peer.
#[derive(Debug, clap::Args)]
pub struct Server {
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Address to listen on (TCP only; the port is picked by the kernel).
    #[arg(long, default_value = "127.0.0.1")]
    pub addr: IpAddr,
    /// Bytes the client sends.
    #[arg(long)]
    pub send: u64,
    /// Bytes the server sends back.
    #[arg(long)]
    pub reply: u64,
    /// Network namespace (from `ip netns add`) to serve from.
    #[arg(long)]
    pub server_netns: Option<String>,
    /// Network namespace for the client.
    #[arg(long)]
    pub client_netns: Option<String>,
}

/// The client side; started by [`Server`].
#[derive(Debug, clap::Args)]
pub struct Client {
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// `ip:port` for TCP, the abstract socket name for unix.
    #[arg(long)]
    pub connect: String,
    #[arg(long)]
    pub send: u64,
    #[arg(long)]
    pub netns: Option<String>,
}

pub fn serve(spec: &Server) -> Result<()> {
    if let Some(ns) = &spec.server_netns {
        sock::enter_netns(ns)?;
    }
    let (listener, connect): (OwnedFd, String) = match spec.kind {
        Kind::Tcp => {
            let listener = TcpListener::bind((spec.addr, 0)).context("binding TCP")?;
            let addr = listener.local_addr()?.to_string();
            (listener.into(), addr)
        }
        Kind::Unix => {
            // Abstract names need no file to clean up; pid and time make them unique.
            let name = format!(
                "meshmark-tests-{}-{}",
                std::process::id(),
                clock_ns(libc::CLOCK_MONOTONIC)
            );
            let addr = net::SocketAddr::from_abstract_name(&name)?;
            (
                UnixListener::bind_addr(&addr)
                    .context("binding unix")?
                    .into(),
                name,
            )
        }
    };
    let send = spec.send.to_string();
    let mut args = vec!["stream-client", "--kind", spec.kind.arg()];
    args.extend(["--connect", &connect, "--send", &send]);
    if let Some(ns) = &spec.client_netns {
        args.extend(["--netns", ns]);
    }
    let client = spawn_peer(&args)?;

    let conn = sock::accept(listener.as_fd())?;
    sock::set_timeouts(conn.as_fd())?;
    let peeked_bytes = sock::peek(conn.as_fd())?;
    let rx_bytes = sock::recv_to_eof(conn.as_fd())?;
    let tx_bytes = sock::send_counted(conn.as_fd(), spec.reply)?;
    sock::shutdown_write(conn.as_fd())?;
    drop(conn);
    emit_exchange(client, tx_bytes, rx_bytes, peeked_bytes)
}

pub fn connect(spec: &Client) -> Result<()> {
    if let Some(ns) = &spec.netns {
        sock::enter_netns(ns)?;
    }
    let conn: OwnedFd = match spec.kind {
        Kind::Tcp => {
            let addr: SocketAddr = spec.connect.parse().context("parsing --connect")?;
            TcpStream::connect_timeout(&addr, WAIT_LIMIT)?.into()
        }
        Kind::Unix => {
            let addr = net::SocketAddr::from_abstract_name(&spec.connect)?;
            UnixStream::connect_addr(&addr)?.into()
        }
    };
    sock::set_timeouts(conn.as_fd())?;
    let tx_bytes = sock::send_counted(conn.as_fd(), spec.send)?;
    sock::shutdown_write(conn.as_fd())?;
    let rx_bytes = sock::recv_to_eof(conn.as_fd())?;
    emit(&Endpoint {
        pid: std::process::id(),
        tx_bytes,
        rx_bytes,
        peeked_bytes: 0,
    })
}
