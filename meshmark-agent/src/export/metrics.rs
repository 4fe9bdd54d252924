//! The Prometheus exposition of `meshmark-agent run` (`/metrics`, text format 0.0.4).
//!
//! A pure function of what the agent knows at a scrape: the latest window's report, the running
//! totals of the counters ([`super::totals`]), the BPF programs' run statistics and the agent's
//! own usage. Gauges describe the latest window only, so a pod that is gone from it is gone from
//! the exposition; counters come from the totals, keyed by bounded labels only (roles,
//! directions, loss reasons, program names). docs/metrics.md lists every series.
//!
//! Encoded by prometheus-client's `prometheus_text` encoder through a [`Collector`], which keeps
//! the output in a fixed order (its `Family` type keeps series in a hash map). Counter names
//! are given without `_total`: the encoder adds it.

use std::sync::Arc;

use prometheus_client::{
    collector::Collector,
    encoding::{prometheus_text, DescriptorEncoder, EncodeMetric as _, NoLabelSet as NoLabels},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Registry,
};

use super::totals::Totals;
use super::turn_histograms::{bounds_seconds, TurnHistogram};
use crate::{
    model::{MeshMark, Source, Unit, MEASURES},
    probe::ProgramStats,
    report::Report,
};

/// `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// What the agent itself uses, read from /proc/self at the scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AgentUsage {
    /// User and system CPU time of all the agent's threads since it started.
    pub cpu_seconds: f64,
    /// Resident memory now; `None` when it could not be read.
    pub resident_bytes: Option<u64>,
}

/// The HTTP server's own counters (`run`), read at the scrape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpCounters {
    /// Connections open now, on every listener.
    pub open: u64,
    /// Connections and requests refused or cut since the agent started, by reason; every
    /// reason present from the start.
    pub refused: Vec<(&'static str, u64)>,
}

/// Everything one exposition is made from.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// The node label; the report's node once there is one.
    pub node: String,
    /// The latest scored window; `None` until the first one.
    pub report: Option<Arc<Report>>,
    pub totals: Totals,
    /// Cumulative run statistics of every attached program, read at the end of the window.
    pub programs: Vec<ProgramStats>,
    pub agent: AgentUsage,
    pub http: HttpCounters,
    /// This agent's version, for `meshmark_build_info`.
    pub version: &'static str,
}

/// One sample's value; counts stay integers so large byte counts keep every digit.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
    /// A histogram family's series: its sum, its count and its buckets, `(le, count)` with
    /// counts per bucket (the encoder makes them cumulative), the last `le` infinite.
    Histogram {
        sum: f64,
        count: u64,
        buckets: Vec<(f64, u64)>,
    },
}

impl Value {
    /// The value of a gauge or counter; a histogram's count.
    pub fn as_f64(&self) -> f64 {
        match self {
            Value::Int(v) => *v as f64,
            Value::Float(v) => *v,
            Value::Histogram { count, .. } => *count as f64,
        }
    }
}

/// One series: its labels in order (`node` first) and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

/// A metric family; counter names here lack the `_total` the encoder adds.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
    pub series: Vec<Series>,
}

impl Family {
    /// The name as it appears in the exposition.
    pub fn exposed_name(&self) -> String {
        match self.kind {
            MetricType::Counter => format!("{}_total", self.name),
            _ => self.name.to_owned(),
        }
    }
}

/// The exposition text.
pub fn render(inputs: Inputs) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exposition(families(&inputs))));
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

#[derive(Debug)]
struct Exposition(Vec<Family>);

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, family.kind)?;
            for series in &family.series {
                let mut sample = metric.encode_family(&series.labels)?;
                match (family.kind, &series.value) {
                    (MetricType::Counter, &Value::Int(v)) => ConstCounter::new(v).encode(sample)?,
                    (MetricType::Counter, &Value::Float(v)) => {
                        ConstCounter::new(v).encode(sample)?
                    }
                    (_, &Value::Int(v)) => ConstGauge::new(v).encode(sample)?,
                    (_, &Value::Float(v)) => ConstGauge::new(v).encode(sample)?,
                    (
                        _,
                        Value::Histogram {
                            sum,
                            count,
                            buckets,
                        },
                    ) => sample.encode_histogram::<NoLabels>(*sum, *count, buckets, None)?,
                }
            }
        }
        Ok(())
    }
}

/// Every family of the exposition, in the order they are written; families without series are
/// left out.
pub fn families(inputs: &Inputs) -> Vec<Family> {
    let mut out = Builder {
        node: &inputs.node,
        families: Vec::new(),
    };
    if let Some(report) = &inputs.report {
        window_gauges(&mut out, report);
    }
    counters(&mut out, &inputs.totals);
    turn_histograms(&mut out, &inputs.totals);
    programs(&mut out, &inputs.programs);
    agent(&mut out, inputs);
    http(&mut out, &inputs.http);
    out.families.retain(|f| !f.series.is_empty());
    out.families
}

struct Builder<'a> {
    node: &'a str,
    families: Vec<Family>,
}

impl Builder<'_> {
    fn family(&mut self, name: &'static str, kind: MetricType, help: &'static str) -> &mut Self {
        self.families.push(Family {
            name,
            help,
            kind,
            series: Vec::new(),
        });
        self
    }

    /// Adds a series to the last family; `node` comes first, then `labels`.
    fn series(&mut self, labels: &[(&'static str, &str)], value: Value) -> &mut Self {
        let mut all = vec![("node", self.node.to_owned())];
        all.extend(labels.iter().map(|&(k, v)| (k, v.to_owned())));
        self.families
            .last_mut()
            .expect("a family before its series")
            .series
            .push(Series { labels: all, value });
        self
    }
}

/// Seconds from nanoseconds.
fn seconds(ns: u64) -> Value {
    Value::Float(ns as f64 / 1e9)
}

fn window_gauges(out: &mut Builder, report: &Report) {
    let node = &report.meshmark;
    out.family(
        "meshmark_score",
        MetricType::Gauge,
        "MeshMark of the node in the latest window, 0-100 (100: the mesh cost nothing next to the application).",
    )
    .series(&[], Value::Float(node.score));

    out.family(
        "meshmark_class_score",
        MetricType::Gauge,
        "Score of each consumption class of the node in the latest window, 0-1; classes without data are absent.",
    );
    for (class, scored) in &node.classes {
        out.series(&[("class", class.name())], Value::Float(scored.score));
    }

    out.family(
        "meshmark_mue",
        MetricType::Gauge,
        "Mesh Utilization Efficiency A/(A+P) of each signal of the node in the latest window, before weights, 0-1.",
    );
    for (class, scored) in &node.classes {
        for (mue, value) in &scored.mues {
            out.series(
                &[("class", class.name()), ("signal", mue.name())],
                Value::Float(*value),
            );
        }
    }

    out.family(
        "meshmark_pod_score",
        MetricType::Gauge,
        "MeshMark of each pod with an application process in the latest window, 0-100; namespace and pod are empty where the kubelet's pod list could not be read.",
    );
    for pod in &report.pods {
        out.series(
            &[
                ("namespace", pod.namespace.as_deref().unwrap_or("")),
                ("pod", pod.pod_name.as_deref().unwrap_or("")),
                ("pod_uid", &pod.pod_uid),
            ],
            Value::Float(pod.meshmark.score),
        );
    }

    pod_request_gauges(out, report);

    out.family(
        "meshmark_role_processes",
        MetricType::Gauge,
        "Processes of each role in the latest window.",
    );
    for (role, sums) in &node.sums {
        out.series(&[("role", role.as_str())], Value::Int(sums.processes));
    }

    unit_costs(out, node);

    out.family(
        "meshmark_window_seconds",
        MetricType::Gauge,
        "Length of the latest window, measured on the monotonic clock.",
    )
    .series(&[], seconds(report.snapshot.window.duration_ns));

    out.family(
        "meshmark_hook_info",
        MetricType::Gauge,
        "The kernel hook each signal is collected with on this node; always 1.",
    );
    for (signal, hook) in &report.snapshot.hooks {
        out.series(&[("signal", signal), ("hook", hook)], Value::Int(1));
    }

    out.family(
        "meshmark_signal_observed_ratio",
        MetricType::Gauge,
        "Share of the latest window during which each signal was observed, 0-1: 1 is exact; below 1 its figures are estimates scaled up from that share (run --duty-cycle).",
    );
    for signal in report.snapshot.hooks.keys() {
        out.series(
            &[("signal", signal)],
            Value::Float(report.snapshot.observed_ratio(signal)),
        );
    }
}

/// Requests and what they cost, per pod with an application that answered requests.
fn pod_request_gauges(out: &mut Builder, report: &Report) {
    type Cost = fn(&crate::model::UnitCosts) -> Option<f64>;
    let gauges: [(&'static str, &'static str, Cost); 3] = [
        (
            "meshmark_pod_requests_per_second",
            "Exact requests per second the pod's application answered in the latest window.",
            |c| c.app_requests_per_s,
        ),
        (
            "meshmark_pod_mesh_added_latency_seconds",
            "Mean time the pod's sidecar added to each of its application's requests in the latest window.",
            |c| c.mesh_added_latency_ns.map(|ns| ns / 1e9),
        ),
        (
            "meshmark_pod_cpu_seconds_per_request",
            "Application and sidecar CPU seconds of the pod per application request in the latest window.",
            |c| c.cpu_ns_per_request.map(|ns| ns / 1e9),
        ),
    ];
    for (name, help, cost) in gauges {
        out.family(name, MetricType::Gauge, help);
        for pod in &report.pods {
            if let Some(value) = cost(&pod.meshmark.unit_costs) {
                out.series(
                    &[
                        ("namespace", pod.namespace.as_deref().unwrap_or("")),
                        ("pod", pod.pod_name.as_deref().unwrap_or("")),
                        ("pod_uid", &pod.pod_uid),
                    ],
                    Value::Float(value),
                );
            }
        }
    }
}

/// Request-time histograms per pod and role, since the agent started (pods of the latest window
/// only): Prometheus histograms, so `histogram_quantile` works on them.
fn turn_histograms(out: &mut Builder, totals: &Totals) {
    type Part = fn(&super::turn_histograms::ScopeTurns) -> &TurnHistogram;
    let families: [(&'static str, &'static str, Part); 2] = [
        (
            "meshmark_request_duration_seconds",
            "Time of the exact request turns of each role's processes in each pod, first byte received to last byte sent; pod_uid is empty for processes outside any pod. Turns observed: with a duty cycle below 100% a sample of them.",
            |s| &s.turns,
        ),
        (
            "meshmark_inbound_request_duration_seconds",
            "Time of the request turns on connections from outside the pod (for a sidecar, the requests entering the pod), per pod and role.",
            |s| &s.inbound,
        ),
    ];
    let bounds = bounds_seconds();
    for (name, help, part) in families {
        out.family(name, MetricType::Histogram, help);
        for ((pod_uid, role), scope) in &totals.turns.scopes {
            let histogram = part(scope);
            out.series(
                &[
                    ("namespace", &scope.namespace),
                    ("pod", &scope.pod),
                    ("pod_uid", pod_uid),
                    ("role", role.as_str()),
                ],
                Value::Histogram {
                    sum: histogram.sum_ns as f64 / 1e9,
                    count: histogram.count,
                    buckets: bounds.iter().copied().zip(histogram.buckets).collect(),
                },
            );
        }
    }
}

/// One gauge per unit cost of the node, in base units; an undefined cost (a ratio over zero)
/// has no series.
fn unit_costs(out: &mut Builder, node: &MeshMark) {
    let c = &node.unit_costs;
    let ns_seconds = |ns: Option<u64>| ns.map(|ns| ns as f64 / 1e9);
    let gauges: [(&'static str, &'static str, Option<f64>); 16] = [
        (
            "meshmark_proxy_cpu_per_app_cpu_ratio",
            "Mesh CPU seconds per application CPU second in the latest window.",
            c.proxy_cpu_per_app_cpu,
        ),
        (
            "meshmark_proxy_cpu_seconds_per_byte",
            "Mesh CPU seconds per socket byte the mesh moved in the latest window.",
            c.proxy_cpu_ns_per_kib.map(|v| v / 1e9 / 1024.0),
        ),
        (
            "meshmark_proxy_syscalls_per_byte",
            "Mesh syscalls per socket byte the mesh moved in the latest window.",
            c.proxy_syscalls_per_kib.map(|v| v / 1024.0),
        ),
        (
            "meshmark_node_cpu_headroom_ratio",
            "Share of the node's CPU time left idle in the latest window, 0-1.",
            c.node_cpu_headroom,
        ),
        (
            "meshmark_app_syscall_p50_seconds",
            "Median syscall latency of application processes in the latest window (upper bound of its log2 bucket).",
            ns_seconds(c.app_syscall_p50_ns),
        ),
        (
            "meshmark_app_syscall_p99_seconds",
            "99th percentile syscall latency of application processes in the latest window (upper bound of its log2 bucket).",
            ns_seconds(c.app_syscall_p99_ns),
        ),
        (
            "meshmark_proxy_syscall_p50_seconds",
            "Median syscall latency of mesh processes in the latest window (upper bound of its log2 bucket).",
            ns_seconds(c.proxy_syscall_p50_ns),
        ),
        (
            "meshmark_proxy_syscall_p99_seconds",
            "99th percentile syscall latency of mesh processes in the latest window (upper bound of its log2 bucket).",
            ns_seconds(c.proxy_syscall_p99_ns),
        ),
        (
            "meshmark_app_requests_per_second",
            "Exact requests per second the application processes answered in the latest window (request turns on connections they accepted).",
            c.app_requests_per_s,
        ),
        (
            "meshmark_cpu_seconds_per_request",
            "Application and mesh CPU seconds per application request in the latest window.",
            c.cpu_ns_per_request.map(|ns| ns / 1e9),
        ),
        (
            "meshmark_proxy_cpu_seconds_per_request",
            "Mesh CPU seconds per application request in the latest window.",
            c.proxy_cpu_ns_per_request.map(|ns| ns / 1e9),
        ),
        (
            "meshmark_mesh_added_latency_seconds",
            "Mean time the mesh added to each application request in the latest window: sidecars' inbound turn time beyond the application's, per pod.",
            c.mesh_added_latency_ns.map(|ns| ns / 1e9),
        ),
        (
            "meshmark_app_request_p50_seconds",
            "Median request time of application processes in the latest window (upper bound of its log2 bucket).",
            ns_seconds(c.app_request_p50_ns),
        ),
        (
            "meshmark_app_request_p99_seconds",
            "99th percentile request time of application processes in the latest window (upper bound of its log2 bucket).",
            ns_seconds(c.app_request_p99_ns),
        ),
        (
            "meshmark_proxy_inbound_request_p50_seconds",
            "Median time of the mesh's inbound request turns in the latest window (upper bound of its log2 bucket).",
            ns_seconds(c.proxy_inbound_p50_ns),
        ),
        (
            "meshmark_proxy_inbound_request_p99_seconds",
            "99th percentile time of the mesh's inbound request turns in the latest window (upper bound of its log2 bucket).",
            ns_seconds(c.proxy_inbound_p99_ns),
        ),
    ];
    for (name, help, value) in gauges {
        out.family(name, MetricType::Gauge, help);
        if let Some(value) = value {
            out.series(&[], Value::Float(value));
        }
    }
}

fn counters(out: &mut Builder, totals: &Totals) {
    // One family per measure with a counter (see model::measures). `RoleTotals` holds the
    // parts of every counter in registry order, as `counter_parts` walks them.
    let mut first = 0usize;
    for measure in &MEASURES {
        let Some(counter) = &measure.counter else {
            continue;
        };
        if matches!(measure.source, Source::Counter(_)) && !totals.counters {
            // Its parts are kept, at zero: the next family starts after them.
            first = first.saturating_add(counter.parts.len());
            continue;
        }
        out.family(counter.family, MetricType::Counter, counter.help);
        for (role, t) in &totals.roles {
            for (offset, (part, _)) in counter.parts.iter().enumerate() {
                let total = t.0.get(first.saturating_add(offset)).copied();
                let total = total.unwrap_or(0);
                let value = match measure.unit {
                    Unit::Ns => seconds(total),
                    Unit::Bytes | Unit::Count => Value::Int(total),
                };
                match counter.split {
                    Some(label) => out.series(&[("role", role.as_str()), (label, part)], value),
                    None => out.series(&[("role", role.as_str())], value),
                };
            }
        }
        first = first.saturating_add(counter.parts.len());
    }

    out.family(
        "meshmark_dropped_events",
        MetricType::Counter,
        "Data the kernel side could not record since the agent started, by reason (see docs/how-it-measures.md).",
    );
    for (reason, count) in &totals.dropped {
        out.series(&[("reason", reason)], Value::Int(*count));
    }

    out.family(
        "meshmark_windows",
        MetricType::Counter,
        "Windows measured and scored since the agent started.",
    )
    .series(&[], Value::Int(totals.windows));

    out.family(
        "meshmark_window_errors",
        MetricType::Counter,
        "Windows that could not be measured or scored since the agent started (the log says why).",
    )
    .series(&[], Value::Int(totals.window_errors));
}

fn programs(out: &mut Builder, programs: &[ProgramStats]) {
    // The loader lists programs in hash order; the exposition keeps a fixed one.
    let mut programs: Vec<&ProgramStats> = programs.iter().collect();
    programs.sort_by(|a, b| a.program.cmp(&b.program));
    out.family(
        "meshmark_bpf_program_run_seconds",
        MetricType::Counter,
        "Time the kernel spent running each of meshmark's BPF programs since they were loaded (BPF run statistics).",
    );
    for p in &programs {
        out.series(&[("program", &p.program)], seconds(p.run_time_ns));
    }
    out.family(
        "meshmark_bpf_program_runs",
        MetricType::Counter,
        "Times each of meshmark's BPF programs ran since it was loaded (BPF run statistics).",
    );
    for p in &programs {
        out.series(&[("program", &p.program)], Value::Int(p.run_count));
    }
}

fn agent(out: &mut Builder, inputs: &Inputs) {
    out.family(
        "meshmark_agent_cpu_seconds",
        MetricType::Counter,
        "User and system CPU time of the agent process since it started.",
    )
    .series(&[], Value::Float(inputs.agent.cpu_seconds));

    out.family(
        "meshmark_agent_resident_memory_bytes",
        MetricType::Gauge,
        "Resident memory of the agent process.",
    );
    if let Some(rss) = inputs.agent.resident_bytes {
        out.series(&[], Value::Int(rss));
    }

    out.family(
        "meshmark_build_info",
        MetricType::Gauge,
        "The agent's version; always 1.",
    )
    .series(&[("version", inputs.version)], Value::Int(1));
}

fn http(out: &mut Builder, http: &HttpCounters) {
    out.family(
        "meshmark_http_connections",
        MetricType::Gauge,
        "Connections open to the agent's HTTP server now.",
    )
    .series(&[], Value::Int(http.open));
    out.family(
        "meshmark_http_refused",
        MetricType::Counter,
        "Connections and requests the agent's HTTP server refused or cut since it started, by reason (docs/metrics.md).",
    );
    for (reason, count) in &http.refused {
        out.series(&[("reason", reason)], Value::Int(*count));
    }
}

#[cfg(test)]
mod tests;
