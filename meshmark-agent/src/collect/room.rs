//! Room in the collector's maps after a burst. A `HashMap` keeps the capacity it grew to when
//! entries leave, so maps keyed by process or thread claim would hold, for the rest of the
//! agent's life, room for the most processes a window ever saw: a burst of churn (a node
//! restarting its pods) would set the agent's memory for good. The maps give that room back once
//! they hold less than a quarter of it, keeping twice what they hold, so they neither shrink
//! and grow at every window nor shrink small maps at all.

/// Entries a map keeps room for at least: a node's ordinary scale, where shrinking saves little.
pub const MIN_ROOM: usize = 1024;

/// The capacity to shrink to when a map of `capacity` holds `len` entries; `None` to keep it.
pub fn shrink_to(capacity: usize, len: usize) -> Option<usize> {
    let keep = len.saturating_mul(2).max(MIN_ROOM);
    (capacity > keep.saturating_mul(2)).then_some(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_back_room_only_when_mostly_empty() {
        assert_eq!(shrink_to(100_000, 0), Some(MIN_ROOM));
        assert_eq!(shrink_to(100_000, 10_000), Some(20_000));
        assert_eq!(shrink_to(100_000, 25_000), None, "a quarter full stays");
        assert_eq!(shrink_to(2 * MIN_ROOM, 0), None, "small maps stay");
        assert_eq!(shrink_to(2 * MIN_ROOM + 1, 0), Some(MIN_ROOM));
        assert_eq!(shrink_to(usize::MAX, usize::MAX), None);
    }

    #[test]
    fn a_shrunk_map_is_not_shrunk_again_until_it_empties_further() {
        let (capacity, len) = (1 << 20, 100_000);
        let keep = shrink_to(capacity, len).unwrap();
        assert_eq!(shrink_to(keep, len), None);
        assert_eq!(shrink_to(keep, len / 2), None);
        assert!(shrink_to(keep, len / 4 - 1).is_some());
    }
}
