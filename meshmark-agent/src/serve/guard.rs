//! What stands between the network and the endpoints: the accept loop, a cap on open
//! connections, timeouts, a bound on request heads, TLS and basic authentication, each refusal
//! counted ([`HttpStats`], exposed as `meshmark_http_refused_total`) and logged at most once
//! per [`LOG_EVERY`].
//!
//! hyper is driven by hand rather than through `axum::serve`, which sets no timer (so hyper's
//! own header timeout never fires) and neither caps nor times out connections. Each connection
//! is in one of three phases, and a watchdog closes it when it stays too long in one:
//!
//! - idle, waiting for a request (a kept-alive connection, or one that sent nothing yet): at
//!   most `idle_timeout`;
//! - reading a request head (the TLS handshake included): at most `header_timeout` from its
//!   first byte, so a client that trickles a header byte by byte is cut;
//! - busy, a request being answered: no limit (answers come from memory).
//!
//! At the cap, a new connection takes the place of the connection idle (or reading) the
//! longest, which is closed; only when every connection is busy is the new one refused. So
//! connections held open by someone else cannot lock Prometheus out: its fresh connection wins.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tower::ServiceExt as _;
use tracing::{debug, warn};

use super::web_config::{WebConfig, WebConfigSource};
use crate::export::metrics::HttpCounters;

/// Warnings of one kind are logged at most this often (with how many were left out).
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// How long accepting pauses after an error such as EMFILE, so that a full descriptor table
/// does not spin the loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Successful logins remembered, so that Prometheus does not pay a bcrypt hash (tens of
/// milliseconds of CPU) per scrape.
const AUTH_CACHE: usize = 64;

/// The limits of one listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers), in bytes: hyper's read buffer.
    pub max_header_bytes: usize,
}

/// Why a connection or request was refused or cut: the `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// accept() failed: EMFILE, ENFILE, ENOMEM, ... (the connection waits in the backlog).
    AcceptError,
    /// Every connection was busy at the cap; the new one was closed.
    ConnectionLimit,
    /// Closed to make room for a new connection at the cap.
    Evicted,
    /// Idle longer than the idle timeout.
    IdleTimeout,
    /// A request head (or TLS handshake) took longer than the header timeout.
    HeaderTimeout,
    /// A request head larger than the limit (answered 431).
    HeadTooLarge,
    /// The TLS handshake failed (no or a wrong client certificate, not TLS, ...).
    TlsHandshake,
    /// The web configuration file became invalid; connections are refused until it is fixed.
    WebConfig,
    /// A request without valid basic authentication (answered 401).
    Unauthorized,
}

impl Refusal {
    pub const ALL: [Refusal; 9] = [
        Refusal::AcceptError,
        Refusal::ConnectionLimit,
        Refusal::Evicted,
        Refusal::IdleTimeout,
        Refusal::HeaderTimeout,
        Refusal::HeadTooLarge,
        Refusal::TlsHandshake,
        Refusal::WebConfig,
        Refusal::Unauthorized,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::AcceptError => "accept_error",
            Refusal::ConnectionLimit => "connection_limit",
            Refusal::Evicted => "evicted",
            Refusal::IdleTimeout => "idle_timeout",
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::HeadTooLarge => "head_too_large",
            Refusal::TlsHandshake => "tls_handshake",
            Refusal::WebConfig => "web_config",
            Refusal::Unauthorized => "unauthorized",
        }
    }

    fn index(self) -> usize {
        Refusal::ALL
            .iter()
            .position(|&r| r == self)
            .expect("every refusal is in ALL")
    }
}

/// Counters of the server, read by `/metrics`.
#[derive(Debug)]
pub struct HttpStats {
    open: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    logs: [Throttle; Refusal::ALL.len()],
}

impl Default for HttpStats {
    fn default() -> Self {
        HttpStats {
            open: AtomicU64::new(0),
            refused: std::array::from_fn(|_| AtomicU64::new(0)),
            logs: std::array::from_fn(|_| Throttle::default()),
        }
    }
}

impl HttpStats {
    pub fn counters(&self) -> HttpCounters {
        HttpCounters {
            open: self.open.load(Ordering::Relaxed),
            refused: Refusal::ALL
                .iter()
                .map(|r| (r.as_str(), self.refused[r.index()].load(Ordering::Relaxed)))
                .collect(),
        }
    }

    /// Counts a refusal and logs it, at most once per [`LOG_EVERY`] for each reason.
    pub fn refuse(&self, reason: Refusal, detail: &dyn std::fmt::Display) {
        self.refused[reason.index()].fetch_add(1, Ordering::Relaxed);
        if let Some(left_out) = self.logs[reason.index()].allow() {
            warn!(reason = reason.as_str(), left_out, "{detail}");
        }
    }
}

/// Lets one message through per [`LOG_EVERY`] and counts the others.
#[derive(Debug, Default)]
struct Throttle {
    last: Mutex<Option<Instant>>,
    left_out: AtomicU64,
}

impl Throttle {
    /// `Some(messages left out since the last one)` when this one may be logged.
    fn allow(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < LOG_EVERY) {
            self.left_out.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.left_out.swap(0, Ordering::Relaxed))
    }
}

/// Where a connection is in its life, for the watchdog and for eviction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Head,
    Busy,
}

/// One open connection as the listener sees it.
#[derive(Debug)]
struct Slot {
    state: Mutex<(Phase, Instant)>,
    changed: Notify,
    evicted: AtomicBool,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            state: Mutex::new((Phase::Idle, Instant::now())),
            changed: Notify::new(),
            evicted: AtomicBool::new(false),
        }
    }

    fn get(&self) -> (Phase, Instant) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, phase: Phase) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (phase, Instant::now());
        self.changed.notify_one();
    }

    /// Idle -> reading a head, at its first byte.
    fn bytes_arrived(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.0 == Phase::Idle {
            *state = (Phase::Head, Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// Resolves with the reason once the connection has to go.
    async fn watchdog(&self, limits: &Limits) -> Refusal {
        loop {
            if self.evicted.load(Ordering::Relaxed) {
                return Refusal::Evicted;
            }
            let (phase, since) = self.get();
            let (limit, reason) = match phase {
                Phase::Busy => {
                    self.changed.notified().await;
                    continue;
                }
                Phase::Idle => (limits.idle_timeout, Refusal::IdleTimeout),
                Phase::Head => (limits.header_timeout, Refusal::HeaderTimeout),
            };
            tokio::select! {
                () = tokio::time::sleep_until((since + limit).into()) => {
                    if self.get() == (phase, since) && !self.evicted.load(Ordering::Relaxed) {
                        return reason;
                    }
                }
                () = self.changed.notified() => {}
            }
        }
    }
}

/// The open connections of one listener.
#[derive(Debug, Default)]
struct Registry {
    slots: Mutex<(u64, HashMap<u64, Arc<Slot>>)>,
}

impl Registry {
    /// A slot for a new connection: free, or taken from the connection waiting the longest;
    /// `None` when all `max` are busy.
    fn admit(&self, max: usize) -> Option<(u64, Arc<Slot>)> {
        let mut guard = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let (next, slots) = &mut *guard;
        if slots.len() >= max {
            Self::evict_longest_waiting(slots)?;
        }
        let id = *next;
        *next = next.wrapping_add(1);
        let slot = Arc::new(Slot::new());
        slots.insert(id, slot.clone());
        Some((id, slot))
    }

    /// Closes the connection that has waited (idle or reading) the longest, to free its
    /// descriptor; `None` when every connection is busy.
    fn evict_one(&self) -> Option<()> {
        let mut guard = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        Self::evict_longest_waiting(&mut guard.1)
    }

    fn evict_longest_waiting(slots: &mut HashMap<u64, Arc<Slot>>) -> Option<()> {
        let (&id, _) = slots
            .iter()
            .map(|(id, slot)| (id, slot.get()))
            .filter(|(_, (phase, _))| *phase != Phase::Busy)
            .min_by_key(|(_, (_, since))| *since)?;
        let slot = slots.remove(&id)?;
        slot.evict();
        Some(())
    }

    fn release(&self, id: u64) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .remove(&id);
    }
}

/// What one listener serves, and how.
#[derive(Clone)]
pub struct Endpoint {
    pub router: axum::Router,
    pub limits: Limits,
    /// TLS and authentication; `None` serves plain HTTP to everyone (the health listener).
    pub web: Option<Arc<WebConfigSource>>,
    pub stats: Arc<HttpStats>,
}

/// Accepts and serves connections until `stop` turns true; then stops accepting, lets the
/// requests in flight finish and closes idle connections. Returns once every connection ended.
pub async fn serve(listener: TcpListener, endpoint: Endpoint, mut stop: watch::Receiver<bool>) {
    let registry = Arc::new(Registry::default());
    let auth = Arc::new(Auth::default());
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|&s| s) => break,
            // Reap finished connections as they end, so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                endpoint.stats.refuse(
                    Refusal::AcceptError,
                    &format_args!("cannot accept a connection: {err}"),
                );
                if matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    // Out of descriptors: give one back by closing the connection that waited
                    // the longest, so that the waiting scrape (and the window loop) get one;
                    // that connection counts itself as evicted.
                    let _ = registry.evict_one();
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some((id, slot)) = registry.admit(endpoint.limits.max_connections) else {
            endpoint.stats.refuse(
                Refusal::ConnectionLimit,
                &format_args!(
                    "refused a connection: all {} are busy",
                    endpoint.limits.max_connections
                ),
            );
            drop(stream);
            continue;
        };
        let endpoint = endpoint.clone();
        let registry = registry.clone();
        let auth = auth.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            endpoint.stats.open.fetch_add(1, Ordering::Relaxed);
            let ended = connection(stream, &slot, &endpoint, &auth, stop).await;
            if let Some(reason) = ended {
                endpoint.stats.refuse(
                    reason,
                    &format_args!("closed a connection: {}", reason.as_str()),
                );
            }
            registry.release(id);
            endpoint.stats.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Serves one connection; `Some(reason)` when it was refused or cut.
async fn connection(
    stream: TcpStream,
    slot: &Arc<Slot>,
    endpoint: &Endpoint,
    auth: &Arc<Auth>,
    stop: watch::Receiver<bool>,
) -> Option<Refusal> {
    let _ = stream.set_nodelay(true);
    let io = Watched {
        inner: stream,
        slot: slot.clone(),
    };
    let config = match &endpoint.web {
        None => None,
        Some(source) => match source.current() {
            Ok(config) => Some(config),
            Err(_) => return Some(Refusal::WebConfig),
        },
    };
    let work = async {
        match config.as_ref().and_then(|c| c.tls.clone()) {
            Some(tls) => {
                let tls = tokio_rustls::TlsAcceptor::from(tls);
                let stream = match tls.accept(io).await {
                    Ok(stream) => stream,
                    Err(err) => {
                        debug!(error = %err, "TLS handshake failed");
                        return Some(Refusal::TlsHandshake);
                    }
                };
                http(stream, slot, endpoint, config, auth, stop).await
            }
            None => http(io, slot, endpoint, config, auth, stop).await,
        }
    };
    tokio::select! {
        ended = work => ended,
        reason = slot.watchdog(&endpoint.limits) => Some(reason),
    }
}

/// HTTP/1.1 on an established (and, with TLS, handshaken) connection.
async fn http<I>(
    io: I,
    slot: &Arc<Slot>,
    endpoint: &Endpoint,
    config: Option<Arc<WebConfig>>,
    auth: &Arc<Auth>,
    mut stop: watch::Receiver<bool>,
) -> Option<Refusal>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let slot = slot.clone();
        let router = endpoint.router.clone();
        let stats = endpoint.stats.clone();
        let auth = auth.clone();
        hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let (slot, router, stats, auth, config) = (
                slot.clone(),
                router.clone(),
                stats.clone(),
                auth.clone(),
                config.clone(),
            );
            async move {
                slot.set(Phase::Busy);
                let response = answer(request.map(Body::new), router, config, &auth, &stats).await;
                slot.set(Phase::Idle);
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_buf_size(endpoint.limits.max_header_bytes)
        .keep_alive(true);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                return match ended {
                    Err(err) if err.is_parse_too_large() => Some(Refusal::HeadTooLarge),
                    Err(err) => {
                        debug!(error = %err, "connection ended with an error");
                        None
                    }
                    Ok(()) => None,
                };
            }
            _ = stop.wait_for(|&s| s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Authenticates (everything but health and readiness), routes, and adds the file's headers.
async fn answer(
    request: Request<Body>,
    router: axum::Router,
    config: Option<Arc<WebConfig>>,
    auth: &Auth,
    stats: &HttpStats,
) -> Response<Body> {
    let open = matches!(request.uri().path(), "/healthz" | "/readyz");
    let mut response = match &config {
        Some(config) if !open && !config.users.is_empty() => {
            if auth
                .allows(request.headers().get(header::AUTHORIZATION), config)
                .await
            {
                route(router, request).await
            } else {
                stats.refuse(
                    Refusal::Unauthorized,
                    // The path is the client's: quoted, and cut to a bounded length.
                    &format_args!(
                        "refused a request to {:?}: no valid basic authentication",
                        request.uri().path().chars().take(80).collect::<String>()
                    ),
                );
                let mut response = Response::new(Body::from("Unauthorized\n"));
                *response.status_mut() = StatusCode::UNAUTHORIZED;
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Basic"),
                );
                response
            }
        }
        _ => route(router, request).await,
    };
    if let Some(config) = config {
        for (name, value) in &config.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}

async fn route(router: axum::Router, request: Request<Body>) -> Response<Body> {
    match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Basic authentication against the file's bcrypt hashes. One hash is checked at a time, so
/// wrong guesses cost at most one core; logins that succeeded are remembered.
#[derive(Debug)]
struct Auth {
    one_at_a_time: Semaphore,
    /// (user, password, hash) of logins that succeeded; cleared when full.
    good: Mutex<std::collections::HashSet<(String, String, String)>>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            one_at_a_time: Semaphore::new(1),
            good: Mutex::default(),
        }
    }
}

/// Checked for unknown users too, so a wrong name costs as long as a wrong password (made at
/// the first unknown name, at htpasswd's usual cost).
fn unknown_user_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash("no such user", 10).unwrap_or_default())
        .clone()
}

impl Auth {
    async fn allows(
        &self,
        authorization: Option<&header::HeaderValue>,
        config: &WebConfig,
    ) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return false;
        };
        let hash = config.users.get(&user);
        let key = (user, password, hash.cloned().unwrap_or_default());
        if hash.is_some()
            && self
                .good
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&key)
        {
            return true;
        }
        let Ok(_permit) = self.one_at_a_time.acquire().await else {
            return false;
        };
        let (password, hash_text) = (key.1.clone(), hash.cloned());
        let matched = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password, &hash_text.unwrap_or_else(unknown_user_hash))
        })
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(false);
        if matched && hash.is_some() {
            let mut good = self.good.lock().unwrap_or_else(|p| p.into_inner());
            if good.len() >= AUTH_CACHE {
                good.clear();
            }
            good.insert(key);
            return true;
        }
        false
    }
}

/// `Basic base64(user:password)` -> (user, password).
fn basic_credentials(value: &header::HeaderValue) -> Option<(String, String)> {
    use base64::Engine as _;
    let encoded = value.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// A connection's socket, telling its slot when bytes arrive.
struct Watched {
    inner: TcpStream,
    slot: Arc<Slot>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.slot.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests;
