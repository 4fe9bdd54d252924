//! Socket I/O on raw descriptors, so TCP, UDP and unix sockets share one byte-counting path and
//! every counted byte is a syscall's return value.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use anyhow::{ensure, Context, Result};

use super::WAIT_LIMIT;

/// Size of each send and of the receive buffer.
const CHUNK: usize = 64 * 1024;

/// Sends exactly `total` bytes in chunks; returns the sum of what `send` returned.
pub fn send_counted(fd: BorrowedFd, total: u64) -> Result<u64> {
    let payload = [0x5au8; CHUNK];
    let mut sent = 0;
    while sent < total {
        let len = usize::try_from(total - sent).map_or(CHUNK, |left| left.min(CHUNK));
        sent += send_all(fd, &payload[..len])?;
    }
    Ok(sent)
}

/// Sends all of `buf`, however many calls it takes; returns the sum of what `send` returned.
pub fn send_all(fd: BorrowedFd, buf: &[u8]) -> Result<u64> {
    let mut sent = 0;
    while sent < buf.len() {
        let n = send(fd, &buf[sent..])?;
        ensure!(n > 0, "send returned 0");
        sent += n;
    }
    Ok(sent as u64)
}

/// Receives until the peer shuts down its side; returns the sum of what `recv` returned.
pub fn recv_to_eof(fd: BorrowedFd) -> Result<u64> {
    recv_up_to(fd, u64::MAX)
}

/// Receives until `total` bytes arrived or the peer shut down its side, whichever is first;
/// returns the sum of what `recv` returned, so a message cut short shows as a smaller count.
pub fn recv_up_to(fd: BorrowedFd, total: u64) -> Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0;
    while received < total {
        let len = usize::try_from(total - received).map_or(CHUNK, |left| left.min(CHUNK));
        match recv(fd, &mut buf[..len], 0)? {
            0 => break,
            n => received += n as u64,
        }
    }
    Ok(received)
}

/// One `send` call (no SIGPIPE: a vanished peer is an error, not a dead workload).
pub fn send(fd: BorrowedFd, buf: &[u8]) -> Result<usize> {
    // SAFETY: buf is valid for reads of buf.len() bytes.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(n)
        .map_err(|_| io::Error::last_os_error())
        .context("send")
}

/// One `recv` call with `flags` (for example `MSG_PEEK`).
pub fn recv(fd: BorrowedFd, buf: &mut [u8], flags: libc::c_int) -> Result<usize> {
    // SAFETY: buf is valid for writes of buf.len() bytes.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    usize::try_from(n)
        .map_err(|_| io::Error::last_os_error())
        .context("recv")
}

/// Peeks at the first bytes waiting on `fd` without consuming them; at least one byte.
pub fn peek(fd: BorrowedFd) -> Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let n = recv(fd, &mut buf, libc::MSG_PEEK)?;
    ensure!(n > 0, "MSG_PEEK saw no data");
    Ok(n as u64)
}

/// Tells the peer no more data follows, so its `recv_to_eof` ends.
pub fn shutdown_write(fd: BorrowedFd) -> Result<()> {
    // SAFETY: plain syscall on a descriptor we hold.
    let rc = unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) };
    ensure!(rc == 0, "shutdown: {}", io::Error::last_os_error());
    Ok(())
}

/// Bounds every later send and receive on `fd` by [`WAIT_LIMIT`].
pub fn set_timeouts(fd: BorrowedFd) -> Result<()> {
    let limit = libc::timeval {
        tv_sec: WAIT_LIMIT.as_secs().try_into()?,
        tv_usec: 0,
    };
    for option in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: limit is a valid timeval and its size is passed along.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&limit as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        ensure!(rc == 0, "setsockopt: {}", io::Error::last_os_error());
    }
    Ok(())
}

/// Waits at most [`WAIT_LIMIT`] until at least one of `fds` is readable, or at its end (a
/// hang-up or an error reads too: `recv` then says what happened); tells which ones are.
pub fn wait_readable(fds: &[BorrowedFd]) -> Result<Vec<bool>> {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: polled holds polled.len() valid entries.
    let ready = unsafe {
        libc::poll(
            polled.as_mut_ptr(),
            polled.len() as libc::nfds_t,
            WAIT_LIMIT.as_millis() as libc::c_int,
        )
    };
    ensure!(
        ready > 0,
        "nothing to read within {WAIT_LIMIT:?} (poll returned {ready}: {})",
        io::Error::last_os_error()
    );
    Ok(polled.iter().map(|p| p.revents != 0).collect())
}

/// Accepts one connection on a listening socket, waiting at most [`WAIT_LIMIT`].
pub fn accept(listener: BorrowedFd) -> Result<OwnedFd> {
    wait_readable(&[listener]).context("no connection")?;
    // SAFETY: null address pointers are allowed when the peer address is not wanted.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    ensure!(fd >= 0, "accept: {}", io::Error::last_os_error());
    // SAFETY: accept4 returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Moves the calling thread into the network namespace `/run/netns/<name>` (made by `ip netns
/// add`). Call it before creating sockets or threads.
pub fn enter_netns(name: &str) -> Result<()> {
    let path = format!("/run/netns/{name}");
    let ns = File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: ns is an open namespace file; CLONE_NEWNET only switches the network namespace.
    let rc = unsafe { libc::setns(ns.as_fd().as_raw_fd(), libc::CLONE_NEWNET) };
    ensure!(rc == 0, "setns {path}: {}", io::Error::last_os_error());
    Ok(())
}

/// Runs `f` on a thread of its own inside network namespace `name`, leaving the caller's
/// namespace as it is.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter_netns(name)?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("a thread in network namespace {name} panicked"))?
    })
}
