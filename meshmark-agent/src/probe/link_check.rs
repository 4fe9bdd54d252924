//! The agent's links into the eBPF object, checked without root: every program of every signal
//! table and every map and global the agent opens exists in the built object with the right
//! type, and every measure of the model has a producer.

use aya_obj::{Object, ProgramSection};
use object::{Object as _, ObjectSymbol as _};

use super::{
    hooks::{self, HookPoint, Signal},
    names, OBJECT,
};
use crate::model::{Source, MEASURES};

/// The built object, or `None` when this build carries none on purpose (`MESHMARK_SKIP_EBPF`).
fn built_object() -> Option<&'static [u8]> {
    if OBJECT.is_empty() {
        assert!(
            option_env!("MESHMARK_SKIP_EBPF").is_some(),
            "the eBPF object is empty although MESHMARK_SKIP_EBPF was not set"
        );
        return None;
    }
    Some(OBJECT)
}

fn section_fits(point: HookPoint, section: &ProgramSection) -> bool {
    matches!(
        (point, section),
        (HookPoint::Tracepoint { .. }, ProgramSection::BtfTracePoint)
            | (HookPoint::FExit { .. }, ProgramSection::FExit { .. })
            | (HookPoint::KProbe { .. }, ProgramSection::KProbe)
            | (HookPoint::KRetProbe { .. }, ProgramSection::KRetProbe)
    )
}

#[test]
fn every_program_the_tables_name_is_in_the_object_with_its_kind() {
    let Some(bytes) = built_object() else { return };
    let object = Object::parse(bytes).expect("the built eBPF object parses");
    let tables: [&[Signal]; 4] = [
        hooks::PROFILER,
        hooks::BENCH_FLOOR,
        hooks::BENCH_EMPTY,
        hooks::BENCH_CLOCK,
    ];
    let mut checked = 0;
    for signal in tables.into_iter().flatten() {
        for program in signal.alternatives.iter().flat_map(|a| a.programs) {
            let found = object.programs.get(program.name).unwrap_or_else(|| {
                panic!(
                    "{} ({}) is not in the eBPF object",
                    program.name, signal.name
                )
            });
            assert!(
                section_fits(program.point, &found.section),
                "{} is a {:?} program, but the table attaches it as {}",
                program.name,
                found.section,
                program.point
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} programs checked");
}

#[test]
fn every_map_and_global_the_agent_opens_is_in_the_object_with_its_type() {
    let Some(bytes) = built_object() else { return };
    let object = Object::parse(bytes).expect("the built eBPF object parses");
    for (name, kind) in names::MAPS {
        let map = object
            .maps
            .get(name)
            .unwrap_or_else(|| panic!("map {name} is not in the eBPF object"));
        assert_eq!(map.map_type(), kind as u32, "map {name} has the wrong type");
    }
    // Globals are symbols of a data section; their size must be the layout the agent writes.
    let elf = object::File::parse(bytes).expect("the built eBPF object is ELF");
    for (name, size) in names::GLOBALS {
        let symbol = elf
            .symbol_by_name(name)
            .unwrap_or_else(|| panic!("global {name} is not in the eBPF object"));
        assert_eq!(
            usize::try_from(symbol.size()).ok(),
            Some(size),
            "global {name} differs in size from the agent's"
        );
    }
}

/// A measure read from a kernel counter needs a signal that fills that counter; a counter
/// nothing fills would be a figure that is always zero.
#[test]
fn every_measure_has_a_producer() {
    for measure in MEASURES {
        match measure.source {
            Source::Kernel(counter) | Source::Counter(counter) => {
                let signal = hooks::filling(counter).unwrap_or_else(|| {
                    panic!("{}: no signal fills counter {counter}", measure.field)
                });
                assert!(
                    signal.alternatives.iter().all(|a| !a.programs.is_empty()),
                    "{}: signal {} has an alternative without programs",
                    measure.field,
                    signal.name
                );
            }
            Source::Proc(path) => assert!(path.starts_with("/proc/"), "{}", measure.field),
        }
    }
}
