//! `cargo xtask bench`'s busy node: `meshmark-agent run` in its default mode while thousands of
//! processes and threads live on the node, read back from its own `/metrics`: the agent's CPU
//! per window and its resident memory.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    os::fd::{FromRawFd as _, OwnedFd},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};

/// Windows the agent is read over, after its first.
const WINDOWS: u32 = 4;
const WINDOW: Duration = Duration::from_secs(5);
/// `run`'s default window, `meshmark_agent::config::DEFAULT_WINDOW` (xtask does not link the
/// agent).
const DEFAULT_WINDOW: Duration = Duration::from_secs(15);

/// Starts `processes` processes of `threads_each` worker threads (each waits on a shared pipe),
/// runs the agent, reads its CPU and memory from `/metrics`, and reports them.
pub fn run(agent: &Path, workload: &Path, processes: u32, threads_each: u32) -> Result<()> {
    let crowd = Crowd::start(workload, processes, threads_each)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let lock = std::env::temp_dir().join(format!("meshmark-live-{}.lock", std::process::id()));
    std::fs::write(&lock, "").with_context(|| format!("creating {}", lock.display()))?;
    let mut child = Command::new(agent)
        .args(["run", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--window", &format!("{}s", WINDOW.as_secs())])
        // A lock of its own, so that agents of tests running meanwhile do not stop it.
        .arg("--lock-file")
        .arg(&lock)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting meshmark-agent run")?;
    let outcome = measure(port);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait()?;
    let _ = std::fs::remove_file(&lock);
    drop(crowd);
    let (cpu_per_window, rss, windows) = outcome?;
    ensure!(status.success(), "meshmark-agent run ended with {status}");
    println!(
        "\n## A busy node: {processes} live processes, {} threads, meshmark run (default mode, \
         {} s windows)\n",
        processes * (threads_each + 1),
        WINDOW.as_secs()
    );
    println!(
        "- agent CPU per window: {:.1} ms over {windows} windows, {:.2}% of one core (target: \
         under 1%)",
        cpu_per_window * 1e3,
        cpu_per_window / WINDOW.as_secs_f64() * 100.0
    );
    // The work of a window is reading the table and /proc for every process, whatever the
    // window's length, so at the default length the share is the same work over 15 s.
    println!(
        "- the same work once per {} s window (run's default): {:.2}% of one core",
        DEFAULT_WINDOW.as_secs(),
        cpu_per_window / DEFAULT_WINDOW.as_secs_f64() * 100.0
    );
    println!(
        "- agent resident memory: {:.1} MiB (target: under 50 MiB)",
        rss / f64::from(1 << 20)
    );
    Ok(())
}

/// The agent's CPU per window over [`WINDOWS`] windows after its first, its resident memory at
/// the end, and the windows counted.
fn measure(port: u16) -> Result<(f64, f64, f64)> {
    let deadline = Instant::now() + WINDOW * (WINDOWS + 6);
    let first = loop {
        ensure!(
            Instant::now() < deadline,
            "the agent scored no window in time"
        );
        std::thread::sleep(Duration::from_millis(500));
        if let Ok(text) = scrape(port) {
            if metric(&text, "meshmark_windows_total").is_some_and(|w| w >= 1.0) {
                break text;
            }
        }
    };
    let windows_at = |text: &str| metric(text, "meshmark_windows_total").unwrap_or(0.0);
    let cpu_at = |text: &str| metric(text, "meshmark_agent_cpu_seconds_total").unwrap_or(0.0);
    let last = loop {
        ensure!(
            Instant::now() < deadline,
            "the agent stopped scoring windows"
        );
        std::thread::sleep(Duration::from_millis(500));
        let text = scrape(port)?;
        if windows_at(&text) >= windows_at(&first) + f64::from(WINDOWS) {
            break text;
        }
    };
    let windows = windows_at(&last) - windows_at(&first);
    let rss = metric(&last, "meshmark_agent_resident_memory_bytes").context("no RSS metric")?;
    Ok(((cpu_at(&last) - cpu_at(&first)) / windows, rss, windows))
}

/// The first sample of `name` in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// `GET /metrics` on loopback.
fn scrape(port: u16) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("no HTTP response");
    };
    ensure!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    Ok(body.to_string())
}

/// Many processes, all reading one pipe: closing its write end lets every one of them end.
struct Crowd {
    children: Vec<Child>,
    release: Option<OwnedFd>,
}

impl Crowd {
    fn start(workload: &Path, processes: u32, threads_each: u32) -> Result<Crowd> {
        let mut fds = [0; 2];
        // SAFETY: pipe fills two fds, which are then owned here.
        ensure!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == 0,
            "pipe failed"
        );
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut crowd = Crowd {
            children: Vec::new(),
            release: Some(write),
        };
        for _ in 0..processes {
            let child = Command::new(workload)
                .args([
                    "threads",
                    "--threads",
                    &threads_each.to_string(),
                    "--wait-after",
                ])
                .stdin(Stdio::from(read.try_clone()?))
                .stdout(Stdio::null())
                .spawn()
                .context("starting a crowd process")?;
            crowd.children.push(child);
        }
        Ok(crowd)
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        drop(self.release.take());
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}
