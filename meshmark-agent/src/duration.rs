//! The one duration syntax of meshmark: `--duration` on the command line and `window` in the
//! configuration file both go through [`parse_duration`], so they accept exactly the same text.

#![warn(clippy::arithmetic_side_effects)]

use std::time::Duration;

/// Longest window accepted. A window is a measurement, not a service lifetime: a day is far
/// beyond any use, and the bound keeps every nanosecond count of a window far below `u64::MAX`.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

const HINT: &str = "write whole numbers with a unit ms, s, m or h, such as \"10s\", \"1500ms\", \
                    \"1m30s\" or \"1h\"";

/// Parses a humane duration: whole numbers with units `ms`, `s`, `m` or `h`, several of them
/// summed (`"10s"`, `"500ms"`, `"1m30s"`, `"1h 30m"`). Zero and anything over [`MAX_DURATION`]
/// are refused: a window must have a length, and a sane one.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(format!("empty duration; {HINT}"));
    }
    let too_long = || format!("{text:?} is longer than the longest window, 24h");
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("{text:?} is not a duration; {HINT}"));
        }
        let (number, after) = rest.split_at(digits);
        // Only digits: the one possible error is a number too large for u64.
        let number: u64 = number.parse().map_err(|_| too_long())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(format!("{text:?} has a number without a unit; {HINT}")),
            unit => return Err(format!("unknown unit {unit:?} in {text:?}; {HINT}")),
        };
        total_ms = number
            .checked_mul(scale_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(too_long)?;
        rest = after.trim_start();
    }
    let total = Duration::from_millis(total_ms);
    if total.is_zero() {
        return Err(format!("{text:?} is zero; a window needs a length"));
    }
    if total > MAX_DURATION {
        return Err(too_long());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    // Generated parts are bounded far below overflow.
    #![allow(clippy::arithmetic_side_effects)]

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepted_forms() {
        let ok = [
            ("10s", 10_000),
            ("500ms", 500),
            ("2m", 120_000),
            ("1m30s", 90_000),
            (" 15s ", 15_000),
            ("1h", 3_600_000),
            ("1h 30m", 5_400_000),
            ("1s500ms", 1_500),
            ("24h", 86_400_000),
            ("0s1ms", 1),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn refused_forms_say_why() {
        let refused = [
            ("", "empty duration"),
            ("10", "without a unit"),
            ("1.5s", "unknown unit \".\""),
            ("10d", "unknown unit \"d\""),
            ("10 s", "without a unit"),
            ("s", "is not a duration"),
            ("-1s", "is not a duration"),
            ("0ms", "is zero"),
            ("24h1ms", "longer than the longest window"),
            ("99999999999999999999s", "longer than the longest window"),
            ("18446744073709551615h", "longer than the longest window"),
        ];
        for (text, why) in refused {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panic(text in "\\PC{0,40}") {
            if let Ok(d) = parse_duration(&text) {
                prop_assert!(!d.is_zero() && d <= MAX_DURATION);
            }
        }

        #[test]
        fn parts_add_up(h in 0u64..24, m in 0u64..60, s in 0u64..60, ms in 1u64..1000) {
            let text = format!("{h}h{m}m {s}s{ms}ms");
            let want = ((h * 60 + m) * 60 + s) * 1000 + ms;
            prop_assert_eq!(parse_duration(&text), Ok(Duration::from_millis(want)));
        }
    }
}
