//! Numeric flags outside their range are usage errors (exit 2, naming the flag and the range)
//! before anything is loaded, instead of overflowing later in a power-of-two round-up.

use std::process::Command;

use clap::Parser as _;
use meshmark_agent::cli::{Cli, Command as Sub};

/// `(thread_slots, ring_bytes)` that `profile ARGS` parses to, or clap's error text.
fn parsed(args: &[&str]) -> Result<(u32, u32), String> {
    let argv = ["meshmark-agent", "profile"]
        .into_iter()
        .chain(args.iter().copied());
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Sub::Profile(p),
        }) => Ok((p.kernel.thread_slots, p.kernel.ring_bytes)),
        Ok(other) => panic!("parsed as another command: {other:?}"),
        Err(err) => Err(err.to_string()),
    }
}

#[test]
fn edges_of_the_ranges_are_accepted() {
    assert_eq!(
        parsed(&["--thread-slots", "1", "--ring-bytes", "4096"]),
        Ok((1, 4096))
    );
    assert_eq!(
        parsed(&["--thread-slots", "4194304", "--ring-bytes", "1073741824"]),
        Ok((4_194_304, 1_073_741_824))
    );
    let (slots, ring) = parsed(&[]).expect("defaults parse");
    assert_eq!(
        (slots, ring),
        (
            meshmark_common::DEFAULT_THREAD_SLOTS,
            meshmark_common::DEFAULT_EVENT_RING_BYTES
        )
    );
}

#[test]
fn values_outside_are_refused_with_the_range() {
    for (flag, value, range) in [
        ("--thread-slots", "0", "1..=4194304"),
        ("--thread-slots", "4194305", "1..=4194304"),
        // Above 2^31 u32::next_power_of_two overflows: the case that used to panic.
        ("--thread-slots", "2147483649", "1..=4194304"),
        ("--thread-slots", "4294967296", "1..=4194304"),
        ("--ring-bytes", "4095", "4096..=1073741824"),
        ("--ring-bytes", "1073741825", "4096..=1073741824"),
        ("--ring-bytes", "3000000000", "4096..=1073741824"),
    ] {
        let err = parsed(&[flag, value]).expect_err(value);
        assert!(
            err.contains(flag) && err.contains(range),
            "{flag} {value}: {err}"
        );
    }
    for value in ["-4", "1.5", "lots"] {
        let flag = format!("--thread-slots={value}");
        assert!(parsed(&[&flag]).is_err(), "{flag}");
    }
}

#[test]
fn the_binary_exits_2_before_loading_anything() {
    let out = Command::new(env!("CARGO_BIN_EXE_meshmark-agent"))
        .args(["profile", "--thread-slots", "2147483649"])
        .output()
        .expect("running meshmark-agent");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--thread-slots") && stderr.contains("1..=4194304"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `run --duty-cycle ARG`, or clap's error text.
fn duty_cycle(args: &[&str]) -> Result<(u8, u32), String> {
    let argv = ["meshmark-agent", "run"]
        .into_iter()
        .chain(args.iter().copied());
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Sub::Run(r),
        }) => Ok((r.duty_cycle, r.kernel.thread_slots)),
        Ok(other) => panic!("parsed as another command: {other:?}"),
        Err(err) => Err(err.to_string()),
    }
}

#[test]
fn run_takes_a_duty_cycle_in_percent_and_the_kernel_sizes_profile_takes() {
    assert_eq!(duty_cycle(&[]).unwrap().0, 10, "the default");
    assert_eq!(duty_cycle(&["--duty-cycle", "25"]).unwrap().0, 25);
    assert_eq!(duty_cycle(&["--duty-cycle", "100%"]).unwrap().0, 100);
    assert_eq!(
        duty_cycle(&["--thread-slots", "1000"]).unwrap().1,
        1000,
        "run sizes the thread table as profile does"
    );
    for bad in ["0", "0%", "101%", "ten", "12.5%"] {
        let err = duty_cycle(&["--duty-cycle", bad]).expect_err(bad);
        assert!(
            err.contains("--duty-cycle") && err.contains("1 to 100"),
            "{bad}: {err}"
        );
    }
}
