//! The subject index: from a subject ID to its retention and its rows, for verify.
//!
//! A verify's subject is almost never in cache, so what the index costs is the number of cache
//! misses before the subject's row can be fetched. A general hash map pays two in a row (its
//! control bytes, then the bucket). This index pays one: a flat table of 32-byte slots, two to a
//! cache line, probed linearly from the slot the ID's own bits pick, at most three quarters full.
//! A subject with one template (the usual case) keeps its row in the slot itself; further rows
//! sit in a side list the slot points to.
//!
//! The IDs are 128 random bits the vault drew itself and MACs at rest, so their first eight bytes
//! are already a uniform hash and nobody can choose IDs that collide.

use crate::clock::UnixMillis;
use crate::subject::SubjectId;

/// A row index no row has: the mark of an empty slot, and of "no further rows".
const NONE: u32 = u32::MAX;

/// The most rows the index can name: every row index below [`NONE`].
pub(crate) const MAX_ROWS: usize = NONE as usize;

#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    id: [u8; 16],
    expires_at: UnixMillis,
    first_row: u32,
    /// Index into `SubjectIndex::more_rows`, or [`NONE`].
    more: u32,
}

const EMPTY: Slot = Slot {
    id: [0; 16],
    expires_at: 0,
    first_row: NONE,
    more: NONE,
};

impl Slot {
    fn is_empty(&self) -> bool {
        self.first_row == NONE
    }
}

/// One subject's retention and rows, as the index holds them.
pub(crate) struct SubjectRows<'a> {
    pub(crate) expires_at: UnixMillis,
    first: u32,
    more: &'a [u32],
}

impl SubjectRows<'_> {
    /// Every row of the subject, the first one first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.first)
            .chain(self.more.iter().copied())
            .map(|row| row as usize)
    }
}

/// Subject ID → retention and rows. See the module documentation.
#[derive(Default)]
pub(crate) struct SubjectIndex {
    /// A power of two long, or empty.
    slots: Vec<Slot>,
    len: usize,
    /// The rows past the first of subjects with several templates.
    more_rows: Vec<Vec<u32>>,
    /// Entries of `more_rows` whose subject is gone, for reuse.
    free_more: Vec<u32>,
}

fn home(id: &[u8; 16], mask: usize) -> usize {
    let mut first = [0u8; 8];
    first.copy_from_slice(&id[..8]);
    // Truncating on 32-bit targets keeps the low bits, which are as random as the rest.
    u64::from_le_bytes(first) as usize & mask
}

impl SubjectIndex {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Makes room for `additional` more subjects without another resize.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let needed = self.len.saturating_add(additional);
        if needed.saturating_mul(4) > self.slots.len().saturating_mul(3) {
            let capacity = needed
                .saturating_mul(4)
                .div_ceil(3)
                .max(16)
                .checked_next_power_of_two()
                .unwrap_or(usize::MAX / 2 + 1);
            self.rebuild(capacity);
        }
    }

    fn rebuild(&mut self, capacity: usize) {
        let mut slots = Vec::with_capacity(capacity);
        super::pages::advise_huge(slots.spare_capacity_mut());
        slots.resize(capacity, EMPTY);
        let old = std::mem::replace(&mut self.slots, slots);
        let mask = capacity - 1;
        for slot in old.into_iter().filter(|slot| !slot.is_empty()) {
            let mut at = home(&slot.id, mask);
            while !self.slots[at].is_empty() {
                at = (at + 1) & mask;
            }
            self.slots[at] = slot;
        }
    }

    /// Where `id` sits: `Ok(slot)`, or `Err(the empty slot that ends its probe)`.
    fn find(&self, id: &SubjectId) -> Result<usize, usize> {
        let mask = self.slots.len().wrapping_sub(1);
        let id = id.as_bytes();
        let mut at = home(id, mask);
        loop {
            let slot = &self.slots[at];
            if slot.is_empty() {
                return Err(at);
            }
            if slot.id == *id {
                return Ok(at);
            }
            at = (at + 1) & mask;
        }
    }

    fn found(&self, id: &SubjectId) -> Option<&Slot> {
        if self.len == 0 {
            return None;
        }
        self.find(id).ok().map(|at| &self.slots[at])
    }

    /// Starts fetching the slot where a search for `id` begins: the one cache miss of a lookup,
    /// begun before the work that precedes the lookup.
    pub(crate) fn prefetch(&self, id: &SubjectId) {
        let mask = self.slots.len().wrapping_sub(1);
        if let Some(slot) = self.slots.get(home(id.as_bytes(), mask)) {
            super::kernels::prefetch(std::slice::from_ref(slot));
        }
    }

    pub(crate) fn get(&self, id: &SubjectId) -> Option<SubjectRows<'_>> {
        self.found(id).map(|slot| SubjectRows {
            expires_at: slot.expires_at,
            first: slot.first_row,
            more: self.more_rows.get(slot.more as usize).map_or(&[], Vec::as_slice),
        })
    }

    pub(crate) fn contains(&self, id: &SubjectId) -> bool {
        self.found(id).is_some()
    }

    /// Records `row` for `id`, which gains it as a further row if it is already indexed. False,
    /// with nothing changed, for a row past [`MAX_ROWS`].
    #[must_use]
    pub(crate) fn add_row(&mut self, id: SubjectId, expires_at: UnixMillis, row: usize) -> bool {
        let Some(row) = u32::try_from(row).ok().filter(|row| *row != NONE) else {
            return false;
        };
        self.reserve(1);
        match self.find(&id) {
            Ok(at) => {
                let more = match self.slots[at].more {
                    NONE => {
                        let more = self.new_more();
                        self.slots[at].more = more;
                        more
                    }
                    more => more,
                };
                if let Some(list) = self.more_rows.get_mut(more as usize) {
                    list.push(row);
                }
            }
            Err(at) => {
                self.slots[at] = Slot {
                    id: *id.as_bytes(),
                    expires_at,
                    first_row: row,
                    more: NONE,
                };
                self.len += 1;
            }
        }
        true
    }

    fn new_more(&mut self) -> u32 {
        if let Some(free) = self.free_more.pop() {
            return free;
        }
        self.more_rows.push(Vec::new());
        // At most one list per subject, and subjects are fewer than rows, so this fits.
        u32::try_from(self.more_rows.len() - 1).unwrap_or(NONE)
    }

    /// Takes `id` out of the index, returning its rows.
    pub(crate) fn remove(&mut self, id: &SubjectId) -> Option<Vec<usize>> {
        if self.len == 0 {
            return None;
        }
        let mut hole = self.find(id).ok()?;
        let removed = self.slots[hole];
        let mut rows = vec![removed.first_row as usize];
        if let Some(list) = self.more_rows.get_mut(removed.more as usize) {
            rows.extend(list.drain(..).map(|row| row as usize));
            self.free_more.push(removed.more);
        }
        // Backward-shift deletion: pull later slots of the run into the hole whenever the hole
        // lies on their probe path, so no probe ever stops early at it.
        let mask = self.slots.len() - 1;
        let mut next = hole;
        loop {
            next = (next + 1) & mask;
            let slot = self.slots[next];
            if slot.is_empty() {
                break;
            }
            let wanted = home(&slot.id, mask);
            let stays = if hole <= next {
                hole < wanted && wanted <= next
            } else {
                hole < wanted || wanted <= next
            };
            if !stays {
                self.slots[hole] = slot;
                hole = next;
            }
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
        Some(rows)
    }

    /// Renames `id`'s row `from` to `to` (a row moved by compaction).
    pub(crate) fn move_row(&mut self, id: &SubjectId, from: usize, to: usize) {
        let (Ok(from), Ok(to)) = (u32::try_from(from), u32::try_from(to)) else {
            return;
        };
        if self.len == 0 {
            return;
        }
        let Ok(at) = self.find(id) else {
            return;
        };
        let slot = &mut self.slots[at];
        if slot.first_row == from {
            slot.first_row = to;
        } else if let Some(list) = self.more_rows.get_mut(slot.more as usize) {
            list.iter_mut()
                .filter(|row| **row == from)
                .for_each(|row| *row = to);
        }
    }

    /// Every subject with its retention, in no order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (SubjectId, UnixMillis)> + '_ {
        self.slots
            .iter()
            .filter(|slot| !slot.is_empty())
            .filter_map(|slot| SubjectId::from_bytes(&slot.id).map(|id| (id, slot.expires_at)))
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.more_rows.capacity() * std::mem::size_of::<Vec<u32>>()
            + self
                .more_rows
                .iter()
                .map(|list| list.capacity() * 4)
                .sum::<usize>()
            + self.free_more.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn id(seed: u8, low: u8) -> SubjectId {
        // Few distinct first bytes make long runs, collisions and wrap-arounds common.
        let mut bytes = [seed; 16];
        bytes[0] = low;
        SubjectId::from_bytes(&bytes).unwrap()
    }

    /// A prefetch is only a hint: on an empty index, and for known and unknown subjects, it
    /// reads nothing out of bounds and changes no answer.
    #[test]
    fn prefetching_a_slot_changes_nothing() {
        let mut index = SubjectIndex::default();
        index.prefetch(&id(1, 1));
        assert!(index.get(&id(1, 1)).is_none());
        for low in 0..50 {
            assert!(index.add_row(id(7, low), 0, usize::from(low)));
        }
        for low in 0..100 {
            index.prefetch(&id(7, low));
            let rows: Vec<usize> = index
                .get(&id(7, low))
                .map(|found| found.iter().collect())
                .unwrap_or_default();
            assert_eq!(rows, if low < 50 { vec![usize::from(low)] } else { vec![] });
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Add(u8, u8, usize),
        Remove(u8, u8),
        Move(u8, u8, usize, usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (any::<u8>(), 0u8..6, 0usize..1000).prop_map(|(s, l, r)| Step::Add(s % 40, l, r)),
            2 => (any::<u8>(), 0u8..6).prop_map(|(s, l)| Step::Remove(s % 40, l)),
            1 => (any::<u8>(), 0u8..6, 0usize..1000, 0usize..1000).prop_map(|(s, l, a, b)| Step::Move(s % 40, l, a, b)),
        ]
    }

    proptest! {
        /// The index answers what a plain map of the same operations answers, whatever the
        /// collisions, wrap-arounds and deletions in the middle of a run.
        #[test]
        fn agrees_with_a_map(steps in proptest::collection::vec(step(), 1..300)) {
            let mut index = SubjectIndex::default();
            let mut model: HashMap<SubjectId, (UnixMillis, Vec<usize>)> = HashMap::new();
            for step in steps {
                match step {
                    Step::Add(seed, low, row) => {
                        let subject = id(seed, low);
                        prop_assert!(index.add_row(subject, i64::from(seed), row));
                        model.entry(subject).or_insert((i64::from(seed), Vec::new())).1.push(row);
                    }
                    Step::Remove(seed, low) => {
                        let subject = id(seed, low);
                        prop_assert_eq!(index.remove(&subject), model.remove(&subject).map(|(_, rows)| rows));
                    }
                    Step::Move(seed, low, from, to) => {
                        let subject = id(seed, low);
                        index.move_row(&subject, from, to);
                        if let Some((_, rows)) = model.get_mut(&subject) {
                            match rows.iter().position(|row| *row == from) {
                                Some(0) => rows[0] = to,
                                Some(_) => rows.iter_mut().skip(1).filter(|row| **row == from).for_each(|row| *row = to),
                                None => {}
                            }
                        }
                    }
                }
                prop_assert_eq!(index.len(), model.len());
                for (subject, (expires_at, rows)) in &model {
                    let found = index.get(subject).unwrap();
                    prop_assert_eq!(found.expires_at, *expires_at);
                    prop_assert_eq!(found.iter().collect::<Vec<_>>(), rows.clone());
                }
                for seed in 0..40 {
                    for low in 0..6 {
                        let subject = id(seed, low);
                        prop_assert_eq!(index.contains(&subject), model.contains_key(&subject));
                    }
                }
                let mut listed: Vec<_> = index.iter().collect();
                listed.sort_unstable();
                let mut expected: Vec<_> = model.iter().map(|(id, (at, _))| (*id, *at)).collect();
                expected.sort_unstable();
                prop_assert_eq!(listed, expected);
            }
        }
    }

    #[test]
    fn stays_at_most_three_quarters_full() {
        let mut index = SubjectIndex::default();
        for n in 0..10_000u32 {
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_le_bytes());
            bytes[4..8].copy_from_slice(&n.to_le_bytes());
            assert!(index.add_row(SubjectId::from_bytes(&bytes).unwrap(), 0, n as usize));
            assert!(index.len() * 4 <= index.slots.len() * 3);
        }
        assert_eq!(index.len(), 10_000);
        assert!(index.get(&id(9, 9)).is_none());
        assert!(!index.add_row(id(1, 1), 0, MAX_ROWS));
        assert!(!index.contains(&id(1, 1)));
    }
}
