//! The consumption classes and their MUEs, and why a class can have nothing to say. Which
//! measures feed each MUE, and its name and class, are in the registry (`super::measures`).

use serde::{Deserialize, Serialize};

use super::measures::{MEASURES, MUES};
use super::sums::RoleSums;

/// A kind of resource the mesh may cost; the score is the mean over classes, so each resource
/// weighs the same however many MUEs it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Compute,
    Network,
    Kernel,
    Memory,
    Storage,
    Latency,
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
    Io,
    Latency,
    Cycles,
}

impl Class {
    pub const ALL: [Class; 7] = [
        Class::Compute,
        Class::Network,
        Class::Kernel,
        Class::Memory,
        Class::Storage,
        Class::Latency,
        Class::Microarch,
    ];

    /// The name used in JSON and tables.
    pub fn name(self) -> &'static str {
        match self {
            Class::Compute => "compute",
            Class::Network => "network",
            Class::Kernel => "kernel",
            Class::Memory => "memory",
            Class::Storage => "storage",
            Class::Latency => "latency",
            Class::Microarch => "microarch",
        }
    }

    /// The class's MUEs, in registry order; none for a class whose signals have no producer
    /// yet (`microarch`, until hardware counters are read).
    pub fn mues(self) -> impl Iterator<Item = Mue> {
        MUES.into_iter()
            .filter(move |entry| entry.class == self)
            .map(|entry| entry.mue)
    }

    /// Why the class has no MUE with data. `unreadable` says that no process in scope had a
    /// reading of the class's signals at all, which only optional signals (memory, counters) can
    /// lack; otherwise application and mesh together simply used none of the resource.
    pub fn exclusion_reason(self, unreadable: bool) -> &'static str {
        match (self, unreadable) {
            (Class::Memory, true) => "no memory readings",
            (Class::Microarch, true) => "no hardware counters (PMU) on this node",
            (Class::Microarch, false) => "application and mesh processes ran no CPU cycles",
            (Class::Compute, _) => "application and mesh processes used no CPU time",
            (Class::Network, _) => "application and mesh processes moved no socket bytes",
            (Class::Kernel, _) => "application and mesh processes made no syscalls",
            (Class::Memory, false) => "application and mesh processes held no resident memory",
            (Class::Storage, _) => "application and mesh processes read and wrote no disk bytes",
            (Class::Latency, true) => {
                "no request turns on application connections or inbound proxy connections"
            }
            (Class::Latency, false) => "application and mesh request turns took no time",
        }
    }
}

impl Mue {
    /// Number of MUEs.
    pub const COUNT: usize = 8;

    /// Every MUE, in the order of the classes: the one list of MUE (and weight) names.
    pub const ALL: [Mue; Mue::COUNT] = {
        let mut all = [Mue::Cpu; Mue::COUNT];
        let mut i = 0;
        while i < Mue::COUNT {
            all[i] = MUES[i].mue;
            i += 1;
        }
        all
    };

    /// The MUE called `name` in JSON, tables and the configuration's `[weights]`.
    pub fn from_name(name: &str) -> Option<Mue> {
        Mue::ALL.into_iter().find(|mue| mue.name() == name)
    }

    /// The name used in JSON and tables.
    pub fn name(self) -> &'static str {
        MUES[self as usize].name
    }

    pub fn class(self) -> Class {
        MUES[self as usize].class
    }

    /// The summed signal this MUE compares (the sum of its measures, saturating); `None` when
    /// the sums hold no reading of any of them. `MUE_latency` has no measure of its own: its
    /// sides are paired per pod (`super::latency`).
    pub fn signal(self, sums: &RoleSums) -> Option<u64> {
        MEASURES
            .iter()
            .filter(|m| m.mue == Some(self))
            .filter_map(|m| sums.get(m))
            .reduce(u64::saturating_add)
    }
}

#[cfg(test)]
mod names {
    use super::*;

    #[test]
    fn names_match_the_json_form() {
        for class in Class::ALL {
            assert_eq!(serde_json::to_value(class).unwrap(), class.name());
            for mue in class.mues() {
                assert_eq!(serde_json::to_value(mue).unwrap(), mue.name());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mue_belongs_to_exactly_one_class_in_order() {
        let listed: Vec<Mue> = Class::ALL.iter().flat_map(|c| c.mues()).collect();
        assert_eq!(listed, Mue::ALL);
    }

    #[test]
    fn names_lead_back_to_their_mue() {
        for mue in Mue::ALL {
            assert_eq!(Mue::from_name(mue.name()), Some(mue));
        }
        assert_eq!(Mue::from_name("network"), None);
        assert_eq!(Mue::from_name(""), None);
    }

    /// Documentation tables are the third place the names appear; they must list the same.
    #[test]
    fn docs_list_every_weight_and_only_those() {
        let configuration = include_str!("../../../docs/configuration.md");
        let weights_table = configuration
            .split("### `[weights]`")
            .nth(1)
            .and_then(|rest| rest.split("###").next())
            .expect("docs/configuration.md has a [weights] section");
        assert_eq!(first_column_names(weights_table), Mue::ALL.map(Mue::name));

        let formula = include_str!("../../../docs/formula.md");
        let classes_table = formula
            .split("| class | MUEs | signal |")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .expect("docs/formula.md has the class table");
        let mues: Vec<String> = classes_table
            .lines()
            .filter_map(|row| row.split('|').nth(2))
            .flat_map(|cell| cell.split(','))
            .map(|name| name.trim().trim_matches('`').to_owned())
            .filter(|name| !name.is_empty() && !name.starts_with("---"))
            .collect();
        assert_eq!(mues, Mue::ALL.map(Mue::name));
    }

    /// The backquoted names in the first column of a markdown table's rows.
    fn first_column_names(table: &str) -> Vec<String> {
        table
            .lines()
            .filter_map(|row| row.strip_prefix("| `"))
            .filter_map(|row| row.split('`').next())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn optional_signals_report_missing_readings() {
        let sums = RoleSums {
            cpu_ns: 1,
            ..Default::default()
        };
        assert_eq!(Mue::Cpu.signal(&sums), Some(1));
        assert_eq!(Mue::Mem.signal(&sums), None);
        assert_eq!(Mue::Io.signal(&sums), None);
    }
}
