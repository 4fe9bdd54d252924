//! The real parts of a lab pod: nginx as the application and haproxy as its sidecar, each
//! started inside its pod's network namespace and its own container cgroup, with configuration
//! files the lab writes. A part is stopped, and waited for, when it is dropped.

use std::ffi::CString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Port the application (mesh off) or the sidecar (mesh on) serves on the pod's address.
pub const POD_PORT: u16 = 80;
/// Port the application listens on, on the pod's loopback, behind the sidecar.
pub const APP_PORT: u16 = 8080;
/// Port of nginx's `stub_status` on the pod's loopback: its own count of requests, the
/// ground truth for the request turns meshmark counts.
pub const STATUS_PORT: u16 = 8081;
/// Bytes of every response body: a small API answer.
const BODY_BYTES: usize = 512;
/// How long a part may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(10);

/// A running part, stopped on drop.
pub struct Part {
    pub name: &'static str,
    child: Child,
}

impl Part {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        // SIGTERM lets nginx and haproxy stop their workers; SIGKILL only if they do not.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx serving [`BODY_BYTES`] on `listen` (`ADDR:PORT`), in `netns`, in the cgroup `cgroup`.
/// With `access_log` it logs every request, as nginx does by default (buffered, to the part's
/// directory): the application's disk writes, which the storage class compares with the
/// sidecar's.
pub fn nginx(
    netns: &str,
    cgroup: &Path,
    listen: &str,
    dir: &Path,
    access_log: bool,
) -> Result<Part> {
    let body = "m".repeat(BODY_BYTES);
    let d = dir.display();
    let access_log = if access_log {
        format!("{d}/access.log combined buffer=64k flush=1s")
    } else {
        "off".to_owned()
    };
    let conf = format!(
        "worker_processes 1;\n\
         daemon off;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/nginx-error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n\
         \x20 access_log {access_log};\n\
         \x20 client_body_temp_path {d}/body;\n\
         \x20 proxy_temp_path {d}/proxy;\n\
         \x20 fastcgi_temp_path {d}/fastcgi;\n\
         \x20 uwsgi_temp_path {d}/uwsgi;\n\
         \x20 scgi_temp_path {d}/scgi;\n\
         \x20 server {{ listen {listen}; location / {{ return 200 \"{body}\"; }} }}\n\
         \x20 server {{ listen 127.0.0.1:{STATUS_PORT}; location / {{ stub_status; }} }}\n\
         }}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).with_context(|| format!("writing {}", path.display()))?;
    let args = [
        "-p",
        &d.to_string(),
        "-e",
        &format!("{d}/nginx-error.log"),
        "-c",
    ]
    .map(String::from)
    .into_iter()
    .chain([path.display().to_string()]);
    start("nginx", netns, cgroup, "nginx", args)
}

/// haproxy relaying HTTP from `listen` to `upstream`, in `netns`, in the cgroup `cgroup`.
pub fn haproxy(
    netns: &str,
    cgroup: &Path,
    listen: &str,
    upstream: &str,
    dir: &Path,
) -> Result<Part> {
    let conf = format!(
        "global\n\
         \x20 maxconn 8192\n\
         \x20 nbthread 1\n\
         defaults\n\
         \x20 mode http\n\
         \x20 timeout connect 5s\n\
         \x20 timeout client 30s\n\
         \x20 timeout server 30s\n\
         frontend sidecar\n\
         \x20 bind {listen}\n\
         \x20 default_backend app\n\
         backend app\n\
         \x20 server app {upstream}\n"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf).with_context(|| format!("writing {}", path.display()))?;
    let args = ["-db", "-f"]
        .map(String::from)
        .into_iter()
        .chain([path.display().to_string()]);
    start("haproxy", netns, cgroup, "haproxy", args)
}

/// Starts `program` in `netns` through `ip netns exec`, after moving itself into `cgroup`
/// between fork and exec, so that every process it forks is born in the container.
fn start(
    name: &'static str,
    netns: &str,
    cgroup: &Path,
    program: &str,
    args: impl Iterator<Item = String>,
) -> Result<Part> {
    let procs = CString::new(cgroup.join("cgroup.procs").as_os_str().as_encoded_bytes())
        .context("cgroup path with a NUL")?;
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", netns, program])
        .args(args)
        .stdin(Stdio::null());
    // SAFETY: only async-signal-safe calls (open, write, close) on memory prepared before fork.
    unsafe {
        command.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // "0" moves the writing process itself.
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if written != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().with_context(|| {
        format!("starting {program} in {netns} (is it installed? cargo xtask setup)")
    })?;
    Ok(Part { name, child })
}

/// Waits until something accepts TCP connections on `addr:port` inside `netns`.
pub fn wait_listening(netns: &str, addr: &str, port: u16) -> Result<()> {
    let deadline = Instant::now() + START_LIMIT;
    let target = format!("{addr}:{port}");
    while Instant::now() < deadline {
        if crate::scenario::sock::in_netns(netns, || {
            std::net::TcpStream::connect_timeout(
                &target.parse().expect("an IPv4 address and port"),
                Duration::from_millis(200),
            )
            .is_ok()
        })? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listened on {target} in {netns} within {START_LIMIT:?}")
}

/// A directory for one pod's configuration and logs.
pub fn pod_dir(out: &Path, mode: &str, index: usize) -> Result<PathBuf> {
    let dir = out.join(format!("{mode}-pod{index}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
