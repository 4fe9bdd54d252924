//! Comparisons that print their measured error before asserting, so that
//! `cargo test -- --nocapture` shows every number the closing note reports.

/// Asserts `measured` is within `tolerance` (a fraction, 0.02 = 2%) of a non-zero `truth`.
pub fn assert_close(what: &str, measured: u64, truth: u64, tolerance: f64) {
    // Exact below 2^53, far above any count these tests make; integral floats print bare.
    assert_close_f64(what, measured as f64, truth as f64, tolerance);
}

/// [`assert_close`] for quantities that are not counts, such as ratios.
pub fn assert_close_f64(what: &str, measured: f64, truth: f64, tolerance: f64) {
    assert!(
        truth > 0.0,
        "{what}: ground truth is zero; the workload did not run"
    );
    let error = (measured - truth) / truth;
    eprintln!(
        "check {what}: measured {measured}, truth {truth}, error {:+.3}% (allowed ±{:.1}%)",
        error * 100.0,
        tolerance * 100.0
    );
    assert!(
        error.abs() <= tolerance,
        "{what}: measured {measured}, truth {truth}: error {:+.3}% exceeds ±{:.1}%",
        error * 100.0,
        tolerance * 100.0
    );
}

/// Asserts `measured == truth`.
pub fn assert_exact(what: &str, measured: u64, truth: u64) {
    eprintln!(
        "check {what}: measured {measured}, truth {truth}, difference {}",
        i128::from(measured) - i128::from(truth)
    );
    assert_eq!(
        measured, truth,
        "{what}: measured {measured}, truth {truth}"
    );
}

/// Asserts `lo <= measured <= hi`.
pub fn assert_between(what: &str, measured: u64, lo: u64, hi: u64) {
    eprintln!("check {what}: measured {measured}, allowed [{lo}, {hi}]");
    assert!(
        (lo..=hi).contains(&measured),
        "{what}: measured {measured} is outside [{lo}, {hi}]"
    );
}
