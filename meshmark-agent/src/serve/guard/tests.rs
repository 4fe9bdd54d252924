use super::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn limits() -> Limits {
    Limits {
        max_connections: 8,
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(400),
        max_header_bytes: 8_192,
    }
}

fn router() -> axum::Router {
    axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route("/metrics", axum::routing::get(|| async { "metrics\n" }))
}

/// A server on a loopback port: its address, counters and the switch that stops it.
async fn start(
    limits: Limits,
    web: Option<Arc<WebConfigSource>>,
) -> (std::net::SocketAddr, Arc<HttpStats>, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let stats = Arc::new(HttpStats::default());
    let (stop, stopped) = watch::channel(false);
    let endpoint = Endpoint {
        router: router(),
        limits,
        web,
        stats: stats.clone(),
    };
    tokio::spawn(serve(listener, endpoint, stopped));
    (address, stats, stop)
}

fn refused(stats: &HttpStats, reason: Refusal) -> u64 {
    stats.refused[reason.index()].load(Ordering::Relaxed)
}

/// Waits (up to a second) until `what` holds: a connection's task counts its end just after
/// the client sees the close.
async fn eventually(what: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    while !what() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Reads until the server closes; what it sent, or `None` if it did not close within `limit`.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut text = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => text.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&text).into_owned())
}

async fn request(address: std::net::SocketAddr, head: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("answered and closed")
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let (address, stats, _stop) = start(limits(), None).await;
    let mut silent = TcpStream::connect(address).await.unwrap();
    let started = Instant::now();
    assert!(until_closed(&mut silent, Duration::from_secs(3))
        .await
        .is_some());
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(350), "{took:?}");
    assert!(eventually(|| refused(&stats, Refusal::IdleTimeout) == 1).await);
    assert!(eventually(|| stats.counters().open == 0).await);
}

#[tokio::test]
async fn a_head_trickled_byte_by_byte_is_cut_at_the_header_timeout() {
    let (address, stats, _stop) = start(limits(), None).await;
    let mut slow = TcpStream::connect(address).await.unwrap();
    let started = Instant::now();
    // One byte per 50 ms: every byte resets an idle timer, never the header timer.
    let mut closed = false;
    for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()
    {
        if slow.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    if !closed {
        assert!(until_closed(&mut slow, Duration::from_secs(2))
            .await
            .is_some());
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(eventually(|| refused(&stats, Refusal::HeaderTimeout) == 1).await);
    assert_eq!(refused(&stats, Refusal::IdleTimeout), 0);
}

#[tokio::test]
async fn at_the_cap_a_new_connection_replaces_the_one_waiting_longest() {
    let (address, stats, _stop) = start(
        Limits {
            max_connections: 2,
            idle_timeout: Duration::from_secs(30),
            ..limits()
        },
        None,
    )
    .await;
    let mut oldest = TcpStream::connect(address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut newer = TcpStream::connect(address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let answer = request(
        address,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("metrics\n"), "{answer}");
    assert!(
        until_closed(&mut oldest, Duration::from_secs(1))
            .await
            .is_some(),
        "the longest waiting connection is closed"
    );
    assert!(
        until_closed(&mut newer, Duration::from_millis(200))
            .await
            .is_none(),
        "the newer one stays"
    );
    assert!(eventually(|| refused(&stats, Refusal::Evicted) == 1).await);
}

#[tokio::test]
async fn a_head_over_the_limit_is_answered_431_and_counted() {
    let (address, stats, _stop) = start(limits(), None).await;
    let big = "a".repeat(20_000);
    let answer = request(
        address,
        &format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"),
    )
    .await;
    // The answer may be lost to the reset of a socket closed with unread bytes.
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    assert!(eventually(|| refused(&stats, Refusal::HeadTooLarge) == 1).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_guards_everything_but_health() {
    let dir = std::env::temp_dir().join(format!("meshmark-guard-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("web.yml");
    let hash = bcrypt::hash("right", 4).unwrap();
    std::fs::write(&file, format!("basic_auth_users:\n  prometheus: {hash}\nhttp_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n")).unwrap();
    let web = Arc::new(WebConfigSource::open(&file).unwrap());
    let (address, stats, _stop) = start(limits(), Some(web)).await;
    let get = |path: &str, credentials: Option<&str>| {
        use base64::Engine as _;
        let auth = credentials
            .map(|c| {
                format!(
                    "Authorization: Basic {}\r\n",
                    base64::engine::general_purpose::STANDARD.encode(c)
                )
            })
            .unwrap_or_default();
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
    };
    let answer = request(address, &get("/metrics", None)).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{answer}"
    );
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("x-content-type-options: nosniff"),
        "{answer}"
    );
    for wrong in ["prometheus:wrong", "nobody:right", "prometheus", ""] {
        let answer = request(address, &get("/metrics", Some(wrong))).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{wrong}: {answer}");
    }
    let answer = request(address, &get("/metrics", Some("prometheus:right"))).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("metrics\n"),
        "{answer}"
    );
    // Remembered: the second login costs no bcrypt.
    let started = Instant::now();
    let answer = request(address, &get("/metrics", Some("prometheus:right"))).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(started.elapsed() < Duration::from_millis(500));
    let answer = request(address, &get("/healthz", None)).await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "health stays open: {answer}"
    );
    assert!(eventually(|| refused(&stats, Refusal::Unauthorized) == 5).await);

    // The file broken: new connections are refused, and counted.
    std::fs::write(&file, "basic_auth_users: [\n").unwrap();
    let mut stream = TcpStream::connect(address).await.unwrap();
    let _ = stream.write_all(get("/healthz", None).as_bytes()).await;
    assert_eq!(
        until_closed(&mut stream, Duration::from_secs(2))
            .await
            .as_deref(),
        Some("")
    );
    assert!(eventually(|| refused(&stats, Refusal::WebConfig) == 1).await);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn throttle_lets_one_through_and_counts_the_rest() {
    let throttle = Throttle::default();
    assert_eq!(throttle.allow(), Some(0));
    assert_eq!(throttle.allow(), None);
    assert_eq!(throttle.allow(), None);
    *throttle.last.lock().unwrap() = Some(Instant::now() - LOG_EVERY);
    assert_eq!(throttle.allow(), Some(2));
}

#[test]
fn docs_explain_every_refusal_reason() {
    let docs = include_str!("../../../../docs/metrics.md");
    for reason in Refusal::ALL {
        assert!(
            docs.contains(&format!("| `{}` |", reason.as_str())),
            "docs/metrics.md does not explain reason {}",
            reason.as_str()
        );
    }
}

#[test]
fn the_cap_leaves_room_for_the_agents_own_descriptors() {
    let mut rlimit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit it is given.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlimit) },
        0
    );
    let room = usize::try_from(rlimit.rlim_cur.saturating_sub(256).max(1)).unwrap();
    let asked = Limits {
        max_connections: usize::MAX,
        ..limits()
    };
    assert_eq!(crate::serve::fit_to_open_files(asked).max_connections, room);
    let small = Limits {
        max_connections: 3,
        ..limits()
    };
    assert_eq!(
        crate::serve::fit_to_open_files(small).max_connections,
        3.min(room)
    );
}
