//! Slot assignment: a bounded worker index that survives worker recycling.
//!
//! A pid label explodes cardinality under `max-requests` recycling. A slot
//! does not: a new worker takes the lowest free slot, which is the slot of
//! the worker it replaces.

use std::collections::{BTreeSet, HashMap};

use super::proc::ProcId;

#[derive(Debug, Clone)]
pub struct Slots {
    by_id: HashMap<ProcId, usize>,
    free: BTreeSet<usize>,
    next: usize,
    max: usize,
}

/// What changed between two observations of a pool's workers.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SlotChanges {
    /// New workers and the slot each took; `None` once every slot is taken.
    pub spawned: Vec<(ProcId, Option<usize>)>,
    /// Workers gone since the last observation, with the slot they held.
    pub exited: Vec<(ProcId, Option<usize>)>,
}

impl Slots {
    pub fn new(max: usize) -> Slots {
        Slots {
            by_id: HashMap::new(),
            free: BTreeSet::new(),
            next: 0,
            max,
        }
    }

    pub fn slot_of(&self, id: &ProcId) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Workers that were seen but got no slot because all `max` were taken.
    fn unslotted(&self) -> impl Iterator<Item = &ProcId> {
        self.by_id
            .iter()
            .filter(|(_, s)| **s == usize::MAX)
            .map(|(id, _)| id)
    }

    pub fn unslotted_count(&self) -> usize {
        self.unslotted().count()
    }

    /// Reconcile with the live worker set. Exits are processed first so a
    /// replacement seen in the same cycle reuses its predecessor's slot.
    pub fn observe(&mut self, live: &[ProcId]) -> SlotChanges {
        self.observe_numbered(live, &HashMap::new())
    }

    /// As [`Slots::observe`], where a new worker the server numbers itself
    /// (`numbers`: uWSGI's worker id, Unicorn's `worker[N]`, Puma's index)
    /// takes that number as its slot when it is free and below the cap,
    /// else the lowest free one.
    pub fn observe_numbered(
        &mut self,
        live: &[ProcId],
        numbers: &HashMap<ProcId, usize>,
    ) -> SlotChanges {
        let mut changes = SlotChanges::default();
        let gone: Vec<ProcId> = self
            .by_id
            .keys()
            .filter(|id| !live.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(slot) = self.by_id.remove(&id) {
                if slot == usize::MAX {
                    changes.exited.push((id, None));
                } else {
                    self.free.insert(slot);
                    changes.exited.push((id, Some(slot)));
                }
            }
        }
        // Oldest first, so that at startup slots follow worker age.
        let mut new: Vec<ProcId> = live
            .iter()
            .filter(|id| !self.by_id.contains_key(id))
            .copied()
            .collect();
        new.sort_by_key(|id| (id.starttime, id.pid));
        // A worker left without a slot takes one as soon as one frees.
        let waiting: Vec<ProcId> = self.unslotted().copied().collect();
        for id in waiting {
            if let Some(slot) = self.take() {
                self.by_id.insert(id, slot);
            }
        }
        for id in new {
            let slot = numbers
                .get(&id)
                .and_then(|n| self.take_exact(*n))
                .or_else(|| self.take());
            self.by_id.insert(id, slot.unwrap_or(usize::MAX));
            changes.spawned.push((id, slot));
        }
        changes.exited.sort_by_key(|(id, _)| (id.starttime, id.pid));
        changes
    }

    /// Every live worker with its slot (`None` past the cap).
    pub fn all(&self) -> impl Iterator<Item = (ProcId, Option<usize>)> + '_ {
        self.by_id
            .iter()
            .map(|(id, s)| (*id, (*s != usize::MAX).then_some(*s)))
    }

    pub fn contains(&self, id: &ProcId) -> bool {
        self.by_id.contains_key(id)
    }

    /// The live worker with this pid.
    pub fn find_pid(&self, pid: i32) -> Option<ProcId> {
        self.by_id.keys().find(|id| id.pid == pid).copied()
    }

    /// A new worker, seen between observations: it takes the lowest free
    /// slot, as in [`Slots::observe`].
    pub fn add(&mut self, id: ProcId) -> Option<usize> {
        if let Some(s) = self.slot_of(&id) {
            return (s != usize::MAX).then_some(s);
        }
        let slot = self.take();
        self.by_id.insert(id, slot.unwrap_or(usize::MAX));
        slot
    }

    /// A worker gone between observations; returns the slot it held. A
    /// worker left without a slot takes the freed one.
    pub fn remove(&mut self, id: &ProcId) -> Option<usize> {
        let slot = self.by_id.remove(id)?;
        if slot == usize::MAX {
            return None;
        }
        self.free.insert(slot);
        let waiting: Option<ProcId> = self
            .unslotted()
            .min_by_key(|id| (id.starttime, id.pid))
            .copied();
        if let Some(w) = waiting {
            if let Some(s) = self.take() {
                self.by_id.insert(w, s);
            }
        }
        Some(slot)
    }

    /// Slot `n`, if it is free and below the cap; the slots skipped on the
    /// way to it become free ones.
    fn take_exact(&mut self, n: usize) -> Option<usize> {
        if n >= self.max {
            return None;
        }
        if n < self.next {
            return self.free.remove(&n).then_some(n);
        }
        self.free.extend(self.next..n);
        self.next = n + 1;
        Some(n)
    }

    fn take(&mut self) -> Option<usize> {
        if let Some(s) = self.free.pop_first() {
            return Some(s);
        }
        if self.next < self.max {
            self.next += 1;
            return Some(self.next - 1);
        }
        None
    }

    /// Live workers with their slots, in slot order.
    pub fn assigned(&self) -> Vec<(ProcId, usize)> {
        let mut v: Vec<(ProcId, usize)> = self
            .by_id
            .iter()
            .filter(|(_, s)| **s != usize::MAX)
            .map(|(id, s)| (*id, *s))
            .collect();
        v.sort_by_key(|(_, s)| *s);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(pid: i32) -> ProcId {
        ProcId {
            pid,
            starttime: pid as u64,
        }
    }

    #[test]
    fn replacement_takes_the_freed_slot() {
        let mut s = Slots::new(8);
        let c = s.observe(&[id(10), id(11), id(12)]);
        assert_eq!(c.spawned.len(), 3);
        assert_eq!(s.slot_of(&id(11)), Some(1));
        let c = s.observe(&[id(10), id(12), id(13)]);
        assert_eq!(c.exited, vec![(id(11), Some(1))]);
        assert_eq!(c.spawned, vec![(id(13), Some(1))]);
    }

    #[test]
    fn pid_reuse_is_a_new_worker() {
        let mut s = Slots::new(8);
        s.observe(&[id(10)]);
        let reused = ProcId {
            pid: 10,
            starttime: 99,
        };
        let c = s.observe(&[reused]);
        assert_eq!(c.exited.len(), 1);
        assert_eq!(c.spawned, vec![(reused, Some(0))]);
    }

    #[test]
    fn slots_are_capped() {
        let mut s = Slots::new(2);
        let c = s.observe(&[id(1), id(2), id(3)]);
        assert_eq!(c.spawned[2], (id(3), None));
        assert_eq!(s.unslotted_count(), 1);
        s.observe(&[id(2), id(3)]);
        assert_eq!(s.slot_of(&id(3)), Some(0));
        assert_eq!(s.unslotted_count(), 0);
    }

    #[test]
    fn events_between_observations_keep_the_same_rules() {
        let mut s = Slots::new(2);
        assert_eq!(s.add(id(1)), Some(0));
        assert_eq!(s.add(id(2)), Some(1));
        assert_eq!(s.add(id(3)), None, "past the cap");
        assert_eq!(s.add(id(1)), Some(0), "adding twice changes nothing");
        assert_eq!(s.find_pid(2), Some(id(2)));
        assert_eq!(s.remove(&id(1)), Some(0));
        assert_eq!(s.slot_of(&id(3)), Some(0), "the waiting worker takes it");
        assert_eq!(s.remove(&id(1)), None);
        // A later observation agrees: nothing changed.
        let c = s.observe(&[id(2), id(3)]);
        assert_eq!(c, SlotChanges::default());
    }

    #[test]
    fn a_worker_numbered_by_its_server_takes_its_number() {
        let mut s = Slots::new(8);
        let numbers: HashMap<ProcId, usize> = [(id(10), 1), (id(11), 2), (id(12), 3)].into();
        s.observe_numbered(&[id(10), id(11), id(12)], &numbers);
        assert_eq!(s.slot_of(&id(10)), Some(1));
        assert_eq!(s.slot_of(&id(12)), Some(3));
        // A respawned worker 2 takes 2 again; one without a number takes
        // the lowest free slot, 0, skipped on the way.
        let numbers: HashMap<ProcId, usize> = [(id(13), 2)].into();
        s.observe_numbered(&[id(10), id(12), id(13), id(14)], &numbers);
        assert_eq!(s.slot_of(&id(13)), Some(2));
        assert_eq!(s.slot_of(&id(14)), Some(0));
        // A number already held, or past the cap, falls back.
        let numbers: HashMap<ProcId, usize> = [(id(15), 1), (id(16), 99)].into();
        s.observe_numbered(&[id(10), id(12), id(13), id(14), id(15), id(16)], &numbers);
        assert_eq!(s.slot_of(&id(15)), Some(4));
        assert_eq!(s.slot_of(&id(16)), Some(5));
    }

    proptest! {
        /// Under any churn, slots stay below max(live workers ever at once,
        /// cap) and no two live workers share one.
        #[test]
        fn slots_bounded_and_unique(rounds in prop::collection::vec(prop::collection::btree_set(1i32..40, 0..8), 1..50)) {
            let mut s = Slots::new(16);
            let mut peak = 0;
            for live in rounds {
                let live: Vec<ProcId> = live.into_iter().map(id).collect();
                peak = peak.max(live.len());
                s.observe(&live);
                let a = s.assigned();
                let mut seen = std::collections::HashSet::new();
                for (_, slot) in &a {
                    prop_assert!(*slot < peak.min(16));
                    prop_assert!(seen.insert(*slot));
                }
                prop_assert_eq!(a.len(), live.len().min(16));
            }
        }
    }
}
