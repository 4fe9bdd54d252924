//! The consumption classes and their MUEs: which signal each MUE compares, which weight it takes,
//! and why a class can have nothing to say.

use serde::{Deserialize, Serialize};

use super::sums::RoleSums;
use super::weights::Weights;

/// A kind of resource the mesh may cost; the score is the mean over classes, so each resource
/// weighs the same however many MUEs it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Compute,
    Network,
    Kernel,
    Memory,
    Microarch,
}

/// One Mesh Utilization Efficiency: the application's share of one signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mue {
    Cpu,
    Net,
    SyscallTime,
    Syscalls,
    Mem,
    Cycles,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::Compute,
        Class::Network,
        Class::Kernel,
        Class::Memory,
        Class::Microarch,
    ];

    /// The name used in JSON and tables.
    pub fn name(self) -> &'static str {
        match self {
            Class::Compute => "compute",
            Class::Network => "network",
            Class::Kernel => "kernel",
            Class::Memory => "memory",
            Class::Microarch => "microarch",
        }
    }

    pub fn mues(self) -> &'static [Mue] {
        match self {
            Class::Compute => &[Mue::Cpu],
            Class::Network => &[Mue::Net],
            Class::Kernel => &[Mue::SyscallTime, Mue::Syscalls],
            Class::Memory => &[Mue::Mem],
            Class::Microarch => &[Mue::Cycles],
        }
    }

    /// Why the class has no MUE with data. `unreadable` says that no process in scope had a
    /// reading of the class's signals at all, which only optional signals (memory, counters) can
    /// lack; otherwise application and mesh together simply used none of the resource.
    pub fn exclusion_reason(self, unreadable: bool) -> &'static str {
        match (self, unreadable) {
            (Class::Memory, true) => "no memory readings",
            (Class::Microarch, true) => "no hardware counters (PMU) on this node",
            (Class::Compute, _) => "application and mesh processes used no CPU time",
            (Class::Network, _) => "application and mesh processes moved no socket bytes",
            (Class::Kernel, _) => "application and mesh processes made no syscalls",
            (Class::Memory, false) => "application and mesh processes held no resident memory",
            (Class::Microarch, false) => "application and mesh processes counted no CPU cycles",
        }
    }
}

impl Mue {
    /// The name used in JSON and tables.
    pub fn name(self) -> &'static str {
        match self {
            Mue::Cpu => "cpu",
            Mue::Net => "net",
            Mue::SyscallTime => "syscall_time",
            Mue::Syscalls => "syscalls",
            Mue::Mem => "mem",
            Mue::Cycles => "cycles",
        }
    }

    /// The summed signal this MUE compares; `None` when the sums hold no reading of it.
    pub fn signal(self, sums: &RoleSums) -> Option<u64> {
        match self {
            Mue::Cpu => Some(sums.cpu_ns),
            Mue::Net => Some(sums.net_bytes),
            Mue::SyscallTime => Some(sums.syscalls.total_ns),
            Mue::Syscalls => Some(sums.syscalls.count),
            Mue::Mem => sums.rss_bytes,
            Mue::Cycles => sums.cycles,
        }
    }

    pub fn weight(self, weights: &Weights) -> f64 {
        match self {
            Mue::Cpu => weights.cpu,
            Mue::Net => weights.net,
            Mue::SyscallTime => weights.syscall_time,
            Mue::Syscalls => weights.syscalls,
            Mue::Mem => weights.mem,
            Mue::Cycles => weights.cycles,
        }
    }
}

#[cfg(test)]
mod names {
    use super::*;

    #[test]
    fn names_match_the_json_form() {
        for class in Class::ALL {
            assert_eq!(serde_json::to_value(class).unwrap(), class.name());
            for &mue in class.mues() {
                assert_eq!(serde_json::to_value(mue).unwrap(), mue.name());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mue_belongs_to_exactly_one_class() {
        let mut listed: Vec<Mue> = Class::ALL.iter().flat_map(|c| c.mues()).copied().collect();
        listed.sort();
        assert_eq!(
            listed,
            vec![
                Mue::Cpu,
                Mue::Net,
                Mue::SyscallTime,
                Mue::Syscalls,
                Mue::Mem,
                Mue::Cycles
            ]
        );
    }

    #[test]
    fn names_and_weights_agree_with_the_weights_table() {
        let weights = Weights {
            cpu: 0.1,
            net: 0.2,
            syscall_time: 0.3,
            syscalls: 0.4,
            mem: 0.5,
            cycles: -0.1,
        };
        let mues = [
            Mue::Cpu,
            Mue::Net,
            Mue::SyscallTime,
            Mue::Syscalls,
            Mue::Mem,
            Mue::Cycles,
        ];
        for (mue, (name, value)) in mues.into_iter().zip(weights.named()) {
            assert_eq!(serde_json::to_value(mue).unwrap(), name);
            assert_eq!(mue.weight(&weights), value, "{name}");
        }
    }

    #[test]
    fn optional_signals_report_missing_readings() {
        let sums = RoleSums {
            cpu_ns: 1,
            ..Default::default()
        };
        assert_eq!(Mue::Cpu.signal(&sums), Some(1));
        assert_eq!(Mue::Mem.signal(&sums), None);
        assert_eq!(Mue::Cycles.signal(&sums), None);
    }
}
