//! `cargo xtask kernels`, also the last step of `cargo xtask test`: the kernel matrix. Boots each
//! Debian cloud kernel of [`expect::MATRIX`], x86_64 and arm64, under QEMU with an initramfs
//! holding the static agent and workloads built for its architecture, runs profile windows around the workloads in the guest (one with the hooks
//! the agent chooses, then one per forced socket-byte fallback), and checks each profile against
//! the workloads' ground truth and the expected hooks, from the serial console. Each console is
//! kept in `<target>/kernel-matrix/<package>.console.log`. The architectures run side by side
//! (one QEMU each, their kernels one after another): the matrix then takes about as long as its
//! slower architecture.
//!
//! Parts: `download` (kernels from apt, cached), `binaries` (static musl builds), `guest` and
//! `cpio` (the init script and initramfs), `qemu` (booting, the console), `console` (reading
//! results back), `checks` (the verdicts), `expect` (the matrix and its hooks).
//!
//! With `MESHMARK_REQUIRE_BPF=1` (CI) a missing piece (no QEMU, no busybox, a kernel that cannot
//! be downloaded) fails the run; otherwise the matrix, or that kernel, is skipped with the reason.

mod binaries;
mod checks;
mod console;
mod cpio;
mod download;
mod expect;
mod guest;
mod qemu;

use std::{
    fs,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::{exec, platform::PLATFORMS, setup, workspace::Workspace};

/// Each profile window in the guest. Under TCG the workloads took 4.0 to 6.5 s with the other
/// engineers' builds running: three times that leaves room for a busier host.
const WINDOW: Duration = Duration::from_secs(20);
/// Longest wait for the agent to load its programs and start a window (BTF parsing and the
/// verifier are slow under emulation: 1 to 13 s measured).
const READY_LIMIT: Duration = Duration::from_secs(120);
/// Boot, shutdown and the console's output on top of the above per window (and `run`'s windows
/// after it, `guest::serve_limit`), before QEMU is killed.
const BOOT_MARGIN: Duration = Duration::from_secs(60);

/// `cargo xtask kernels`: set-up, then the matrix alone.
pub fn run(ws: &Workspace) -> Result<()> {
    setup::run(ws, setup::Purpose::Kernels)?;
    matrix(ws)
}

/// One kernel's outcome, for the summary.
struct Outcome {
    series: String,
    package: String,
    result: Result<Timing, String>,
}

/// A kernel that passed: how long it took, how much was checked.
struct Timing {
    to_userspace: Option<Duration>,
    total: Duration,
    checks: usize,
    /// Each window as `<run>: <hooks>`.
    windows: Vec<String>,
}

/// The matrix: every kernel, then a summary; fails if any kernel failed (or, with
/// `MESHMARK_REQUIRE_BPF=1`, could not be run).
pub fn matrix(ws: &Workspace) -> Result<()> {
    let start = Instant::now();
    let required = std::env::var("MESHMARK_REQUIRE_BPF").is_ok_and(|v| v == "1");
    if let Some(reason) = missing_tools() {
        return skip(required, &reason);
    }
    let out_dir = ws.target_dir().join("kernel-matrix");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let mut kernels = Vec::new();
    let mut skipped = Vec::new();
    for series in expect::MATRIX {
        match download::ensure(ws, series) {
            Ok(kernel) => kernels.push((series, kernel)),
            Err(error) => {
                skip(
                    required,
                    &format!("kernel {}: no kernel to boot: {error:#}", series.label()),
                )?;
                skipped.push(series.label());
            }
        }
    }
    if kernels.is_empty() {
        return Ok(());
    }

    // Builds take the cargo lock one at a time; the guests then run one architecture per thread.
    let mut lanes = Vec::new();
    for platform in PLATFORMS {
        let mine: Vec<_> = kernels
            .iter()
            .filter(|(series, _)| series.platform.arch == platform.arch)
            .collect();
        if !mine.is_empty() {
            lanes.push((binaries::build(ws, platform)?, mine));
        }
    }
    let mut outcomes = Vec::new();
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = lanes
            .iter()
            .map(|(binaries, mine)| {
                let out_dir = &out_dir;
                scope.spawn(move || -> Result<Vec<Outcome>> {
                    let mut outcomes = Vec::new();
                    for (series, kernel) in mine {
                        let initramfs = out_dir.join(format!("{}.initramfs.cpio", kernel.package));
                        let init = guest::init_script(series.runs, WINDOW, READY_LIMIT);
                        guest::write_initramfs(&initramfs, &init, binaries)?;
                        let log = out_dir.join(format!("{}.console.log", kernel.package));
                        let result = one_kernel(series, kernel, &initramfs, &log)?;
                        outcomes.push(Outcome {
                            series: series.label(),
                            package: kernel.package.clone(),
                            result,
                        });
                    }
                    Ok(outcomes)
                })
            })
            .collect();
        for handle in handles {
            let lane = handle
                .join()
                .map_err(|_| anyhow::anyhow!("a kernel-matrix thread panicked"))??;
            outcomes.extend(lane);
        }
        Ok(())
    })?;

    eprintln!("kernels: summary");
    for o in &outcomes {
        match &o.result {
            Ok(t) => eprintln!(
                "kernels:   {} {}: passed {} checks in {} windows ({}); userspace after {}, \
                 all done in {}",
                o.series,
                o.package,
                t.checks,
                t.windows.len(),
                t.windows.join(", "),
                t.to_userspace.map_or("-".into(), exec::secs),
                exec::secs(t.total)
            ),
            Err(e) => eprintln!("kernels:   {} {}: FAILED: {e}", o.series, o.package),
        }
    }
    for name in &skipped {
        eprintln!("kernels:   {name}: SKIPPED (no kernel to boot, see above)");
    }
    eprintln!(
        "kernels: the matrix took {} in all",
        exec::secs(start.elapsed())
    );
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.result.is_err())
        .map(|o| o.series.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("the kernel matrix failed on {}", failed.join(", "));
    }
    Ok(())
}

/// The faulting kernel-text address of an `Oops: int3` on the guest's console (x86's text
/// patching plants int3 while it rewrites a jump), unless a BPF program faulted.
fn patching_breakpoint_oops(console: &str) -> Option<String> {
    let at = console.find("Oops: int3")?;
    let rip = console[at..]
        .lines()
        .find(|line| line.contains("RIP: 0010:"))?;
    let site = rip.split("RIP: 0010:").nth(1)?.trim().to_owned();
    (!site.starts_with("bpf_prog")).then_some(site)
}

/// Boots one kernel and checks it; Err(summary) when a check failed.
fn one_kernel(
    series: &expect::Series,
    kernel: &download::Kernel,
    initramfs: &Path,
    log: &Path,
) -> Result<Result<Timing, String>> {
    eprintln!(
        "kernels: {}: booting {} under QEMU (TCG) with {} ({} MiB), {} profile windows of {} s...",
        series.label(),
        kernel.package,
        initramfs.display(),
        fs::metadata(initramfs)?.len() >> 20,
        series.runs.len(),
        WINDOW.as_secs()
    );
    let runs = u32::try_from(series.runs.len())?;
    // One serving, after the window without forced hooks.
    let deadline = BOOT_MARGIN + (WINDOW + READY_LIMIT) * runs + guest::serve_limit(READY_LIMIT);
    let machine = qemu::machine(series.platform);
    let mut boot = qemu::boot(machine, &kernel.vmlinuz, initramfs, log, deadline)?;
    // A wedged guest (seen once in several runs: 6.1 x86_64 silent from the start of a window
    // while another guest emulated beside it) is the emulator's, not the agent's: the agent's
    // own hangs end at the guest's ready limit, which prints. Boot it once more, and say so.
    if boot.stalled {
        let first = log.with_extension("first-boot.log");
        fs::rename(log, &first)?;
        eprintln!(
            "kernels: {}: the guest printed nothing for {} and was killed (wedged under \
             emulation; its console is {}); booting it once more",
            series.label(),
            exec::secs(qemu::STALL_LIMIT),
            first.display()
        );
        boot = qemu::boot(machine, &kernel.vmlinuz, initramfs, log, deadline)?;
    } else if let Some(rip) = patching_breakpoint_oops(&boot.console) {
        // Seen once in several runs: 6.12 x86_64 died on an int3 at the sys_exit tracepoint's
        // patched jump, in kernel text, while `run` attached its programs again; no BPF
        // program was on the stack's top. A breakpoint the guest's own text patching left is
        // the emulator's race, not the agent's; boot once more, and say so. A real fault of
        // ours would come back.
        let first = log.with_extension("first-boot.log");
        fs::rename(log, &first)?;
        eprintln!(
            "kernels: {}: the guest kernel died on a text-patching breakpoint ({rip}; its \
             console is {}); booting it once more",
            series.label(),
            first.display()
        );
        boot = qemu::boot(machine, &kernel.vmlinuz, initramfs, log, deadline)?;
    }
    let guest = console::parse(&boot.console);
    let checks = checks::run(&guest, series.runs, WINDOW);
    for c in &checks.0 {
        let verdict = if c.passed { "ok  " } else { "FAIL" };
        eprintln!(
            "kernels: {} {verdict} {}: {}",
            series.label(),
            c.what,
            c.detail
        );
    }
    let timing = Timing {
        to_userspace: boot.to_userspace,
        total: boot.total,
        checks: checks.0.len(),
        windows: series
            .runs
            .iter()
            .map(|r| {
                let hooks: Vec<String> = r
                    .hooks
                    .by_signal()
                    .iter()
                    .map(|(s, h)| format!("{s}={h}"))
                    .collect();
                format!("{}: {}", r.name, hooks.join(" "))
            })
            .collect(),
    };
    // The guest's own clock: where the time goes under emulation.
    let mut clock = guest.up_at.map_or(String::new(), |up| {
        format!("; guest clock: /init at {up:.1} s")
    });
    for (name, w) in &guest.windows {
        if let (Some(ready), Some(done), Some(agent)) =
            (w.ready_at, w.workloads_done_at, w.agent_done_at)
        {
            clock.push_str(&format!(
                "; {name}: agent ready at {ready:.1} s, workloads took {:.1} s of the {} s \
                 window, agent done at {agent:.1} s",
                done - ready,
                WINDOW.as_secs()
            ));
        }
    }
    eprintln!(
        "kernels: {}: {} (guest {}): userspace after {}, all done in {}{clock}{}",
        series.label(),
        kernel.package,
        guest.release.as_deref().unwrap_or("never reached /init"),
        timing.to_userspace.map_or("-".into(), exec::secs),
        exec::secs(timing.total),
        if boot.timed_out {
            "; QEMU was killed at the deadline"
        } else {
            ""
        },
    );
    let failed: Vec<String> = checks
        .failed()
        .map(|c| format!("{}: {}", c.what, c.detail))
        .collect();
    if failed.is_empty() {
        return Ok(Ok(timing));
    }
    eprintln!(
        "kernels: FAILED on kernel {} ({}): {} of {} checks; the full console log is {}",
        series.label(),
        kernel.package,
        failed.len(),
        checks.0.len(),
        log.display()
    );
    for f in &failed {
        eprintln!("kernels:   {f}");
    }
    Ok(Err(format!(
        "{} of {} checks failed (first: {}); console log {}",
        failed.len(),
        checks.0.len(),
        failed[0],
        log.display()
    )))
}

/// QEMU for each architecture of the matrix and the host's static busybox, or why not.
fn missing_tools() -> Option<String> {
    for platform in PLATFORMS {
        let machine = qemu::machine(platform);
        if Command::new(machine.qemu)
            .arg("--version")
            .output()
            .is_err()
        {
            return Some(format!(
                "{} is not installed (Debian package {}; `cargo xtask setup` installs it as root)",
                machine.qemu, machine.package
            ));
        }
    }
    let busybox = Path::new(guest::BUSYBOX);
    match binaries::has_interpreter(busybox) {
        Ok(false) => None,
        Ok(true) => Some(format!(
            "{} is dynamically linked (Debian package busybox-static replaces it with a static one)",
            guest::BUSYBOX
        )),
        Err(_) => Some(format!(
            "no {} (Debian package busybox-static)",
            guest::BUSYBOX
        )),
    }
}

/// A missing piece: fatal when BPF tests are required, else skipped loudly.
fn skip(required: bool, reason: &str) -> Result<()> {
    if required {
        bail!("kernel matrix: {reason}; MESHMARK_REQUIRE_BPF=1 does not allow skipping");
    }
    eprintln!("kernels: SKIPPED: {reason}");
    Ok(())
}

#[cfg(test)]
mod tests {

    /// The console of the 6.12 guest that died, cut to its lines that matter.
    const INT3_OOPS: &str = "[   33.892678] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI
[   33.895448] RIP: 0010:syscall_exit_to_user_mode_prepare+0xe1/0x170
[   33.900795]  ? bpf_prog_82a5d2a59d77c1f6_sys_exit+0x1b0/0x2c7
[   33.906081] RIP: 0033:0x7fe3653da3e6
[   33.907976] Kernel panic - not syncing: Fatal exception in interrupt";

    #[test]
    fn a_text_patching_breakpoint_is_told_from_a_fault_of_ours() {
        assert_eq!(
            patching_breakpoint_oops(INT3_OOPS).as_deref(),
            Some("syscall_exit_to_user_mode_prepare+0xe1/0x170")
        );
        let ours = INT3_OOPS.replace(
            "syscall_exit_to_user_mode_prepare+0xe1/0x170",
            "bpf_prog_82a5d2a59d77c1f6_sys_exit+0x1b0/0x2c7",
        );
        assert_eq!(patching_breakpoint_oops(&ours), None);
        let other = INT3_OOPS.replace("Oops: int3", "Oops: general protection fault");
        assert_eq!(patching_breakpoint_oops(&other), None);
    }

    use super::*;

    #[test]
    fn a_missing_piece_fails_only_when_required() {
        assert!(skip(false, "no qemu").is_ok());
        let error = skip(true, "no qemu").unwrap_err().to_string();
        assert!(error.contains("no qemu") && error.contains("MESHMARK_REQUIRE_BPF=1"));
    }
}
