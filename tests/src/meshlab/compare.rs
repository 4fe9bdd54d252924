//! The lab's runs side by side (pure): MeshMark, classes, MUEs, unit costs, the requests and
//! mesh-added latency the kernel measured, proxy CPU per request from wrk's request count, and
//! wrk's throughput and latency.

use serde_json::Value;

use super::LabRun;

use meshmark_agent::model::{Class, MUES};

/// One row: a label and a value per run, already formatted.
type Row = (String, Vec<String>);

/// A text table with one column per run.
pub fn side_by_side(runs: &[&LabRun]) -> String {
    let mut rows: Vec<Row> = Vec::new();
    let mut row = |label: &str, value: &dyn Fn(&LabRun) -> String| {
        rows.push((label.to_string(), runs.iter().map(|r| value(r)).collect()));
    };
    row("MeshMark (node)", &|r| {
        score(&r.profile["meshmark"]["score"])
    });
    row("MeshMark (pods, mean)", &|r| {
        let scores: Vec<f64> = pods(r)
            .filter_map(|p| p["meshmark"]["score"].as_f64())
            .collect();
        mean(&scores).map_or("-".into(), |s| format!("{s:.1}"))
    });
    // Every class and MUE of the model (its registry), as the profile names them.
    for class in Class::ALL.map(Class::name) {
        row(&format!("class {class}"), &|r| {
            ratio(&r.profile["meshmark"]["classes"][class]["score"])
        });
    }
    for entry in MUES {
        let (class, mue) = (entry.class.name(), entry.name);
        row(&format!("MUE {mue}"), &|r| {
            ratio(&r.profile["meshmark"]["classes"][class]["mues"][mue])
        });
    }
    let costs = |r: &LabRun, name: &str| r.profile["meshmark"]["unit_costs"][name].as_f64();
    row("proxy CPU per app CPU", &|r| {
        costs(r, "proxy_cpu_per_app_cpu").map_or("-".into(), |v| format!("{v:.3}"))
    });
    row("proxy CPU per KiB", &|r| {
        costs(r, "proxy_cpu_ns_per_kib").map_or("-".into(), |v| format!("{:.2} us", v / 1e3))
    });
    row("proxy syscalls per KiB", &|r| {
        costs(r, "proxy_syscalls_per_kib").map_or("-".into(), |v| format!("{v:.3}"))
    });
    row("app requests/s (turns)", &|r| {
        costs(r, "app_requests_per_s").map_or("-".into(), |v| format!("{v:.0}"))
    });
    row("mesh-added latency per request", &|r| {
        costs(r, "mesh_added_latency_ns").map_or("-".into(), |v| micros(v / 1e9))
    });
    row("app request p50 (turns)", &|r| {
        costs(r, "app_request_p50_ns").map_or("-".into(), |v| micros(v / 1e9))
    });
    row("app CPU per request", &|r| per_request(r, "app"));
    row("proxy CPU per request", &|r| per_request(r, "proxy"));
    row("requests/s (wrk)", &|r| {
        format!(
            "{:.0}",
            r.wrk.iter().map(|w| w.requests_per_second).sum::<f64>()
        )
    });
    row("latency p50 (wrk, mean of pods)", &|r| {
        let p50: Vec<f64> = r.wrk.iter().map(|w| w.latency_p50_s).collect();
        mean(&p50).map_or("-".into(), micros)
    });
    row("latency p99 (wrk, worst pod)", &|r| {
        micros(r.wrk.iter().map(|w| w.latency_p99_s).fold(0.0, f64::max))
    });
    render(runs, &rows)
}

fn render(runs: &[&LabRun], rows: &[Row]) -> String {
    let label_width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let mut out = format!("{:<label_width$}", "");
    for run in runs {
        out.push_str(&format!("  {:>12}", run.mesh.name()));
    }
    out.push('\n');
    for (label, values) in rows {
        out.push_str(&format!("{label:<label_width$}"));
        for value in values {
            out.push_str(&format!("  {value:>12}"));
        }
        out.push('\n');
    }
    out
}

fn pods(run: &LabRun) -> impl Iterator<Item = &Value> {
    run.profile["pods"].as_array().into_iter().flatten()
}

/// A role's CPU per request, from the profile's role sums and wrk's request count.
fn per_request(run: &LabRun, role: &str) -> String {
    let requests: u64 = run.wrk.iter().map(|w| w.requests).sum();
    let cpu_ns = run.profile["meshmark"]["sums"][role]["cpu_ns"]
        .as_u64()
        .unwrap_or(0);
    if requests == 0 || cpu_ns == 0 {
        return "-".into();
    }
    format!("{:.1} us", cpu_ns as f64 / requests as f64 / 1e3)
}

fn score(value: &Value) -> String {
    value.as_f64().map_or("-".into(), |s| format!("{s:.1}"))
}

fn ratio(value: &Value) -> String {
    value.as_f64().map_or("-".into(), |v| format!("{v:.3}"))
}

fn micros(seconds: f64) -> String {
    format!("{:.0} us", seconds * 1e6)
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meshlab::{wrk::WrkResult, Mesh};

    fn run(mesh: Mesh, score: f64, proxy_cpu_ns: u64) -> LabRun {
        LabRun {
            mesh,
            profile_path: "x.json".into(),
            profile: serde_json::json!({
                "meshmark": {
                    "score": score,
                    "classes": {"compute": {"score": 0.5, "mues": {"cpu": 0.5}}},
                    "unit_costs": {"proxy_cpu_per_app_cpu": 1.0},
                    "sums": {"app": {"cpu_ns": 2_000_000_000u64}, "proxy": {"cpu_ns": proxy_cpu_ns}}
                },
                "pods": [{"meshmark": {"score": score}}]
            }),
            wrk: vec![WrkResult {
                requests: 100_000,
                requests_per_second: 20_000.0,
                latency_p50_s: 0.0008,
                latency_p99_s: 0.002,
                ..WrkResult::default()
            }],
            pods: Vec::new(),
        }
    }

    #[test]
    fn the_table_shows_each_run_in_its_column() {
        let off = run(Mesh::Off, 100.0, 0);
        let on = run(Mesh::On, 40.74, 1_500_000_000);
        let table = side_by_side(&[&off, &on]);
        let line = |label: &str| {
            table
                .lines()
                .find(|l| l.starts_with(label))
                .unwrap_or_else(|| panic!("no {label} row in\n{table}"))
                .split_whitespace()
                .rev()
                .take(2)
                .collect::<Vec<_>>()
        };
        assert!(table.lines().next().unwrap().contains("mesh-off"));
        assert_eq!(line("MeshMark (node)"), ["40.7", "100.0"]);
        // 1.5 s over 100,000 requests is 15 us a request; no proxy, no figure.
        assert_eq!(line("proxy CPU per request"), ["us", "15.0"]);
        assert!(table.contains("app CPU per request"));
        assert_eq!(line("requests/s"), ["20000", "20000"]);
        assert_eq!(line("MUE net"), ["-", "-"]);
    }
}
