//! Properties of the model over arbitrary measurements and options.

use proptest::prelude::*;

use super::classes::{Class, Mue};
use super::fixtures::{input, Usage};
use super::input::{NodeContext, ProcessInput};
use super::score::{score_node, score_pods};
use super::weights::{ModelOptions, Weights};
use crate::role::Role;
use crate::snapshot::ProcessSample;

/// Up to about 11 days of CPU or 1 PB per process: far beyond a window, far below overflow.
const MAX_SIGNAL: u64 = 1 << 50;

fn usage() -> impl Strategy<Value = Usage> {
    let signal = || prop_oneof![Just(0), 0..MAX_SIGNAL];
    (
        signal(),
        signal(),
        signal(),
        signal(),
        proptest::option::of(signal()),
        signal(),
    )
        .prop_map(
            |(cpu_ns, net_bytes, syscall_ns, syscalls, rss_bytes, disk_bytes)| Usage {
                cpu_ns,
                net_bytes,
                syscall_ns,
                syscalls,
                rss_bytes,
                disk_bytes,
            },
        )
}

fn role() -> impl Strategy<Value = Role> {
    prop::sample::select(Role::ALL.to_vec())
}

fn processes() -> impl Strategy<Value = Vec<Proc>> {
    prop::collection::vec(
        (role(), proptest::option::of(0u8..3), any::<bool>(), usage()),
        0..8,
    )
}

fn weight_in_range() -> impl Strategy<Value = f64> {
    prop_oneof![Just(-0.5), Just(0.0), Just(0.5), -0.5f64..=0.5]
}

fn options() -> impl Strategy<Value = ModelOptions> {
    (
        prop::array::uniform::<_, { Mue::COUNT }>(weight_in_range()),
        any::<bool>(),
    )
        .prop_map(|(w, count_control_plane)| ModelOptions {
            weights: weights_from(w),
            count_control_plane,
        })
}

/// Weights in the order of [`Weights::named`].
fn weights_from(w: [f64; Mue::COUNT]) -> Weights {
    Mue::ALL
        .into_iter()
        .zip(w)
        .fold(Weights::default(), |weights, (mue, value)| {
            weights.with(mue, value)
        })
}

const PODS: [&str; 3] = ["pod-0", "pod-1", "pod-2"];

const CTX: NodeContext = NodeContext {
    window_ns: 10_000_000_000,
    ncpu: 2,
    idle_ns: 1_000_000_000,
};

/// A generated process: role, pod index, node-level, usage.
type Proc = (Role, Option<u8>, bool, Usage);

fn samples(procs: &[Proc]) -> Vec<ProcessSample> {
    procs
        .iter()
        .map(|(_, _, _, usage)| usage.sample())
        .collect()
}

fn inputs<'a>(procs: &[Proc], samples: &'a [ProcessSample]) -> Vec<ProcessInput<'a>> {
    procs
        .iter()
        .zip(samples)
        .map(|(&(role, pod, node_level, _), sample)| ProcessInput {
            node_level,
            ..input(role, pod.map(|p| PODS[usize::from(p)]), sample)
        })
        .collect()
}

fn node_score(procs: &[Proc], opts: &ModelOptions) -> f64 {
    let samples = samples(procs);
    score_node(&inputs(procs, &samples), &CTX, opts)
        .unwrap()
        .score
}

/// Adds `amount` of signal `which` to a usage (an absent reading becomes `amount`).
fn add_signal(usage: &mut Usage, which: usize, amount: u64) {
    let add = |v: &mut u64| *v += amount;
    match which {
        0 => add(&mut usage.cpu_ns),
        1 => add(&mut usage.net_bytes),
        2 => add(&mut usage.syscall_ns),
        3 => add(&mut usage.syscalls),
        4 => add(usage.rss_bytes.get_or_insert(0)),
        _ => add(&mut usage.disk_bytes),
    }
}

proptest! {
    #[test]
    fn scores_stay_within_bounds(procs in processes(), opts in options()) {
        let samples = samples(&procs);
        let inputs = inputs(&procs, &samples);
        let node = score_node(&inputs, &CTX, &opts).unwrap();
        let pods = score_pods(&inputs, &CTX, &opts).unwrap();
        for mark in std::iter::once(&node).chain(pods.iter().map(|p| &p.meshmark)) {
            prop_assert!((0.0..=100.0).contains(&mark.score), "score {}", mark.score);
            prop_assert_eq!(mark.classes.len() + mark.excluded.len(), Class::ALL.len());
            for class in mark.classes.values() {
                prop_assert!((0.0..=1.0).contains(&class.score));
                for v in class.mues.values().chain(class.weighted_mues.values()) {
                    prop_assert!((0.0..=1.0).contains(v), "mue {}", v);
                }
            }
        }
    }

    #[test]
    fn more_proxy_consumption_never_raises_the_score(
        procs in processes(),
        opts in options(),
        target in any::<prop::sample::Index>(),
        new_proxy in any::<bool>(),
        which in 0usize..6,
        amount in 1..MAX_SIGNAL,
    ) {
        let before = node_score(&procs, &opts);
        let mut more = procs.clone();
        let proxies: Vec<usize> = (0..more.len()).filter(|&i| more[i].0 == Role::Proxy).collect();
        let slot = if new_proxy || proxies.is_empty() {
            more.push((Role::Proxy, None, false, Usage::default()));
            more.len() - 1
        } else {
            proxies[target.index(proxies.len())]
        };
        add_signal(&mut more[slot].3, which, amount);
        let after = node_score(&more, &opts);
        prop_assert!(after <= before, "{} -> {}", before, after);
    }

    #[test]
    fn weights_out_of_range_are_always_errors(
        procs in processes(),
        which in 0usize..Mue::COUNT,
        bad in prop_oneof![
            (0.5f64..1e12).prop_filter("above the range", |w| *w > 0.5),
            -1e12f64..-0.5,
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
        ],
    ) {
        let mut w = [0.0; Mue::COUNT];
        w[which] = bad;
        let opts = ModelOptions { weights: weights_from(w), count_control_plane: false };
        let samples = samples(&procs);
        let inputs = inputs(&procs, &samples);
        let err = score_node(&inputs, &CTX, &opts).unwrap_err();
        prop_assert_eq!(err.name, opts.weights.named()[which].0);
        prop_assert!(score_pods(&inputs, &CTX, &opts).is_err());
    }
}
