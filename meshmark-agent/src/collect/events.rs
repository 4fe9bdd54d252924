//! The event ring buffer: decoding its records (pure) and a thread that keeps draining it so a
//! long window cannot overflow it. The thread also resolves each lifecycle record's cgroup id to
//! a path as it arrives, while that cgroup still exists.

use std::{
    mem::size_of,
    os::fd::{AsFd as _, AsRawFd as _},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
};

use aya::maps::{MapData, RingBuf};
use meshmark_common::{event_kind, ExecEvent, ProcessEvent, SlotFlush};

use super::accounting::{ClaimKey, ClaimReading};
use crate::inventory::cgroup_ids::CgroupIds;

/// Where a process was when it raised an event: its cgroup v2 id, and the path the drain
/// resolved it to (`None` until resolved, or when it could not be).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupAt {
    pub id: u64,
    pub path: Option<String>,
}

impl CgroupAt {
    fn id(id: u64) -> CgroupAt {
        CgroupAt { id, path: None }
    }
}

/// One decoded ring buffer record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Exec {
        tgid: u32,
        comm: String,
        /// The executed file as the kernel named it; `None` when it could not be read.
        exe: Option<String>,
        cgroup: CgroupAt,
    },
    Fork {
        parent_tgid: u32,
        child_tgid: u32,
        comm: String,
        cgroup: CgroupAt,
    },
    Exit {
        tgid: u32,
        comm: String,
        cgroup: CgroupAt,
    },
    /// Boxed: a flush carries a whole histogram, ten times the size of the other records.
    Flush(Box<ClaimReading>),
    /// A record this agent does not understand (an object/agent version mismatch).
    Unknown,
}

/// Decodes one record; every record starts with its kind as a native-endian u32.
pub fn decode(bytes: &[u8]) -> Record {
    let Some(kind) = bytes
        .get(..4)
        .map(|k| u32::from_ne_bytes(k.try_into().unwrap()))
    else {
        return Record::Unknown;
    };
    match kind {
        event_kind::EXEC => match read::<ExecEvent>(bytes) {
            Some(e) => Record::Exec {
                tgid: e.tgid,
                comm: comm_string(&e.comm),
                exe: Some(comm_string(&e.exe)).filter(|exe| !exe.is_empty()),
                cgroup: CgroupAt::id(e.cgroup_id),
            },
            None => Record::Unknown,
        },
        event_kind::EXIT | event_kind::FORK => {
            let Some(e) = read::<ProcessEvent>(bytes) else {
                return Record::Unknown;
            };
            let comm = comm_string(&e.comm);
            let cgroup = CgroupAt::id(e.cgroup_id);
            if kind == event_kind::EXIT {
                Record::Exit {
                    tgid: e.tgid,
                    comm,
                    cgroup,
                }
            } else {
                Record::Fork {
                    parent_tgid: e.tgid,
                    child_tgid: e.child_tgid,
                    comm,
                    cgroup,
                }
            }
        }
        event_kind::SLOT_FLUSH => match read::<SlotFlush>(bytes) {
            Some(f) => Record::Flush(Box::new(ClaimReading {
                key: ClaimKey {
                    slot: f.slot,
                    seq: f.claim_seq,
                },
                tid: f.tid,
                tgid: f.tgid,
                counters: f.counters,
            })),
            None => Record::Unknown,
        },
        _ => Record::Unknown,
    }
}

fn read<T: Copy>(bytes: &[u8]) -> Option<T> {
    (bytes.len() >= size_of::<T>())
        // SAFETY: length checked; T is a repr(C) plain-integer type from meshmark-common.
        .then(|| unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// A NUL-terminated kernel string (a `comm` of up to 16 bytes, a file name); the whole buffer
/// when it has no NUL.
pub fn comm_string(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// Ring buffer plus the records decoded from it but not yet taken.
struct Inbox {
    ring: RingBuf<MapData>,
    records: Vec<Record>,
    cgroups: CgroupIds,
}

impl Inbox {
    fn drain(&mut self) {
        while let Some(item) = self.ring.next() {
            let mut record = decode(&item);
            if let Record::Exec { cgroup, .. }
            | Record::Fork { cgroup, .. }
            | Record::Exit { cgroup, .. } = &mut record
            {
                cgroup.path = self.cgroups.resolve(cgroup.id);
            }
            self.records.push(record);
        }
    }
}

/// Drains the ring buffer in the background whenever the kernel signals data.
pub struct EventDrain {
    inbox: Arc<Mutex<Inbox>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EventDrain {
    pub fn start(ring: RingBuf<MapData>) -> std::io::Result<EventDrain> {
        let fd = ring.as_fd().as_raw_fd();
        let inbox = Arc::new(Mutex::new(Inbox {
            ring,
            records: Vec::new(),
            cgroups: CgroupIds::for_this_node(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("meshmark-events".into())
            .spawn({
                let (inbox, stop) = (inbox.clone(), stop.clone());
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        let mut pollfd = libc::pollfd {
                            fd,
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        // Wakes on data or every 100 ms to notice `stop`.
                        unsafe { libc::poll(&mut pollfd, 1, 100) };
                        inbox.lock().unwrap_or_else(|p| p.into_inner()).drain();
                    }
                }
            })?;
        Ok(EventDrain {
            inbox,
            stop,
            thread: Some(thread),
        })
    }

    /// Every record received so far, oldest first.
    pub fn take(&self) -> Vec<Record> {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        inbox.drain();
        std::mem::take(&mut inbox.records)
    }
}

impl Drop for EventDrain {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use meshmark_common::{flush_reason, ThreadCounters};

    use super::*;

    fn bytes_of<T>(value: &T) -> Vec<u8> {
        // SAFETY: test-only view of a repr(C) plain-data value.
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    #[test]
    fn decodes_process_events() {
        let mut comm = [0u8; 16];
        comm[..5].copy_from_slice(b"envoy");
        let mut exe = [0u8; meshmark_common::EXE_BYTES];
        exe[..15].copy_from_slice(b"/usr/bin/envoy\0");
        let exec = ExecEvent {
            kind: event_kind::EXEC,
            tgid: 42,
            tid: 42,
            _pad: 0,
            cgroup_id: 7,
            comm,
            exe,
        };
        assert_eq!(
            decode(&bytes_of(&exec)),
            Record::Exec {
                tgid: 42,
                comm: "envoy".into(),
                exe: Some("/usr/bin/envoy".into()),
                cgroup: CgroupAt::id(7),
            }
        );
        let unnamed = ExecEvent {
            exe: [0; meshmark_common::EXE_BYTES],
            ..exec
        };
        assert!(matches!(
            decode(&bytes_of(&unnamed)),
            Record::Exec { exe: None, .. }
        ));
        let fork = ProcessEvent {
            kind: event_kind::FORK,
            tgid: 42,
            tid: 42,
            child_tgid: 43,
            cgroup_id: 8,
            comm,
        };
        assert_eq!(
            decode(&bytes_of(&fork)),
            Record::Fork {
                parent_tgid: 42,
                child_tgid: 43,
                comm: "envoy".into(),
                cgroup: CgroupAt::id(8),
            }
        );
        let exit = ProcessEvent {
            kind: event_kind::EXIT,
            ..fork
        };
        assert!(matches!(
            decode(&bytes_of(&exit)),
            Record::Exit { tgid: 42, .. }
        ));
        // An exec record cut short is not read as a shorter record.
        assert_eq!(decode(&bytes_of(&exec)[..48]), Record::Unknown);
    }

    #[test]
    fn decodes_flushes() {
        let flush = SlotFlush {
            kind: event_kind::SLOT_FLUSH,
            reason: flush_reason::EXIT,
            slot: 7,
            claim_seq: 3,
            tid: 70,
            tgid: 69,
            counters: ThreadCounters {
                cpu_ns: 5,
                ..Default::default()
            },
        };
        let Record::Flush(r) = decode(&bytes_of(&flush)) else {
            panic!("not a flush")
        };
        assert_eq!(
            (r.key, r.tid, r.tgid, r.counters.cpu_ns),
            (ClaimKey { slot: 7, seq: 3 }, 70, 69, 5)
        );
    }

    #[test]
    fn short_or_unknown_records_are_unknown() {
        assert_eq!(decode(&[]), Record::Unknown);
        assert_eq!(
            decode(&event_kind::SLOT_FLUSH.to_ne_bytes()),
            Record::Unknown
        );
        assert_eq!(decode(&99u32.to_ne_bytes()), Record::Unknown);
    }

    #[test]
    fn comm_stops_at_nul_and_tolerates_full_length() {
        assert_eq!(comm_string(b"cat\0garbage\0\0\0\0\0"), "cat");
        assert_eq!(comm_string(b"0123456789abcdef"), "0123456789abcdef");
    }
}
