//! Checks that run before anything is loaded, so that a missing privilege or kernel feature
//! gives one clear message with the fix instead of an errno from deep inside a load.

use std::{fmt, fs, path::Path};

use super::hooks::{candidates, Alternative, Signal};
use meshmark_btf::Btf;

/// Where the kernel publishes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// A reason the profiler cannot run here; its `Display` says what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreflightError {
    /// The process lacks capabilities (names of the missing ones).
    MissingCapabilities {
        missing: Vec<&'static str>,
        root: bool,
    },
    /// The kernel publishes no BTF.
    NoBtf { detail: String },
    /// Signals for which the kernel has none of the hooks: one line per signal, saying what each
    /// alternative lacks.
    MissingHooks(Vec<String>),
    /// The hook `--hook` asked for is not in this kernel.
    HookUnavailable(String),
    /// The kernel listed hooks for a signal but refused every one at load or attach.
    HooksRefused {
        signal: String,
        refusals: Vec<String>,
    },
}

impl fmt::Display for PreflightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreflightError::MissingCapabilities { missing, root } => {
                write!(f, "missing capabilities {}", missing.join(", "))?;
                if *root {
                    write!(
                        f,
                        ".\n  Running as root with a reduced capability set (container or setpriv?): \
                         grant CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN on kernels before 5.8), \
                         e.g. securityContext.capabilities.add: [BPF, PERFMON] or privileged: true."
                    )
                } else {
                    write!(
                        f,
                        ".\n  Run it as root (sudo meshmark-agent ...) or give the binary the \
                         capabilities: sudo setcap cap_bpf,cap_perfmon+ep $(which meshmark-agent)"
                    )
                }
            }
            PreflightError::NoBtf { detail } => write!(
                f,
                "the kernel publishes no BTF ({detail}).\n  meshmark attaches BTF tracepoints: \
                 it needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (standard on current \
                 distribution kernels; check that {VMLINUX_BTF} exists)."
            ),
            PreflightError::HookUnavailable(why) => write!(
                f,
                "{why}.\n  Leave --hook out to use the best hook the kernel has (the profile's \
                 `hooks` says which)."
            ),
            PreflightError::HooksRefused { signal, refusals } => write!(
                f,
                "the kernel refused every hook for {signal}:\n  {}\n  \
                 Its BTF lists them, but loading or attaching failed: kprobes or BPF \
                 trampolines (fexit) may be disabled in this kernel, or lockdown may forbid \
                 them; see docs/how-it-measures.md for the hooks of each signal.",
                refusals.join("\n  ")
            ),
            PreflightError::MissingHooks(lines) => write!(
                f,
                "this kernel has none of the hooks for {} signal(s):\n  {}\n  \
                 meshmark needs Linux 5.15 or later built with BTF (CONFIG_DEBUG_INFO_BTF=y); \
                 on an older or trimmed kernel, upgrade it.",
                lines.len(),
                lines.join("\n  ")
            ),
        }
    }
}

impl std::error::Error for PreflightError {}

/// Effective capabilities of this process, from `/proc/self/status`.
fn effective_capabilities() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| parse_cap_eff(&status))
        .unwrap_or(0)
}

/// The `CapEff:` mask of a `/proc/<pid>/status` text.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
}

/// Capabilities missing from `cap_eff` for loading tracing programs: CAP_BPF with CAP_PERFMON,
/// or CAP_SYS_ADMIN, which covers both on every kernel.
pub fn missing_capabilities(cap_eff: u64) -> Vec<&'static str> {
    let has = |cap: u32| cap_eff & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) {
        return Vec::new();
    }
    [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|&(cap, _)| !has(cap))
        .map(|(_, name)| name)
        .collect()
}

/// The BTF and, per signal, the hooks the kernel has, best first.
pub type Checked<'s> = (Btf, Vec<(&'s Signal, Vec<&'s Alternative>)>);

/// Runs the privilege check, then reads the kernel's BTF and picks, for every signal, the hooks
/// the kernel has. Returns the parsed BTF for the loader to take offsets from.
pub fn check(signals: &[Signal]) -> Result<Checked<'_>, PreflightError> {
    let missing = missing_capabilities(effective_capabilities());
    if !missing.is_empty() {
        let root = unsafe { libc::geteuid() } == 0;
        return Err(PreflightError::MissingCapabilities { missing, root });
    }
    if !Path::new(VMLINUX_BTF).exists() {
        return Err(PreflightError::NoBtf {
            detail: format!("{VMLINUX_BTF} does not exist"),
        });
    }
    let btf = Btf::from_sys_fs().map_err(|e| PreflightError::NoBtf {
        detail: e.to_string(),
    })?;
    let usable = candidates(signals, &btf).map_err(PreflightError::MissingHooks)?;
    Ok((btf, usable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cap_eff_mask() {
        let status = "Name:\tcat\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("Name: x\n"), None);
    }

    #[test]
    fn bpf_and_perfmon_or_sys_admin_suffice() {
        assert!(missing_capabilities(1 << CAP_SYS_ADMIN).is_empty());
        assert!(missing_capabilities((1 << CAP_BPF) | (1 << CAP_PERFMON)).is_empty());
        assert_eq!(missing_capabilities(1 << CAP_BPF), vec!["CAP_PERFMON"]);
        assert_eq!(missing_capabilities(0), vec!["CAP_BPF", "CAP_PERFMON"]);
    }

    #[test]
    fn messages_name_the_fix() {
        let user = PreflightError::MissingCapabilities {
            missing: vec!["CAP_BPF"],
            root: false,
        };
        assert!(user.to_string().contains("sudo"));
        let root = PreflightError::MissingCapabilities {
            missing: vec!["CAP_BPF"],
            root: true,
        };
        assert!(root.to_string().contains("capabilities.add"));
        let btf = PreflightError::NoBtf { detail: "x".into() };
        assert!(btf.to_string().contains("CONFIG_DEBUG_INFO_BTF"));
    }
}
