//! What meshmark's two benches share: `cargo xtask bench` (the syscall storm, in xtask) and the
//! mesh lab's throughput bench (`mm-lab --bench-rounds`, in the tests crate). Both measure a load
//! while an observer watches it: the agent in one mode or another, or bpftrace running the same
//! signals. An observer is a child process that is started, waited for until it says it watches,
//! and stopped by signals; [`Watcher`] is that, [`bpftrace`] starts the bpftrace one and
//! [`Tracefs`] mounts what bpftrace needs.
//!
//! A crate of its own because xtask builds before bpf-linker exists, so it can depend neither on
//! the tests crate nor on the agent (whose build script builds the eBPF object).

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};

/// The bpftrace program collecting what meshmark collects, the way people write it: hash maps
/// keyed by pid and tid, `hist()` for latency. One file for the storm's bench and the lab's.
pub const BPFTRACE_SCRIPT: &str = include_str!("../meshmark-equivalent.bt");

/// The line the script prints from BEGIN, which bpftrace runs once every probe is attached.
const BPFTRACE_ATTACHED: &str = "meshmark-equivalent: attached";

/// How long bpftrace gets after each signal before the next: it sometimes sits in epoll_wait
/// past a SIGINT (seen with 0.17 on 6.18), and a second one, then a kill, keeps the bench going.
const BPFTRACE_GRACE: Duration = Duration::from_secs(10);

/// What the agent prints on stderr once it watches, by command.
pub mod agent_says {
    /// `meshmark-agent attach`: its programs are attached.
    pub const ATTACHED: &str = "attached";
    /// `meshmark-agent run`: attached and serving.
    pub const SERVING: &str = "attached;";
    /// `meshmark-agent profile`: the window is open.
    pub const PROFILING: &str = "profiling for";
}

/// Lines of what a child said before it was ready that are kept for the error when it ends
/// instead: enough to show why, bounded whatever it prints.
const SAID_LINES: usize = 40;

/// Which of a child's outputs says that it is ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a watcher is stopped.
#[derive(Clone, Copy, Debug)]
pub struct Stop {
    /// Sent in turn, each followed by up to `grace` for the child to end; after the last one,
    /// the child is waited for however long it takes.
    pub signals: &'static [libc::c_int],
    pub grace: Duration,
    /// Whether an exit other than 0 is an error.
    pub must_succeed: bool,
}

impl Stop {
    /// SIGINT, which ends the agent's `attach` and `profile` early, then the exit, which must be
    /// a success.
    pub const INTERRUPT: Stop = Stop {
        signals: &[libc::SIGINT],
        grace: Duration::ZERO,
        must_succeed: true,
    };
    /// SIGTERM, how Kubernetes stops the agent's `run`, then the exit, which must be a success.
    pub const TERMINATE: Stop = Stop {
        signals: &[libc::SIGTERM],
        grace: Duration::ZERO,
        must_succeed: true,
    };
}

/// A child that watches while something is measured. Dropped without [`Watcher::stop`] (a bench
/// failing half-way), it is killed and reaped, so nothing stays attached.
pub struct Watcher {
    what: String,
    child: Option<Child>,
    stop: Stop,
}

impl Watcher {
    /// Spawns `command` with `stream` piped and reads that stream line by line until a line
    /// contains `ready`; the rest of it is then read in a thread until the child closes it, so
    /// the child never blocks or fails on a write, and each line is echoed to stderr after
    /// `echo` if that is given (also before `ready`). The other streams are as `command` sets
    /// them. `what` names the child in errors. If the child ends before saying it is ready, the
    /// error has its exit status and its last lines.
    pub fn start(
        what: &str,
        command: &mut Command,
        stream: Stream,
        ready: &str,
        echo: Option<&str>,
        stop: Stop,
    ) -> Result<Watcher> {
        match stream {
            Stream::Stdout => command.stdout(Stdio::piped()),
            Stream::Stderr => command.stderr(Stdio::piped()),
        };
        let child = command
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let mut watcher = Watcher {
            what: what.to_owned(),
            child: Some(child),
            stop,
        };
        let child = watcher.child_mut();
        let output: Box<dyn Read + Send> = match stream {
            Stream::Stdout => Box::new(child.stdout.take().context("no stdout pipe")?),
            Stream::Stderr => Box::new(child.stderr.take().context("no stderr pipe")?),
        };
        let mut lines = BufReader::new(output).lines();
        let mut said = VecDeque::new();
        let echo = echo.map(str::to_owned);
        for line in lines.by_ref() {
            let line = line.with_context(|| format!("reading what {what} says"))?;
            if let Some(prefix) = &echo {
                eprintln!("{prefix}{line}");
            }
            if line.contains(ready) {
                std::thread::spawn(move || {
                    for line in lines.map_while(Result::ok) {
                        if let Some(prefix) = &echo {
                            eprintln!("{prefix}{line}");
                        }
                    }
                });
                return Ok(watcher);
            }
            if said.len() == SAID_LINES {
                said.pop_front();
            }
            said.push_back(line);
        }
        let status = watcher.child_mut().wait()?;
        let said = Vec::from(said).join("\n");
        bail!("{what} ended with {status} before it was ready; it said:\n{said}")
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the child is kept until the watcher is consumed")
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        let pid = libc::pid_t::try_from(self.id()).context("a pid that does not fit pid_t")?;
        // SAFETY: kill has no memory-safety preconditions; the pid is our own unreaped child.
        let sent = unsafe { libc::kill(pid, signal) };
        ensure!(
            sent == 0,
            "signalling {}: {}",
            self.what,
            std::io::Error::last_os_error()
        );
        Ok(())
    }

    /// Waits up to `limit` for the child to end on its own; its exit status, or `None` if it is
    /// still running.
    pub fn wait_for(&mut self, limit: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + limit;
        loop {
            let Watcher { what, child, .. } = self;
            let child = child
                .as_mut()
                .expect("the child is kept until the watcher is consumed");
            if let Some(status) = child
                .try_wait()
                .with_context(|| format!("waiting for {what}"))?
            {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the child as its [`Stop`] says and returns its exit status.
    pub fn stop(mut self) -> Result<ExitStatus> {
        let Stop {
            signals,
            grace,
            must_succeed,
        } = self.stop;
        let mut ended = None;
        for &signal in signals {
            self.signal(signal)?;
            ended = self.wait_for(grace)?;
            if ended.is_some() {
                break;
            }
            if !grace.is_zero() {
                eprintln!(
                    "bench: {} still running {} s after signal {signal}",
                    self.what,
                    grace.as_secs()
                );
            }
        }
        let status = match ended {
            Some(status) => status,
            None => self
                .child_mut()
                .wait()
                .with_context(|| format!("waiting for {}", self.what))?,
        };
        self.child = None;
        ensure!(
            !must_succeed || status.success(),
            "{} ended with {status}",
            self.what
        );
        Ok(status)
    }

    /// Sends the first of its stop signals and returns what the child printed on the outputs
    /// that were piped and not read here; an exit other than 0 is an error.
    pub fn stop_with_output(mut self) -> Result<Output> {
        if let Some(&signal) = self.stop.signals.first() {
            self.signal(signal)?;
        }
        let child = self.child.take().expect("the child is kept until now");
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for {}", self.what))?;
        ensure!(
            out.status.success(),
            "{} ended with {}",
            self.what,
            out.status
        );
        Ok(out)
    }

    /// The child itself, to be reaped by the caller (with `wait4`, say); it is no longer killed
    /// on drop.
    pub fn into_child(mut self) -> Child {
        self.child.take().expect("the child is kept until now")
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Starts bpftrace on `script` (a file holding [`BPFTRACE_SCRIPT`]) and waits until every probe is
/// attached: a SIGINT that arrives while bpftrace is still attaching is lost and leaves it
/// running. What it prints after (its maps, at exit) is read and dropped.
pub fn bpftrace(script: &Path) -> Result<Watcher> {
    Watcher::start(
        "bpftrace",
        Command::new("bpftrace").arg(script).stderr(Stdio::null()),
        Stream::Stdout,
        BPFTRACE_ATTACHED,
        None,
        Stop {
            signals: &[libc::SIGINT, libc::SIGINT, libc::SIGKILL],
            grace: BPFTRACE_GRACE,
            must_succeed: false,
        },
    )
    .context("starting bpftrace (is it installed? cargo xtask setup)")
}

/// Writes [`BPFTRACE_SCRIPT`] into `dir` and returns its path.
pub fn write_bpftrace_script(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("meshmark-equivalent.bt");
    std::fs::write(&path, BPFTRACE_SCRIPT)
        .with_context(|| format!("writing the bpftrace script {}", path.display()))?;
    Ok(path)
}

/// tracefs at /sys/kernel/tracing, which bpftrace's tracepoints need: mounted for the bench if it
/// was not, and unmounted after.
pub struct Tracefs {
    mounted_here: bool,
}

impl Tracefs {
    const DIR: &'static str = "/sys/kernel/tracing";

    pub fn mount() -> Result<Tracefs> {
        if Path::new(Self::DIR).join("events").is_dir() {
            return Ok(Tracefs {
                mounted_here: false,
            });
        }
        let status = Command::new("mount")
            .args(["-t", "tracefs", "tracefs", Self::DIR])
            .status()
            .context("mounting tracefs")?;
        ensure!(
            status.success(),
            "mounting tracefs at {} failed: {status}",
            Self::DIR
        );
        Ok(Tracefs { mounted_here: true })
    }
}

impl Drop for Tracefs {
    fn drop(&mut self) {
        if self.mounted_here {
            let _ = Command::new("umount").arg(Self::DIR).status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sh -c script` watched until it says `ready` on `stream`; its other output is piped
    /// (stdout, for [`Watcher::stop_with_output`]) or dropped (stderr).
    fn shell(script: &str, stream: Stream, stop: Stop) -> Result<Watcher> {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        match stream {
            Stream::Stdout => command.stderr(Stdio::null()),
            Stream::Stderr => command.stdout(Stdio::piped()),
        };
        Watcher::start("a shell", &mut command, stream, "ready", None, stop)
    }

    #[test]
    fn waits_for_the_ready_line_then_stops_by_its_signals() {
        // Ready on stderr after two other lines; then it waits until a signal ends it.
        let script = "echo one >&2; echo two >&2; echo 'now ready' >&2; exec sleep 30";
        let watcher = shell(script, Stream::Stderr, Stop::TERMINATE).unwrap();
        let started = Instant::now();
        let error = watcher.stop().unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(10));
        // sleep dies of the SIGTERM: not a success, which an agent's stop requires.
        assert!(error.contains("a shell ended with"), "{error}");
    }

    #[test]
    fn a_child_that_ends_unready_is_an_error_with_its_last_lines() {
        let many: String = (0..100).map(|i| format!("echo line{i};")).collect();
        let script = format!("{many} exit 3");
        let error = shell(&script, Stream::Stdout, Stop::INTERRUPT)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("exit status: 3"), "{error}");
        assert!(
            error.contains("line99") && error.contains("line60"),
            "{error}"
        );
        assert!(
            !error.contains("line59"),
            "bounded to the last lines: {error}"
        );
    }

    #[test]
    fn signals_escalate_until_the_child_ends() {
        // Ignores SIGINT: the first two signals do nothing, the kill ends it.
        let stubborn = Stop {
            signals: &[libc::SIGINT, libc::SIGINT, libc::SIGKILL],
            grace: Duration::from_millis(200),
            must_succeed: false,
        };
        let script = "trap '' INT; echo ready; while :; do sleep 0.05; done";
        let watcher = shell(script, Stream::Stdout, stubborn).unwrap();
        let started = Instant::now();
        let status = watcher.stop().unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(started.elapsed() >= Duration::from_millis(400));
    }

    #[test]
    fn stop_with_output_returns_what_was_not_read() {
        let script = "trap 'echo stats; exit 0' INT; echo ready >&2; while :; do sleep 0.05; done";
        let watcher = shell(script, Stream::Stderr, Stop::INTERRUPT).unwrap();
        let out = watcher.stop_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "stats\n");
    }

    #[test]
    fn a_dropped_watcher_is_killed_and_reaped() {
        let watcher = shell("echo ready; exec sleep 30", Stream::Stdout, Stop::INTERRUPT).unwrap();
        let pid = libc::pid_t::try_from(watcher.id()).unwrap();
        drop(watcher);
        // SAFETY: signal 0 only asks whether the pid exists; it was our child, now reaped.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "pid {pid} still exists");
    }
}
