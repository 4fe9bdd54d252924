//! The HTTP side of `run`: `/metrics`, `/api/v1/node`, `/healthz`, `/readyz`. Handlers only
//! read what the window loop published; none of them touches the kernel.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

use super::Shared;
use crate::export::{
    self,
    metrics::{self, AgentUsage, Inputs},
};

pub fn router(shared: Arc<Shared>) -> Router {
    health_routes()
        .route("/metrics", get(metrics_text))
        .route("/api/v1/node", get(node_json))
        .with_state(shared)
}

/// Health and readiness only, for the plain probe listener (`--health-listen`).
pub fn health_router(shared: Arc<Shared>) -> Router {
    health_routes().with_state(shared)
}

/// The two paths the kubelet probes; never behind authentication.
fn health_routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
}

async fn metrics_text(State(shared): State<Arc<Shared>>) -> Response {
    let latest = shared.latest();
    let text = metrics::render(Inputs {
        node: latest
            .report
            .as_ref()
            .map_or_else(|| shared.node.clone(), |r| r.snapshot.node.clone()),
        report: latest.report.clone(),
        totals: latest.totals.clone(),
        programs: latest.programs.clone(),
        agent: agent_usage(),
        http: shared.http.counters(),
        version: env!("CARGO_PKG_VERSION"),
    });
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

async fn node_json(State(shared): State<Arc<Shared>>) -> Response {
    let Some(report) = shared.latest().report.clone() else {
        return not_ready();
    };
    match export::json::to_json(&report) {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the report: {err}\n"),
        )
            .into_response(),
    }
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    if shared.latest().report.is_some() {
        "ready\n".into_response()
    } else {
        not_ready()
    }
}

fn not_ready() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "no window scored yet: the first one ends one window after the start\n",
    )
        .into_response()
}

/// The agent's CPU time and resident memory, from /proc/self.
pub fn agent_usage() -> AgentUsage {
    AgentUsage {
        cpu_seconds: self_cpu_seconds().unwrap_or(0.0),
        resident_bytes: self_resident_bytes(),
    }
}

/// utime + stime of /proc/self/stat (fields 14 and 15), in seconds.
fn self_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| utime.saturating_add(stime) as f64 / ticks as f64)
}

/// Resident pages of /proc/self/statm (field 2) in bytes.
fn self_resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page)
        .ok()
        .map(|page| pages.saturating_mul(page))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::Published;

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn scored() -> Arc<crate::report::Report> {
        let snapshot = crate::snapshot::Snapshot {
            schema: crate::snapshot::PROFILE_SCHEMA.into(),
            node: "node-a".into(),
            ..Default::default()
        };
        let config = crate::config::Config::default();
        let report =
            crate::report::build_report(snapshot, &config.classifier(None), &config.model, &|_| {
                None
            })
            .unwrap();
        Arc::new(report)
    }

    #[tokio::test]
    async fn not_ready_until_a_window_is_published_then_ready() {
        let shared = Arc::new(Shared::new("booting".into()));
        let response = ready(State(shared.clone())).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let response = node_json(State(shared.clone())).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let response = metrics_text(State(shared.clone())).await;
        assert_eq!(response.status(), StatusCode::OK);
        let text = body(response).await;
        assert!(
            text.contains("meshmark_build_info{node=\"booting\""),
            "{text}"
        );
        assert!(!text.contains("meshmark_score"), "{text}");

        shared.publish(Published {
            report: Some(scored()),
            ..Published::default()
        });
        assert_eq!(ready(State(shared.clone())).await.status(), StatusCode::OK);
        let response = node_json(State(shared.clone())).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let json: serde_json::Value = serde_json::from_str(&body(response).await).unwrap();
        assert_eq!(json["schema"], "meshmark.profile/v1");
        let response = metrics_text(State(shared)).await;
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = body(response).await;
        assert!(
            text.contains("meshmark_score{node=\"node-a\"} 100"),
            "{text}"
        );
    }

    #[test]
    fn own_usage_is_read_and_grows_with_work() {
        let before = agent_usage();
        let rss = before.resident_bytes.expect("statm is readable");
        assert!(rss > 1 << 20, "a test binary holds more than 1 MiB: {rss}");
        // Burn 300 ms of this thread's CPU time (not of the clock: the machine is shared); the
        // process's counter (10 ms ticks) must see it.
        let thread_cpu = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: ts is a valid timespec to write into.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            std::time::Duration::new(
                u64::try_from(ts.tv_sec).unwrap(),
                u32::try_from(ts.tv_nsec).unwrap(),
            )
        };
        let (start, wall) = (thread_cpu(), std::time::Instant::now());
        let mut x = 0u64;
        while thread_cpu() - start < std::time::Duration::from_millis(300) {
            assert!(wall.elapsed().as_secs() < 30, "no CPU time in 30 s");
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = agent_usage();
        assert!(
            after.cpu_seconds - before.cpu_seconds >= 0.28,
            "{} -> {}",
            before.cpu_seconds,
            after.cpu_seconds
        );
    }
}
