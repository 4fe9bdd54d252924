//! wrk, the load generator, run from the client's namespace, and the parts of its report the
//! lab prints: requests, requests per second, latency percentiles, errors.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

/// What one wrk run measured.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct WrkResult {
    pub requests: u64,
    pub requests_per_second: f64,
    /// Mean latency and its standard deviation over the threads, in seconds.
    pub latency_mean_s: f64,
    pub latency_stdev_s: f64,
    /// Latency percentiles in seconds: 50, 75, 90, 99.
    pub latency_p50_s: f64,
    pub latency_p90_s: f64,
    pub latency_p99_s: f64,
    /// Responses other than 2xx/3xx, and socket errors (connect, read, write, timeout).
    pub errors: u64,
}

/// Runs `wrk` from `netns` against `url` for `duration` with `threads` threads and
/// `connections` connections.
pub fn run(
    netns: &str,
    url: &str,
    duration: Duration,
    threads: u32,
    connections: u32,
) -> Result<WrkResult> {
    let seconds = duration.as_secs().max(1);
    let output = Command::new("ip")
        .args(["netns", "exec", netns, "wrk", "--latency"])
        .args(["-t", &threads.to_string(), "-c", &connections.to_string()])
        .args(["-d", &format!("{seconds}s"), url])
        .output()
        .context("running wrk (is it installed? cargo xtask setup)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "wrk failed ({}): {}{}",
        output.status,
        text,
        String::from_utf8_lossy(&output.stderr)
    );
    parse(&text).with_context(|| format!("reading wrk's report:\n{text}"))
}

/// Reads wrk's `--latency` report.
pub fn parse(text: &str) -> Result<WrkResult> {
    let mut result = WrkResult::default();
    let mut seen_requests = false;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Latency", mean, stdev, _max, _share] => {
                result.latency_mean_s = seconds(mean)?;
                result.latency_stdev_s = seconds(stdev)?;
            }
            ["50%", value] => result.latency_p50_s = seconds(value)?,
            ["90%", value] => result.latency_p90_s = seconds(value)?,
            ["99%", value] => result.latency_p99_s = seconds(value)?,
            ["Requests/sec:", value] => result.requests_per_second = value.parse()?,
            [count, "requests", "in", ..] => {
                result.requests = count.parse()?;
                seen_requests = true;
            }
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                result.errors += count.parse::<u64>()?
            }
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 0, write 0, timeout 0"
                for pair in rest.chunks(2) {
                    if let [_, n] = pair {
                        result.errors += n.trim_end_matches(',').parse::<u64>()?;
                    }
                }
            }
            _ => {}
        }
    }
    if !seen_requests {
        bail!("no request count");
    }
    Ok(result)
}

/// `747.00us`, `2.12ms`, `1.01s` in seconds.
fn seconds(value: &str) -> Result<f64> {
    let (number, scale) = if let Some(n) = value.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = value.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = value.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1.0)
    } else {
        bail!("{value:?} has no time unit");
    };
    Ok(number.parse::<f64>()? * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 5s test @ http://198.19.0.10:80/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   810.25us  312.10us  12.40ms   91.20%
    Req/Sec    19.91k     1.02k   21.80k    72.00%
  Latency Distribution
     50%  747.00us
     75%  850.00us
     90%    1.01ms
     99%    2.12ms
  198061 requests in 5.00s, 154.19MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  39612.33
Transfer/sec:     30.84MB
";

    #[test]
    fn reads_wrks_report() {
        let r = parse(REPORT).unwrap();
        assert_eq!(r.requests, 198_061);
        assert!((r.latency_mean_s - 810.25e-6).abs() < 1e-12);
        assert!((r.latency_stdev_s - 312.10e-6).abs() < 1e-12);
        assert!((r.requests_per_second - 39_612.33).abs() < 1e-9);
        assert!((r.latency_p50_s - 747e-6).abs() < 1e-12);
        assert!((r.latency_p90_s - 1.01e-3).abs() < 1e-12);
        assert!((r.latency_p99_s - 2.12e-3).abs() < 1e-12);
        assert_eq!(r.errors, 3);
    }

    #[test]
    fn a_report_without_requests_is_an_error() {
        assert!(parse("unable to connect to 198.19.0.10:80 Connection refused").is_err());
        assert!(seconds("12").is_err());
    }
}
