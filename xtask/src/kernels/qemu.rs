//! Booting one kernel with the initramfs under QEMU's TCG emulation (KVM hangs in this VM), the
//! serial console on stdout. The console is saved line by line to a log file as it arrives, so a
//! hung guest still leaves its log; QEMU is killed at a deadline.

use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use crate::platform::Platform;

/// How QEMU emulates one architecture's machine.
pub struct Machine {
    pub qemu: &'static str,
    /// The Debian package that has `qemu`.
    pub package: &'static str,
    /// The machine and CPU.
    args: &'static [&'static str],
    /// The serial console's device in the guest.
    console: &'static str,
}

pub const X86_64: Machine = Machine {
    qemu: "qemu-system-x86_64",
    package: "qemu-system-x86",
    args: &["-cpu", "max"],
    console: "ttyS0",
};

/// `virt` with every CPU feature TCG has; Debian's arm64 vmlinuz is already an Image, which
/// `-kernel` boots as it is.
pub const AARCH64: Machine = Machine {
    qemu: "qemu-system-aarch64",
    package: "qemu-system-arm",
    args: &["-M", "virt", "-cpu", "max"],
    console: "ttyAMA0",
};

/// The machine of `platform`'s kernels.
pub fn machine(platform: &Platform) -> &'static Machine {
    match platform.arch {
        "aarch64" => &AARCH64,
        _ => &X86_64,
    }
}

/// The console line that tells the guest's userspace is running (see init.sh); firmware escapes
/// may precede it on its line.
const GUEST_UP: &str = "=== meshmark-guest-up ";

/// What one boot gave.
pub struct Boot {
    /// The whole console, `\r` removed.
    pub console: String,
    /// From starting QEMU to `/init`'s first line.
    pub to_userspace: Option<Duration>,
    /// From starting QEMU until it exited or was killed.
    pub total: Duration,
    /// QEMU was killed at the deadline.
    pub timed_out: bool,
    /// QEMU was killed because the guest printed nothing for [`STALL_LIMIT`]: the guest kernel
    /// was wedged (its init prints at least every `READY_LIMIT`), not slow.
    pub stalled: bool,
}

/// Silence after which a guest counts as wedged. The guest's init prints at least every 140 s
/// (the agent's 120 s ready limit plus a 20 s window), so this is well past anything slow.
pub const STALL_LIMIT: Duration = Duration::from_secs(200);

pub fn boot(
    machine: &Machine,
    vmlinuz: &Path,
    initramfs: &Path,
    log: &Path,
    deadline: Duration,
) -> Result<Boot> {
    let mut cmd = Command::new(machine.qemu);
    cmd.args(["-accel", "tcg"])
        .args(machine.args)
        .args(["-smp", "2", "-m", "1G"])
        .args(["-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initramfs)
        // loglevel=3: only kernel errors interleave with the results on the console; init
        // prints the tail of dmesg at the end. panic=-1 reboots at once, which -no-reboot ends.
        .arg("-append")
        .arg(format!("console={} panic=-1 loglevel=3", machine.console))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", crate::exec::show(&cmd)))?;
    let mut file = File::create(log).with_context(|| format!("creating {}", log.display()))?;

    // Lines arrive through a channel so that the deadline is checked while the guest is silent.
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().context("qemu stdout")?;
    let stderr = child.stderr.take().context("qemu stderr")?;
    for (stream, prefix) in [
        (Box::new(stdout) as Box<dyn std::io::Read + Send>, ""),
        (Box::new(stderr), "qemu stderr: "),
    ] {
        let tx = tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(stream).split(b'\n') {
                let Ok(line) = line else { break };
                let text = String::from_utf8_lossy(&line).replace('\r', "");
                if tx.send(format!("{prefix}{text}")).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);

    let mut console = String::new();
    let mut to_userspace = None;
    let mut timed_out = false;
    let mut stalled = false;
    loop {
        // A guest that never stops printing still meets the deadline.
        let left = deadline
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(1));
        let next = if start.elapsed() >= deadline {
            Err(mpsc::RecvTimeoutError::Timeout)
        } else {
            rx.recv_timeout(left.min(STALL_LIMIT))
        };
        match next {
            Ok(line) => {
                if to_userspace.is_none() && line.contains(GUEST_UP) {
                    to_userspace = Some(start.elapsed());
                }
                writeln!(file, "{line}")?;
                console.push_str(&line);
                console.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                stalled = start.elapsed() < deadline;
                let note = format!(
                    "xtask: killed QEMU after {} ({})",
                    crate::exec::secs(start.elapsed()),
                    if stalled {
                        "the guest printed nothing for the stall limit"
                    } else {
                        "deadline"
                    }
                );
                writeln!(file, "{note}")?;
                console.push_str(&note);
                console.push('\n');
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child.wait().context("waiting for qemu")?;
    if !timed_out && !status.success() {
        let note = format!("xtask: QEMU exited with {status}");
        writeln!(file, "{note}")?;
        console.push_str(&note);
        console.push('\n');
    }
    Ok(Boot {
        console,
        to_userspace,
        total: start.elapsed(),
        timed_out,
        stalled,
    })
}
