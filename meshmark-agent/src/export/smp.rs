//! A Service Mesh Performance (SMP) result document for a scored window.
//!
//! Field names follow SMP's types in snake_case (`smp_version`, `start_time`, the mesh
//! configuration's `mesh_type` and `sidecar` block). SMP has no field for MeshMark, so the score,
//! classes, MUEs and unit costs travel in a `meshmark` extension object and, flattened to
//! strings, in `labels`. docs/smp.md maps every field to where it comes from.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    model::{MeshMark, PodMeshMark},
    report::Report,
    role::Role,
    snapshot::ProcessSample,
};

/// The SMP specification version whose field names this document uses.
pub const SMP_VERSION: &str = "v0.0.1";

/// Prefix of every label meshmark adds.
const LABEL_PREFIX: &str = "meshmark.";

/// One SMP performance result, with the mesh configuration meshmark can observe.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SmpResult {
    pub smp_version: &'static str,
    /// `<node>/<window start>`: the same window always gets the same id.
    pub id: String,
    pub labels: BTreeMap<String, String>,
    /// RFC 3339, as SMP's protobuf timestamps are written in JSON.
    pub start_time: String,
    pub end_time: String,
    /// SMP's request rate: the application's exact requests per second of the window, measured
    /// from its accepted connections (absent where it answered none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_qps: Option<f64>,
    /// SMP's latency summary, of the application's own request time (absent without requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latencies_ms: Option<LatenciesMs>,
    pub mesh_config: MeshConfig,
    pub meshmark: Extension,
}

/// SMP's `latencies_ms`, with what the kernel's log2 histograms can say: the mean exactly, the
/// quantiles as the upper bounds of their buckets. SMP's min, p90 and max are not measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LatenciesMs {
    pub average: f64,
    pub p50: f64,
    pub p99: f64,
}

/// The application's request rate and latency summary, where it answered exact requests.
fn request_fields(report: &Report) -> (Option<f64>, Option<LatenciesMs>) {
    let node = &report.meshmark;
    let costs = &node.unit_costs;
    let app = node
        .sums
        .get(&Role::App)
        .and_then(|sums| sums.requests.as_ref())
        .filter(|requests| requests.count > 0);
    let latencies = app.map(|requests| LatenciesMs {
        average: requests.total_ns as f64 / requests.count as f64 / 1e6,
        p50: costs.app_request_p50_ns.unwrap_or(0) as f64 / 1e6,
        p99: costs.app_request_p99_ns.unwrap_or(0) as f64 / 1e6,
    });
    (costs.app_requests_per_s, latencies)
}

/// SMP's `ServiceMeshConfig`, with the fields a node profile can fill.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MeshConfig {
    pub smp_version: &'static str,
    pub id: String,
    /// One of SMP's `ServiceMesh.Type` names; `INVALID_MESH` when no known mesh was seen.
    pub mesh_type: &'static str,
    /// Every process with the proxy role, per-node proxies included.
    pub sidecar: Footprint,
    /// Every process with the control role.
    pub mesh_control_plane: Footprint,
}

/// SMP's count / CPU / memory triple.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Footprint {
    /// Sidecars: pods with a proxy process, plus proxy processes outside any pod (per-node
    /// proxies such as ztunnel are one each). Control plane: pods with a control process, plus
    /// control processes outside any pod.
    pub count: u32,
    /// Mean CPU over the window in millicores: CPU time / window length * 1000, rounded.
    pub cpu_mcores: u32,
    /// Resident memory at the end of the window, in MiB (2^20 bytes), rounded.
    pub mem_mb: u32,
}

/// What SMP has no field for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Extension {
    /// The node's MeshMark exactly as the profile JSON has it.
    #[serde(flatten)]
    pub node: MeshMark,
    pub pods: Vec<PodMeshMark>,
    /// The mesh presets whose rules gave processes the proxy or control role, with the SMP
    /// mesh type each maps to.
    pub meshes: Vec<DetectedMesh>,
    /// Why `mesh_type` is what it is, when that is not a plain detection.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DetectedMesh {
    /// The preset family, e.g. `istio` for `preset:istio/sidecar` and `preset:istio-ambient/...`.
    pub preset: String,
    pub mesh_type: &'static str,
    /// CPU nanoseconds of its proxy processes in the window.
    pub proxy_cpu_ns: u64,
    pub processes: u32,
}

/// The SMP `ServiceMesh.Type` of a preset family, if SMP names that mesh.
pub fn smp_mesh_type(family: &str) -> Option<&'static str> {
    Some(match family {
        "istio" | "istio-ambient" => "ISTIO",
        "linkerd" => "LINKERD",
        "kuma" => "KUMA",
        "consul" => "CONSUL",
        "cilium" => "CILIUM_SERVICE_MESH",
        "nginx-mesh" => "NGINX_SERVICE_MESH",
        _ => return None,
    })
}

/// SMP's value for "no mesh".
pub const INVALID_MESH: &str = "INVALID_MESH";

/// `preset:istio/sidecar` -> `istio`; `None` for user rules, defaults and built-ins.
fn preset_family(rule: &str) -> Option<&str> {
    let rest = rule.strip_prefix("preset:")?;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// The mesh type of a scored report and the notes explaining it.
///
/// The data plane decides: the mesh whose proxies used the most CPU. Control-plane presets only
/// count when no proxy names a mesh, so a node running istiod but no sidecar still says ISTIO.
pub fn mesh_type(report: &Report) -> (&'static str, Vec<DetectedMesh>, Vec<String>) {
    let procs = &report.snapshot.processes;
    let proxies: Vec<&ProcessSample> = procs
        .iter()
        .filter(|p| p.role == Some(Role::Proxy))
        .collect();
    let mut meshes: BTreeMap<String, DetectedMesh> = BTreeMap::new();
    for p in procs
        .iter()
        .filter(|p| matches!(p.role, Some(Role::Proxy | Role::Control)))
    {
        let Some(family) = p.rule.as_deref().and_then(preset_family) else {
            continue;
        };
        let Some(mesh_type) = smp_mesh_type(family) else {
            continue;
        };
        let entry = meshes
            .entry(family.to_owned())
            .or_insert_with(|| DetectedMesh {
                preset: family.to_owned(),
                mesh_type,
                proxy_cpu_ns: 0,
                processes: 0,
            });
        entry.processes = entry.processes.saturating_add(1);
        if p.role == Some(Role::Proxy) {
            entry.proxy_cpu_ns = entry.proxy_cpu_ns.saturating_add(p.cpu_ns);
        }
    }
    let meshes: Vec<DetectedMesh> = meshes.into_values().collect();
    let mut notes = Vec::new();
    let mut types: Vec<&'static str> = meshes.iter().map(|m| m.mesh_type).collect();
    types.sort_unstable();
    types.dedup();
    let chosen = meshes
        .iter()
        .max_by(|a, b| {
            a.proxy_cpu_ns
                .cmp(&b.proxy_cpu_ns)
                // On a tie, the alphabetically first family wins, so the choice is stable.
                .then_with(|| b.preset.cmp(&a.preset))
        })
        .map(|m| m.mesh_type);
    if proxies.is_empty() {
        notes.push(
            "no proxy process in the profile: no mesh data plane was measured, the sidecar block \
             is empty and MeshMark is 100 by definition"
                .to_owned(),
        );
    } else if chosen.is_none() {
        let mut rules: Vec<&str> = proxies.iter().filter_map(|p| p.rule.as_deref()).collect();
        rules.sort_unstable();
        rules.dedup();
        notes.push(format!(
            "proxies were measured, but no rule that matched them names a mesh SMP knows \
             (rules: {}); mesh_type is INVALID_MESH",
            rules.join(", ")
        ));
    }
    if types.len() > 1 {
        notes.push(format!(
            "processes of several meshes were seen ({}); mesh_type is the one whose proxies used \
             the most CPU",
            types.join(", ")
        ));
    }
    (chosen.unwrap_or(INVALID_MESH), meshes, notes)
}

/// The SMP document of a scored report.
pub fn smp_result(report: &Report) -> SmpResult {
    let snapshot = &report.snapshot;
    let id = format!("{}/{}", snapshot.node, snapshot.window.start);
    let (mesh_type, meshes, notes) = mesh_type(report);
    let window_ns = snapshot.window.duration_ns;
    let footprint = |role: Role| {
        let members: Vec<&ProcessSample> = snapshot
            .processes
            .iter()
            .filter(|p| p.role == Some(role))
            .collect();
        footprint(&members, window_ns)
    };
    let mesh_config = MeshConfig {
        smp_version: SMP_VERSION,
        id: format!("{id}/mesh"),
        mesh_type,
        sidecar: footprint(Role::Proxy),
        mesh_control_plane: footprint(Role::Control),
    };
    let (actual_qps, latencies_ms) = request_fields(report);
    SmpResult {
        smp_version: SMP_VERSION,
        actual_qps,
        latencies_ms,
        labels: labels(report, mesh_type),
        id,
        start_time: snapshot.window.start.clone(),
        end_time: snapshot.window.end.clone(),
        mesh_config,
        meshmark: Extension {
            node: report.meshmark.clone(),
            pods: report.pods.clone(),
            meshes,
            notes,
        },
    }
}

/// Pretty JSON of the SMP document, with a trailing newline.
pub fn to_smp_json(report: &Report) -> serde_json::Result<String> {
    let mut text = serde_json::to_string_pretty(&smp_result(report))?;
    text.push('\n');
    Ok(text)
}

fn footprint(members: &[&ProcessSample], window_ns: u64) -> Footprint {
    let mut pods: Vec<&str> = members
        .iter()
        .filter_map(|p| p.pod_uid.as_deref())
        .collect();
    pods.sort_unstable();
    pods.dedup();
    let outside_pods = members.iter().filter(|p| p.pod_uid.is_none()).count();
    let cpu_ns: u64 = members
        .iter()
        .fold(0u64, |sum, p| sum.saturating_add(p.cpu_ns));
    let rss: u64 = members
        .iter()
        .fold(0u64, |sum, p| sum.saturating_add(p.rss_bytes.unwrap_or(0)));
    // Rounded; past u32 (SMP's int32 fields are wider than any node) it stays at the maximum.
    let to_u32 = |v: f64| match super::whole(v.round()) {
        Some(w) => u32::try_from(w).unwrap_or(u32::MAX),
        None if v > 0.0 => u32::MAX,
        None => 0,
    };
    Footprint {
        count: u32::try_from(pods.len().saturating_add(outside_pods)).unwrap_or(u32::MAX),
        cpu_mcores: if window_ns == 0 {
            0
        } else {
            to_u32(cpu_ns as f64 / window_ns as f64 * 1000.0)
        },
        mem_mb: to_u32(rss as f64 / f64::from(1u32 << 20)),
    }
}

/// The figures of the `meshmark` extension as SMP labels (a string map). Numbers are written
/// with Rust's shortest round-trip form, so a label parses back to exactly the JSON's value;
/// undefined figures are left out.
fn labels(report: &Report, mesh_type: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut put = |key: &str, value: String| {
        labels.insert(format!("{LABEL_PREFIX}{key}"), value);
    };
    let mark = &report.meshmark;
    put("node", report.snapshot.node.clone());
    put("mesh_type", mesh_type.to_owned());
    put("score", mark.score.to_string());
    if let Some(note) = mark.note {
        put("note", note_text(note));
    }
    for (class, scored) in &mark.classes {
        put(&format!("class.{}", class.name()), scored.score.to_string());
        for (mue, value) in &scored.mues {
            put(&format!("mue.{}", mue.name()), value.to_string());
        }
    }
    for excluded in &mark.excluded {
        put(
            &format!("excluded.{}", excluded.class.name()),
            excluded.reason.clone(),
        );
    }
    for (name, value) in super::unit_cost_fields(&mark.unit_costs) {
        if let Some(value) = value {
            put(&format!("unit_cost.{name}"), value.to_string());
        }
    }
    put("pods_scored", report.pods.len().to_string());
    put("window_ns", report.snapshot.window.duration_ns.to_string());
    labels
}

/// The note's JSON text ("no mesh data plane detected", ...).
pub fn note_text(note: crate::model::Note) -> String {
    serde_json::to_value(note)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{classified as sample, report as window_report};

    fn report(processes: Vec<ProcessSample>) -> Report {
        window_report(processes, 1_000_000_000)
    }

    /// SMP's request rate and latency summary come from the application's exact turns: 400
    /// requests of 1 ms in a 2 s window; absent without requests.
    #[test]
    fn requests_fill_smps_rate_and_latencies() {
        let mut app = sample(1, "web", Role::App, "r", 10);
        app.requests = Some(crate::snapshot::RequestStats {
            count: 400,
            total_ns: 400_000_000,
            latency_log2_ns: crate::snapshot::SyscallStats::buckets_from_hist(&{
                let mut hist = [0u64; 32];
                hist[19] = 400;
                hist
            }),
            ..crate::snapshot::RequestStats::EMPTY
        });
        let proxy = sample(2, "envoy", Role::Proxy, "r", 5);
        let result = smp_result(&window_report(vec![app, proxy.clone()], 2_000_000_000));
        assert_eq!(result.actual_qps, Some(200.0));
        let latencies = result.latencies_ms.expect("latencies");
        assert_eq!(latencies.average, 1.0);
        assert_eq!(latencies.p99, 1.048_576);
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(json["meshmark"]["model"], 2);

        let without = smp_result(&window_report(vec![proxy], 2_000_000_000));
        let json = serde_json::to_value(&without).unwrap();
        assert!(json.get("actual_qps").is_none() && json.get("latencies_ms").is_none());
    }

    #[test]
    fn the_busiest_mesh_data_plane_names_the_mesh() {
        let r = report(vec![
            sample(
                1,
                "ztunnel",
                Role::Proxy,
                "preset:istio-ambient/ztunnel",
                300,
            ),
            sample(2, "cilium-envoy", Role::Proxy, "preset:cilium/envoy", 200),
            sample(3, "cilium-agent", Role::Control, "preset:cilium/agent", 900),
            sample(4, "app", Role::App, "default:pod-process", 900),
        ]);
        let (ty, meshes, notes) = mesh_type(&r);
        assert_eq!(ty, "ISTIO");
        assert_eq!(meshes.len(), 2);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("CILIUM_SERVICE_MESH, ISTIO"), "{notes:?}");
    }

    #[test]
    fn control_plane_alone_still_names_the_mesh_but_notes_no_proxy() {
        let r = report(vec![sample(
            1,
            "linkerd-destination",
            Role::Control,
            "preset:linkerd/controller",
            5,
        )]);
        let (ty, _, notes) = mesh_type(&r);
        assert_eq!(ty, "LINKERD");
        assert!(notes[0].starts_with("no proxy process"), "{notes:?}");
    }

    #[test]
    fn a_generic_proxy_is_not_a_mesh() {
        let r = report(vec![sample(1, "envoy", Role::Proxy, "preset:envoy", 5)]);
        let (ty, meshes, notes) = mesh_type(&r);
        assert_eq!(ty, INVALID_MESH);
        assert!(meshes.is_empty());
        assert!(notes[0].contains("preset:envoy"), "{notes:?}");
    }

    #[test]
    fn footprint_counts_pods_once_and_per_node_proxies_each() {
        let mut a = sample(1, "envoy", Role::Proxy, "r", 250_000_000);
        a.pod_uid = Some("p1".into());
        a.rss_bytes = Some(30 << 20);
        let mut b = sample(2, "pilot-agent", Role::Proxy, "r", 250_000_000);
        b.pod_uid = Some("p1".into());
        b.rss_bytes = Some((20 << 20) + (1 << 19));
        let c = sample(3, "ztunnel", Role::Proxy, "r", 1_000_000_000);
        let f = footprint(&[&a, &b, &c], 2_000_000_000);
        assert_eq!(
            f,
            Footprint {
                count: 2,
                cpu_mcores: 750,
                mem_mb: 51, // 50.5 MiB rounds up
            }
        );
        assert_eq!(footprint(&[], 0), Footprint::default());
    }
}
