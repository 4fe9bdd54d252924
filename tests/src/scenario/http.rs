//! An HTTP/1.1 keep-alive server that takes a known time per request, and its client, in one
//! process: the server's accepted connections are the ones meshmark times (the client's own
//! connections are not accepted ones, so they add no turns). The client counts the responses it
//! read whole; the record also carries the edge cases it played, each of which must add nothing
//! but what it says.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use super::{emit, sock, WAIT_LIMIT};
use crate::truth::{HttpRequests, Listening};

#[derive(Debug, clap::Args)]
pub struct Spec {
    /// Keep-alive connections, one after another.
    #[arg(long, default_value_t = 4)]
    pub connections: u32,
    /// Requests on each connection.
    #[arg(long, default_value_t = 25)]
    pub requests: u32,
    /// Time the server takes for each request.
    #[arg(long, default_value_t = 20)]
    pub sleep_ms: u64,
    /// Also: a connection that sends nothing, one closed halfway through a request, and one
    /// reset by the client right after a full response (that request counts: it was served).
    #[arg(long)]
    pub edge_cases: bool,
    /// Listen on IPv6 loopback instead of IPv4.
    #[arg(long)]
    pub ipv6: bool,
    /// Listen on this address instead of loopback (one of `--server-netns`'s).
    #[arg(long)]
    pub addr: Option<String>,
    /// Network namespace (from `ip netns add`) the server listens in.
    #[arg(long)]
    pub server_netns: Option<String>,
    /// Network namespace the client connects from.
    #[arg(long)]
    pub client_netns: Option<String>,
    /// Put a sidecar in front of the server: a relay process named `envoy`, in the server's
    /// namespace, that waits this long before forwarding each request. The client's requests
    /// then all go through it.
    #[arg(long)]
    pub relay_delay_ms: Option<u64>,
    /// Serve over a unix stream socket (in the system's temporary directory) instead of TCP.
    #[arg(long, conflicts_with_all = ["ipv6", "addr", "server_netns", "client_netns", "relay_delay_ms"])]
    pub unix: bool,
    /// With `--unix`: on each connection, send each request after the first once the response
    /// to the one before has arrived but before reading it: a response still going out when
    /// the next request arrives, as on a multiplexed connection.
    #[arg(long, requires = "unix")]
    pub overlap: bool,
}

/// `http-relay`: the sidecar of `http --relay-delay-ms`.
#[derive(Debug, clap::Args)]
pub struct Relay {
    /// The server it forwards to; it listens on the same address, another port.
    #[arg(long)]
    pub upstream: std::net::SocketAddr,
    /// Time it waits before forwarding each request.
    #[arg(long)]
    pub delay_ms: u64,
    /// Network namespace it runs in.
    #[arg(long)]
    pub netns: Option<String>,
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: meshmark\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

pub fn run(spec: &Spec) -> Result<()> {
    if spec.unix {
        return run_unix(spec);
    }
    let ip = match (&spec.addr, spec.ipv6) {
        (Some(addr), _) => addr.as_str(),
        (None, true) => "::1",
        (None, false) => "127.0.0.1",
    };
    let ip: std::net::IpAddr = ip.parse().context("--addr")?;
    let bind = || TcpListener::bind((ip, 0)).context("binding the test server");
    // A socket stays in the namespace it was made in, whichever thread then uses it.
    let listener = match &spec.server_netns {
        Some(ns) => sock::in_netns(ns, bind)??,
        None => bind()?,
    };
    let server_address = listener.local_addr()?;
    let relay = match spec.relay_delay_ms {
        Some(delay_ms) => Some(start_relay(spec, server_address, delay_ms)?),
        None => None,
    };
    if let Some(ns) = &spec.client_netns {
        sock::enter_netns(ns)?;
    }
    // The client's requests go through the relay where there is one.
    let address = relay.as_ref().map_or(server_address, |(_, at)| at.addr);
    let sleep = Duration::from_millis(spec.sleep_ms);
    let server = spawn_server(move || listener.accept().map(|(stream, _)| stream), sleep);
    let connect = || -> Result<TcpStream> {
        let stream = TcpStream::connect(address).context("connecting to the test server")?;
        stream.set_read_timeout(Some(WAIT_LIMIT))?;
        Ok(stream)
    };
    let mut completed = keep_alive_client(spec, connect)?;
    if spec.edge_cases {
        let mut reset = connect()?;
        exchange(&mut reset)?;
        completed += 1;
        // SO_LINGER 0: close sends a reset instead of a FIN.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        set_linger(&reset, linger)?;
        drop(reset);
    }
    // The last connection tells the server to stop, past the relay.
    stop_server(TcpStream::connect(server_address).context("connecting to stop the server")?)?;
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
    let relay_pid = relay.map(|(relay, at)| {
        relay.finish();
        at.pid
    });
    emit(&HttpRequests {
        pid: std::process::id(),
        requests: completed,
        sleep_ns: spec.sleep_ms * 1_000_000,
        relay_pid,
        relay_delay_ns: spec.relay_delay_ms.map(|ms| ms * 1_000_000),
    })
}

/// `run` over a unix stream socket: the same server, client and edge cases but the reset (a
/// unix socket has none).
fn run_unix(spec: &Spec) -> Result<()> {
    let path = std::env::temp_dir().join(format!("mm-http-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).context("binding the unix test server")?;
    let _remove = RemoveOnDrop(&path);
    let sleep = Duration::from_millis(spec.sleep_ms);
    let server = spawn_server(move || listener.accept().map(|(stream, _)| stream), sleep);
    let connect = || -> Result<UnixStream> {
        let stream = UnixStream::connect(&path).context("connecting to the unix test server")?;
        stream.set_read_timeout(Some(WAIT_LIMIT))?;
        Ok(stream)
    };
    let completed = keep_alive_client(spec, connect)?;
    stop_server(connect()?)?;
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
    emit(&HttpRequests {
        pid: std::process::id(),
        requests: completed,
        sleep_ns: spec.sleep_ms * 1_000_000,
        relay_pid: None,
        relay_delay_ns: None,
    })
}

/// Removes the socket file however the run ends.
struct RemoveOnDrop<'a>(&'a std::path::Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// A connected stream of either kind, as the server and client here use it.
trait Stream: Read + Write + AsRawFd + Send + 'static {
    fn set_read_timeout(&self, limit: Option<Duration>) -> std::io::Result<()>;
    fn shutdown(&self, how: Shutdown) -> std::io::Result<()>;
}

impl Stream for TcpStream {
    fn set_read_timeout(&self, limit: Option<Duration>) -> std::io::Result<()> {
        TcpStream::set_read_timeout(self, limit)
    }
    fn shutdown(&self, how: Shutdown) -> std::io::Result<()> {
        TcpStream::shutdown(self, how)
    }
}

impl Stream for UnixStream {
    fn set_read_timeout(&self, limit: Option<Duration>) -> std::io::Result<()> {
        UnixStream::set_read_timeout(self, limit)
    }
    fn shutdown(&self, how: Shutdown) -> std::io::Result<()> {
        UnixStream::shutdown(self, how)
    }
}

/// The server thread: serves each connection `accept` hands it in turn, until one says STOP.
fn spawn_server<S: Stream>(
    mut accept: impl FnMut() -> std::io::Result<S> + Send + 'static,
    sleep: Duration,
) -> std::thread::JoinHandle<Result<()>> {
    std::thread::spawn(move || -> Result<()> {
        loop {
            let stream = accept().context("accepting")?;
            stream.set_read_timeout(Some(WAIT_LIMIT))?;
            if serve(stream, sleep)? {
                return Ok(());
            }
        }
    })
}

/// The client's keep-alive connections, one after another (overlapped with `--overlap`), then
/// with `--edge-cases` one that sends nothing and one closed halfway through a request; returns
/// the responses read whole.
fn keep_alive_client<S: Stream>(spec: &Spec, connect: impl Fn() -> Result<S>) -> Result<u64> {
    let mut completed = 0u64;
    for _ in 0..spec.connections {
        let mut stream = connect()?;
        if spec.overlap {
            completed += overlapped(&mut stream, spec.requests)?;
        } else {
            for _ in 0..spec.requests {
                exchange(&mut stream)?;
                completed += 1;
            }
        }
        // The client closes first; the server's read then ends and it closes its end.
        drop(stream);
    }
    if spec.edge_cases {
        drop(connect()?);
        let mut half = connect()?;
        half.write_all(&REQUEST[..10])?;
        drop(half);
    }
    Ok(completed)
}

/// Tells the server on the other end of `stop` to stop once this connection ends.
fn stop_server(mut stop: impl Stream) -> Result<()> {
    stop.set_read_timeout(Some(WAIT_LIMIT))?;
    stop.write_all(b"STOP")?;
    stop.shutdown(Shutdown::Write)?;
    let _ = stop.read_to_end(&mut Vec::new());
    Ok(())
}

/// `requests` requests on `stream`, each after the first written once the response to the one
/// before has arrived but before it is read; returns the responses read.
fn overlapped(stream: &mut impl Stream, requests: u32) -> Result<u64> {
    let mut response = [0u8; RESPONSE.len()];
    for i in 0..requests {
        stream.write_all(REQUEST)?;
        if i > 0 {
            // Read the last response only once the server has this request: else the client
            // may read it before the server's receive returns, and nothing overlapped.
            wait_request_read(stream)?;
            stream
                .read_exact(&mut response)
                .context("reading a response")?;
        }
        wait_readable(stream)?;
    }
    if requests > 0 {
        stream
            .read_exact(&mut response)
            .context("reading a response")?;
    }
    Ok(u64::from(requests))
}

/// Blocks until the server has read all this client sent (a unix socket's sent bytes stay
/// charged to it until read, which `SIOCOUTQ` tells), then a moment more for the server's
/// receive to return.
fn wait_request_read(stream: &impl Stream) -> Result<()> {
    let start = std::time::Instant::now();
    loop {
        let mut unread: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int through the pointer.
        let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut unread) };
        ensure!(rc == 0, "SIOCOUTQ: {}", std::io::Error::last_os_error());
        if unread == 0 {
            break;
        }
        ensure!(
            start.elapsed() < WAIT_LIMIT,
            "the server left {unread} bytes unread for {WAIT_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(5));
    Ok(())
}

/// Blocks until `stream` has bytes to read (the server's response is in its queue), reading none.
fn wait_readable(stream: &impl Stream) -> Result<()> {
    let mut poll = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let limit = i32::try_from(WAIT_LIMIT.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd, and its count.
    let ready = unsafe { libc::poll(&mut poll, 1, limit) };
    ensure!(
        ready == 1,
        "no response within {WAIT_LIMIT:?}: poll returned {ready} ({})",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// Starts the relay in front of the server at `upstream` and waits until it listens.
fn start_relay(
    spec: &Spec,
    upstream: std::net::SocketAddr,
    delay_ms: u64,
) -> Result<(crate::child::Workload, Listening)> {
    let (upstream, delay_ms) = (upstream.to_string(), delay_ms.to_string());
    let mut args = vec![
        "http-relay",
        "--upstream",
        &upstream,
        "--delay-ms",
        &delay_ms,
    ];
    if let Some(ns) = &spec.server_netns {
        args.extend(["--netns", ns]);
    }
    let mut relay = super::spawn_peer(&args)?;
    let listening: Listening = relay.truth();
    Ok((relay, listening))
}

/// The relay: named `envoy` so the preset classifies it as a proxy; it accepts the client's
/// connections and, for each request, waits, forwards it over its own connection to the server
/// and relays the response back. Serves until stdin closes.
pub fn relay(spec: &Relay) -> Result<()> {
    // SAFETY: PR_SET_NAME reads a NUL-terminated name; the kernel keeps its first 15 bytes.
    let rc = unsafe { libc::prctl(libc::PR_SET_NAME, c"envoy".as_ptr()) };
    ensure!(
        rc == 0,
        "prctl(PR_SET_NAME): {}",
        std::io::Error::last_os_error()
    );
    // Threads started after this share the namespace.
    if let Some(ns) = &spec.netns {
        sock::enter_netns(ns)?;
    }
    let listener = TcpListener::bind((spec.upstream.ip(), 0)).context("binding the relay")?;
    emit(&Listening {
        pid: std::process::id(),
        addr: listener.local_addr()?,
    })?;
    let (upstream, delay) = (spec.upstream, Duration::from_millis(spec.delay_ms));
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            std::thread::spawn(move || relay_connection(client, upstream, delay));
        }
    });
    super::wait_for_stdin_close()
}

/// Relays one client connection, request by request, until the client closes it.
fn relay_connection(
    mut client: TcpStream,
    upstream: std::net::SocketAddr,
    delay: Duration,
) -> Result<()> {
    client.set_read_timeout(Some(WAIT_LIMIT))?;
    let mut server = TcpStream::connect(upstream).context("connecting to the server")?;
    server.set_read_timeout(Some(WAIT_LIMIT))?;
    let mut pending = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = client.read(&mut buffer).context("reading a request")?;
        if read == 0 {
            return Ok(());
        }
        pending.extend_from_slice(&buffer[..read]);
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let request: Vec<u8> = pending.drain(..end + 4).collect();
            std::thread::sleep(delay);
            server.write_all(&request)?;
            let mut response = [0u8; RESPONSE.len()];
            server
                .read_exact(&mut response)
                .context("reading a response")?;
            client.write_all(&response)?;
        }
    }
}

/// One request written, one whole response read.
fn exchange(stream: &mut (impl Read + Write)) -> Result<()> {
    stream.write_all(REQUEST)?;
    let mut response = [0u8; RESPONSE.len()];
    stream
        .read_exact(&mut response)
        .context("reading a response")?;
    ensure!(response == RESPONSE, "unexpected response {response:?}");
    Ok(())
}

/// Serves one connection until the client closes it; true when it was told to stop.
fn serve(mut stream: impl Read + Write, sleep: Duration) -> Result<bool> {
    let mut pending = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = match stream.read(&mut buffer) {
            Ok(0) => return Ok(pending.starts_with(b"STOP")),
            Ok(n) => n,
            // The reset connection.
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return Ok(false),
            Err(err) => return Err(err).context("reading a request"),
        };
        pending.extend_from_slice(&buffer[..read]);
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            std::thread::sleep(sleep);
            stream.write_all(RESPONSE)?;
        }
    }
}

fn set_linger(stream: &TcpStream, linger: libc::linger) -> Result<()> {
    // SAFETY: a valid socket and a linger struct of the size given.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    ensure!(rc == 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    Ok(())
}
