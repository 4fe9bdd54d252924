//! The architectures meshmark ships for, in one table: `cargo xtask dist` builds a static agent
//! and an image for each, and the kernel matrix boots kernels of each. Built on this x86_64
//! machine; the aarch64 build is a cross build.
//!
//! The static builds use Rust's musl targets, which carry their own musl (libc.a and the start
//! files): the C compiler only compiles ring's C and assembly and drives the link. For x86_64
//! that is Debian's musl-gcc (musl-tools); Debian has no aarch64 musl compiler, and its GNU
//! cross compiler (gcc-aarch64-linux-gnu, with libc6-dev-arm64-cross for the headers ring
//! includes) does both jobs, since the link takes musl from Rust's target, not from gcc.

use std::process::Command;

use anyhow::{bail, Result};

/// One architecture: its names in each world and the cross tools that build for it.
#[derive(Debug)]
pub struct Platform {
    /// Rust's and the kernel's (`uname -m`) name, used in file names: `meshmark-agent-<arch>`.
    pub arch: &'static str,
    /// The name in OCI platforms, Kubernetes' `kubernetes.io/arch` and Debian: amd64, arm64.
    pub oci_arch: &'static str,
    /// The static Rust target.
    pub rust_target: &'static str,
    /// The ELF header's `e_machine` of its executables: a cross build is checked against it.
    pub elf_machine: u16,
    /// The C compiler cc-rs uses for the target (ring), and the linker where it is not the
    /// host's: set through cc-rs's and cargo's per-target variables.
    pub c_compiler: &'static str,
    pub archiver: Option<&'static str>,
    pub linker: Option<&'static str>,
    /// The Debian packages that provide those tools (installed by `cargo xtask setup`).
    pub debian_packages: &'static [&'static str],
}

pub const X86_64: Platform = Platform {
    arch: "x86_64",
    oci_arch: "amd64",
    rust_target: "x86_64-unknown-linux-musl",
    elf_machine: 62, // EM_X86_64
    c_compiler: "x86_64-linux-musl-gcc",
    archiver: None,
    linker: None,
    debian_packages: &["musl-tools"],
};

pub const AARCH64: Platform = Platform {
    arch: "aarch64",
    oci_arch: "arm64",
    rust_target: "aarch64-unknown-linux-musl",
    elf_machine: 183, // EM_AARCH64
    c_compiler: "aarch64-linux-gnu-gcc",
    archiver: Some("aarch64-linux-gnu-ar"),
    linker: Some("aarch64-linux-gnu-gcc"),
    debian_packages: &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"],
};

/// Every shipped architecture, the host's first.
pub const PLATFORMS: &[&Platform] = &[&X86_64, &AARCH64];

impl Platform {
    /// Points cargo and cc-rs at this target's C compiler, archiver and linker.
    pub fn configure(&self, cargo: &mut Command) {
        let target_var = self.rust_target.replace('-', "_");
        cargo.env(format!("CC_{target_var}"), self.c_compiler);
        if let Some(ar) = self.archiver {
            cargo.env(format!("AR_{target_var}"), ar);
        }
        if let Some(linker) = self.linker {
            cargo.env(
                format!("CARGO_TARGET_{}_LINKER", target_var.to_uppercase()),
                linker,
            );
        }
    }

    /// Fails early, with the fix, where the target's C compiler is missing: cargo would fail
    /// deep inside ring's build script instead.
    pub fn require_tools(&self) -> Result<()> {
        let tools = [Some(self.c_compiler), self.archiver, self.linker];
        if let Some(missing) = tools
            .into_iter()
            .flatten()
            .find(|tool| crate::dist::which(tool).is_none())
        {
            bail!(
                "{missing} is not installed; the static {} build compiles C (ring, the TLS \
                 library's cryptography) and links with it: as root run `cargo xtask setup` or \
                 `apt-get install {}`",
                self.arch,
                self.debian_packages.join(" ")
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_tools_reach_cargo_and_cc_by_the_targets_variables() {
        let mut cargo = Command::new("cargo");
        AARCH64.configure(&mut cargo);
        let envs: Vec<(String, String)> = cargo
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.unwrap().to_string_lossy().into_owned(),
                )
            })
            .collect();
        for (key, value) in [
            ("CC_aarch64_unknown_linux_musl", "aarch64-linux-gnu-gcc"),
            ("AR_aarch64_unknown_linux_musl", "aarch64-linux-gnu-ar"),
            (
                "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER",
                "aarch64-linux-gnu-gcc",
            ),
        ] {
            assert!(
                envs.contains(&(key.into(), value.into())),
                "{key}={value} missing from {envs:?}"
            );
        }
    }

    #[test]
    fn arch_names_agree_with_the_rust_targets() {
        for p in PLATFORMS {
            assert!(p.rust_target.starts_with(&format!("{}-", p.arch)), "{p:?}");
        }
        assert_eq!(PLATFORMS[0].arch, std::env::consts::ARCH);
    }
}
