//! Several scored profiles side by side: what changed between a baseline (the first profile)
//! and each of the others. Pure: the table, JSON and HTML comparisons all render this.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::smp;
use crate::{
    model::{Class, Excluded, Mue, Note, UnitCosts},
    report::Report,
    role::Role,
};

/// Schema tag of the comparison JSON document.
pub const COMPARISON_SCHEMA: &str = "meshmark.comparison/v1";

/// A scored profile and the name it is shown under.
#[derive(Clone, Copy, Debug)]
pub struct Labeled<'a> {
    pub label: &'a str,
    pub report: &'a Report,
}

/// The `meshmark.comparison/v1` document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub schema: &'static str,
    /// In the order given; the first is the baseline.
    pub profiles: Vec<Summary>,
    /// One per profile after the first, against the first.
    pub deltas: Vec<Delta>,
}

/// The figures of one profile that a comparison shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub label: String,
    pub node: String,
    pub start: String,
    pub duration_ns: u64,
    /// SMP mesh type, as `--format smp` gives it.
    pub mesh_type: &'static str,
    /// The node's MeshMark, full precision.
    pub score: f64,
    pub note: Option<Note>,
    /// Class scores of the classes that have data.
    pub classes: BTreeMap<Class, f64>,
    /// Measured (unweighted) MUEs that have data.
    pub mues: BTreeMap<Mue, f64>,
    pub excluded: Vec<Excluded>,
    pub unit_costs: UnitCosts,
    /// Totals per role, every role listed.
    pub roles: BTreeMap<Role, RoleTotals>,
    /// Per-pod MeshMarks.
    pub pods: Vec<PodScore>,
    /// Processes in the profile (idle task included).
    pub processes: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RoleTotals {
    pub processes: u64,
    pub cpu_ns: u64,
    pub net_bytes: u64,
    pub syscalls: u64,
    /// The registry's later measures (`read_bytes`, `write_bytes`), as the profile's `sums`
    /// has them: only those not zero.
    #[serde(flatten)]
    pub more: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PodScore {
    pub pod_uid: String,
    pub score: f64,
}

/// `profile - baseline` for every figure both have; `null` where either lacks it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Delta {
    pub label: String,
    pub baseline: String,
    pub score: f64,
    /// Over the classes either profile has.
    pub classes: BTreeMap<Class, Option<f64>>,
    /// Over the MUEs either profile has.
    pub mues: BTreeMap<Mue, Option<f64>>,
    /// By unit-cost field name, over every field.
    pub unit_costs: BTreeMap<String, Option<f64>>,
    /// CPU nanoseconds per role.
    pub role_cpu_ns: BTreeMap<Role, i128>,
    /// Command names of processes in the baseline but not in this profile, and the reverse:
    /// the process sets of the two windows differ by these.
    pub comms_only_in_baseline: Vec<String>,
    pub comms_only_here: Vec<String>,
}

impl Comparison {
    /// Compares `profiles`, the first being the baseline; one profile gives no deltas.
    pub fn build(profiles: &[Labeled]) -> Self {
        let summaries: Vec<Summary> = profiles.iter().map(summarize).collect();
        let deltas = match profiles.split_first() {
            Some((base, rest)) => rest
                .iter()
                .zip(&summaries[1..])
                .map(|(p, s)| delta(base, &summaries[0], p, s))
                .collect(),
            None => Vec::new(),
        };
        Comparison {
            schema: COMPARISON_SCHEMA,
            profiles: summaries,
            deltas,
        }
    }

    /// Pretty JSON, with a trailing newline.
    pub fn to_json(&self) -> serde_json::Result<String> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        Ok(text)
    }
}

fn summarize(p: &Labeled) -> Summary {
    let report = p.report;
    let mark = &report.meshmark;
    let snapshot = &report.snapshot;
    Summary {
        label: p.label.to_owned(),
        node: snapshot.node.clone(),
        start: snapshot.window.start.clone(),
        duration_ns: snapshot.window.duration_ns,
        mesh_type: smp::mesh_type(report).0,
        score: mark.score,
        note: mark.note,
        classes: mark.classes.iter().map(|(c, s)| (*c, s.score)).collect(),
        mues: mark
            .classes
            .values()
            .flat_map(|s| s.mues.iter().map(|(m, v)| (*m, *v)))
            .collect(),
        excluded: mark.excluded.clone(),
        unit_costs: mark.unit_costs,
        roles: mark
            .sums
            .iter()
            .map(|(role, sums)| {
                (
                    *role,
                    RoleTotals {
                        processes: sums.processes,
                        cpu_ns: sums.cpu_ns,
                        net_bytes: sums.net_bytes,
                        syscalls: sums.syscalls.count,
                        more: sums.more.clone(),
                    },
                )
            })
            .collect(),
        pods: report
            .pods
            .iter()
            .map(|pod| PodScore {
                pod_uid: pod.pod_uid.clone(),
                score: pod.meshmark.score,
            })
            .collect(),
        processes: snapshot.processes.len(),
    }
}

fn delta(base: &Labeled, base_s: &Summary, this: &Labeled, this_s: &Summary) -> Delta {
    fn diff<K: Ord + Copy>(a: &BTreeMap<K, f64>, b: &BTreeMap<K, f64>) -> BTreeMap<K, Option<f64>> {
        a.keys()
            .chain(b.keys())
            .map(|k| (*k, b.get(k).zip(a.get(k)).map(|(b, a)| b - a)))
            .collect()
    }
    let base_costs = super::unit_cost_fields(&base_s.unit_costs);
    let this_costs = super::unit_cost_fields(&this_s.unit_costs);
    let comms = |r: &Report| -> BTreeSet<String> {
        r.snapshot
            .processes
            .iter()
            .filter(|p| p.pid != 0)
            .map(|p| p.comm.clone())
            .collect()
    };
    let (base_comms, this_comms) = (comms(base.report), comms(this.report));
    Delta {
        label: this_s.label.clone(),
        baseline: base_s.label.clone(),
        score: this_s.score - base_s.score,
        classes: diff(&base_s.classes, &this_s.classes),
        mues: diff(&base_s.mues, &this_s.mues),
        unit_costs: base_costs
            .iter()
            .map(|(name, a)| {
                let b = this_costs.get(name).copied().flatten();
                (name.clone(), b.zip(*a).map(|(b, a)| b - a))
            })
            .collect(),
        role_cpu_ns: Role::ALL
            .into_iter()
            .map(|role| {
                let cpu = |s: &Summary| i128::from(s.roles.get(&role).map_or(0, |t| t.cpu_ns));
                // Both sides are u64s: the i128 difference never saturates.
                (role, cpu(this_s).saturating_sub(cpu(base_s)))
            })
            .collect(),
        comms_only_in_baseline: base_comms.difference(&this_comms).cloned().collect(),
        comms_only_here: this_comms.difference(&base_comms).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(procs: &[(&str, Role, u64)]) -> Report {
        crate::model::fixtures::report(crate::model::fixtures::classified_all(procs), 1_000)
    }

    #[test]
    fn deltas_are_against_the_first_and_null_where_one_side_lacks_data() {
        let mesh = report(&[("app", Role::App, 300), ("envoy", Role::Proxy, 100)]);
        let plain = report(&[("app", Role::App, 200), ("bash", Role::Node, 5)]);
        let cmp = Comparison::build(&[
            Labeled {
                label: "mesh",
                report: &mesh,
            },
            Labeled {
                label: "plain",
                report: &plain,
            },
        ]);
        assert_eq!(cmp.profiles.len(), 2);
        assert_eq!(cmp.deltas.len(), 1);
        let d = &cmp.deltas[0];
        assert_eq!((d.label.as_str(), d.baseline.as_str()), ("plain", "mesh"));
        assert!((d.score - 25.0).abs() < 1e-9, "{}", d.score);
        assert_eq!(d.mues[&Mue::Cpu], Some(0.25));
        assert_eq!(d.role_cpu_ns[&Role::Proxy], -100);
        assert_eq!(d.role_cpu_ns[&Role::App], -100);
        // Without a proxy the mesh side is empty: 0 mesh CPU per app CPU, against 1/3.
        let ratio = d.unit_costs["proxy_cpu_per_app_cpu"].unwrap();
        assert!((ratio + 1.0 / 3.0).abs() < 1e-12, "{ratio}");
        // Neither moved bytes: the cost per KiB is undefined on both sides.
        assert_eq!(d.unit_costs["proxy_cpu_ns_per_kib"], None);
        assert_eq!(d.comms_only_in_baseline, vec!["envoy".to_owned()]);
        assert_eq!(d.comms_only_here, vec!["bash".to_owned()]);
        assert_eq!(cmp.profiles[1].note, Some(Note::NoMeshDataPlane));

        let single = Comparison::build(&[Labeled {
            label: "only",
            report: &mesh,
        }]);
        assert!(single.deltas.is_empty());
        assert_eq!(single.profiles[0].score, mesh.meshmark.score);
    }
}
