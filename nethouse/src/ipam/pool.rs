//! Which address of one subnet to hand out next — pure, no I/O.
//!
//! Never-used addresses are kept as ranges (so an IPv6 /64 costs a few bytes), released ones in
//! a queue ordered by release time. Preference: never used first (free the longest), then the
//! released address free the longest, once its cooldown ended. Every operation is O(log ranges)
//! or O(1): the cost does not depend on how full the subnet is.

use std::collections::{BTreeMap, VecDeque};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pick {
    Fresh(u128),
    /// A released address and its release time.
    Reused(u128, u64),
}

impl Pick {
    pub fn offset(&self) -> u128 {
        match self {
            Pick::Fresh(o) | Pick::Reused(o, _) => *o,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Pool {
    /// Never-used offsets: start -> end (inclusive), disjoint.
    fresh: BTreeMap<u128, u128>,
    fresh_count: u128,
    /// (released at ms, offset), oldest first.
    released: VecDeque<(u64, u128)>,
    /// Where the next never-used pick starts looking (see [`Pool::start_at`]); `None`: lowest
    /// first.
    cursor: Option<u128>,
}

impl Pool {
    /// `blocked` are the offsets never to hand out as fresh: reserved ranges and every offset that
    /// has a record (leased or released). Order does not matter.
    pub fn new(size: u128, mut blocked: Vec<(u128, u128)>, mut released: Vec<(u64, u128)>) -> Pool {
        blocked.sort_unstable();
        let mut fresh = BTreeMap::new();
        let mut fresh_count = 0u128;
        let mut next = 0u128; // first offset not yet covered
        let mut push = |a: u128, b: u128| {
            fresh.insert(a, b);
            fresh_count += b - a + 1;
        };
        let last = size - 1;
        let mut done = false;
        for (a, b) in blocked {
            if done || a > last {
                break;
            }
            if a > next {
                push(next, a - 1);
            }
            if b >= last {
                done = true;
            } else {
                next = next.max(b + 1);
            }
        }
        if !done {
            push(next, last);
        }
        released.sort_unstable();
        Pool {
            fresh,
            fresh_count,
            released: released.into(),
            cursor: None,
        }
    }

    /// Hands out never-used addresses from `offset` on, upwards and wrapping around, instead of
    /// lowest first. Replicas that allocate from one subnet at the same time each start
    /// somewhere else, so they do not all try for the same next address: each such collision
    /// costs the loser a lost race, a re-read and another try.
    pub fn start_at(&mut self, offset: u128) {
        self.cursor = Some(offset);
    }

    /// Whether [`Pool::start_at`] was given.
    pub fn spreads(&self) -> bool {
        self.cursor.is_some()
    }

    /// The never-used offset to hand out next: the lowest, or the first at or after the cursor.
    fn next_fresh(&self) -> Option<u128> {
        let lowest = || self.fresh.first_key_value().map(|(&a, _)| a);
        let Some(c) = self.cursor else {
            return lowest();
        };
        match self.fresh.range(..=c).next_back() {
            Some((_, &b)) if b >= c => Some(c),
            _ => self
                .fresh
                .range(c..)
                .next()
                .map(|(&a, _)| a)
                .or_else(lowest),
        }
    }

    /// The next address to try, or `None` when everything left is cooling down or leased:
    /// never-used ones first, then the one released longest ago.
    pub fn pick(&mut self, now_ms: u64, cooldown_ms: u64) -> Option<Pick> {
        self.pick_by(now_ms, cooldown_ms, |_| 0)
    }

    /// As [`Pool::pick`], but when no never-used address is left, `choose(n)` says which of
    /// the `n` (at least 1) released addresses whose cooldown ended to take, 0 being the one
    /// released longest ago.
    pub fn pick_by(
        &mut self,
        now_ms: u64,
        cooldown_ms: u64,
        choose: impl FnOnce(usize) -> usize,
    ) -> Option<Pick> {
        if let Some(off) = self.next_fresh() {
            self.remove(off);
            if let Some(c) = &mut self.cursor {
                *c = off.saturating_add(1);
            }
            return Some(Pick::Fresh(off));
        }
        let cooled = self
            .released
            .partition_point(|&(at, _)| at.saturating_add(cooldown_ms) <= now_ms);
        if cooled == 0 {
            return None;
        }
        let (at, off) = self.released.remove(choose(cooled).min(cooled - 1))?;
        Some(Pick::Reused(off, at))
    }

    /// Returns a picked address that was not used after all (its transaction lost).
    pub fn give_back(&mut self, pick: Pick) {
        match pick {
            Pick::Fresh(off) => self.insert_fresh(off),
            // Picks of overlapping calls come back in any order: put each where its release
            // time belongs (before equal times: it was ahead of them), or the queue is no
            // longer oldest first and a later pick takes an address freed more recently.
            Pick::Reused(off, at) => {
                let i = self.released.partition_point(|&(t, _)| t < at);
                self.released.insert(i, (at, off));
            }
        }
    }

    fn insert_fresh(&mut self, off: u128) {
        // Already fresh (also as the start of a range): inserting again would count it twice.
        if self.is_fresh(off) {
            return;
        }
        // Merge with the neighbours so ranges stay few.
        let mut start = off;
        let mut end = off;
        if let Some((&a, &b)) = self.fresh.range(..off).next_back()
            && b + 1 == off
        {
            start = a;
            self.fresh.remove(&a);
        }
        if let Some(b) = off.checked_add(1).and_then(|n| self.fresh.remove(&n)) {
            end = b;
        }
        self.fresh.insert(start, end);
        self.fresh_count += 1;
    }

    /// An address just released at `at_ms`. Release times only grow, so the queue stays sorted.
    pub fn released(&mut self, off: u128, at_ms: u64) {
        match self.released.back() {
            Some(&(last, _)) if last > at_ms => {
                let i = self.released.partition_point(|&(t, _)| t <= at_ms);
                self.released.insert(i, (at_ms, off));
            }
            _ => self.released.push_back((at_ms, off)),
        }
    }

    /// Stops offering `off` as never-used (the store says it has a record, learned after a lost
    /// race). Released entries are not searched: [`Pool::pick`]'s caller checks every released
    /// entry against the address cache and skips stale ones, which keeps this O(log ranges).
    pub fn remove(&mut self, off: u128) {
        if let Some((&a, &b)) = self.fresh.range(..=off).next_back()
            && b >= off
        {
            self.fresh.remove(&a);
            if a < off {
                self.fresh.insert(a, off - 1);
            }
            if off < b {
                self.fresh.insert(off + 1, b);
            }
            self.fresh_count -= 1;
        }
    }

    /// Takes the released entries of `offs` out of the queue: their records were deleted (the
    /// subnet is being removed), so they are not cooling down any more.
    pub fn forget_released(&mut self, offs: &rustc_hash::FxHashSet<u128>) {
        self.released.retain(|(_, off)| !offs.contains(off));
    }

    pub fn fresh_count(&self) -> u128 {
        self.fresh_count
    }

    /// Released addresses still inside their cooldown at `now_ms`.
    pub fn cooling(&self, now_ms: u64, cooldown_ms: u64) -> u64 {
        let ready = self
            .released
            .partition_point(|&(t, _)| t.saturating_add(cooldown_ms) <= now_ms);
        (self.released.len() - ready) as u64
    }

    /// Addresses that could be handed out now.
    pub fn available(&self, now_ms: u64, cooldown_ms: u64) -> u128 {
        self.fresh_count + (self.released.len() as u64 - self.cooling(now_ms, cooldown_ms)) as u128
    }

    /// Whether `off` is offered as never used.
    pub fn is_fresh(&self, off: u128) -> bool {
        self.fresh
            .range(..=off)
            .next_back()
            .is_some_and(|(_, &b)| b >= off)
    }

    /// The released queue, oldest first.
    pub fn released_queue(&self) -> impl Iterator<Item = (u64, u128)> + '_ {
        self.released.iter().copied()
    }

    /// Checks the pool against itself: ranges disjoint and counted right, the released queue
    /// in release order. Empty when whole; a count that drifts from the ranges is how free
    /// addresses went missing while the usage still showed them free (issue 11, defect 2).
    pub fn inconsistencies(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut sum = 0u128;
        let mut prev_end: Option<u128> = None;
        for (&a, &b) in &self.fresh {
            if b < a || prev_end.is_some_and(|p| a <= p) {
                out.push(format!(
                    "fresh range {a}..={b} is empty or overlaps the one before"
                ));
            }
            sum += b.saturating_sub(a) + 1;
            prev_end = Some(b);
        }
        if sum != self.fresh_count {
            out.push(format!(
                "fresh ranges hold {sum} addresses but {} are counted",
                self.fresh_count
            ));
        }
        if let Some(w) = self
            .released
            .iter()
            .zip(self.released.iter().skip(1))
            .find(|(x, y)| x.0 > y.0)
        {
            out.push(format!(
                "released queue out of order: offset {} (at {}) before offset {} (at {})",
                w.0.1, w.0.0, w.1.1, w.1.0
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_in_order_skipping_blocked() {
        let mut p = Pool::new(8, vec![(0, 0), (7, 7), (3, 4)], vec![]);
        assert_eq!(p.fresh_count(), 4);
        let got: Vec<u128> = std::iter::from_fn(|| p.pick(0, 0))
            .map(|x| x.offset())
            .collect();
        assert_eq!(got, vec![1, 2, 5, 6]);
        assert_eq!(p.pick(0, 0), None);
    }

    #[test]
    fn released_are_reused_oldest_first_after_cooldown() {
        let mut p = Pool::new(4, vec![(0, 3)], vec![(200, 2), (100, 1)]);
        assert_eq!(p.cooling(150, 100), 2);
        assert_eq!(p.pick(150, 100), None, "both still cooling");
        assert_eq!(p.pick(200, 100), Some(Pick::Reused(1, 100)));
        assert_eq!(p.pick(250, 100), None, "released at 200, cooling until 300");
        assert_eq!(p.pick(300, 100), Some(Pick::Reused(2, 200)));
    }

    #[test]
    fn a_chosen_released_address_is_one_whose_cooldown_ended() {
        let released = vec![(100, 1), (110, 2), (120, 3), (500, 4)];
        // (now, choice) -> the pick, and how many cooled addresses `choose` was offered.
        for (now, choice, want, offered) in [
            (150, 0, Some(Pick::Reused(1, 100)), Some(3)),
            (150, 2, Some(Pick::Reused(3, 120)), Some(3)),
            // A choice past the cooled ones takes the last of them, never one still cooling.
            (150, 9, Some(Pick::Reused(3, 120)), Some(3)),
            (145, 1, Some(Pick::Reused(2, 110)), Some(2)),
            (135, 5, Some(Pick::Reused(1, 100)), Some(1)),
            (125, 0, None, None),
        ] {
            let mut p = Pool::new(5, vec![(0, 4)], released.clone());
            let mut seen = None;
            let got = p.pick_by(now, 30, |n| {
                seen = Some(n);
                choice
            });
            assert_eq!((got, seen), (want, offered), "now {now}, choice {choice}");
            assert_eq!(p.inconsistencies(), Vec::<String>::new(), "now {now}");
        }
    }

    #[test]
    fn fresh_is_preferred_over_released() {
        let mut p = Pool::new(4, vec![(0, 1)], vec![(0, 1)]);
        assert_eq!(p.pick(1_000, 0), Some(Pick::Fresh(2)));
        assert_eq!(p.pick(1_000, 0), Some(Pick::Fresh(3)));
        assert_eq!(p.pick(1_000, 0), Some(Pick::Reused(1, 0)));
    }

    #[test]
    fn give_back_restores_and_merges() {
        let mut p = Pool::new(10, vec![], vec![]);
        let a = p.pick(0, 0).unwrap();
        let b = p.pick(0, 0).unwrap();
        p.give_back(b);
        p.give_back(a);
        assert_eq!(p.fresh_count(), 10);
        assert_eq!(p.fresh.len(), 1, "ranges merged back: {:?}", p.fresh);
        p.released(5, 10);
        let r = Pick::Reused(7, 1);
        p.give_back(r.clone());
        assert_eq!(p.released.front(), Some(&(1, 7)));
    }

    #[test]
    fn giving_back_a_fresh_address_again_changes_nothing() {
        let mut p = Pool::new(10, vec![(0, 0)], vec![]);
        for off in [1, 5, 9] {
            p.give_back(Pick::Fresh(off));
        }
        assert_eq!(p.fresh_count(), 9);
        assert_eq!(p.fresh.len(), 1, "{:?}", p.fresh);
    }

    #[test]
    fn reused_picks_given_back_in_any_order_stay_oldest_first() {
        let mut p = Pool::new(4, vec![(0, 3)], vec![(100, 1), (200, 2), (300, 3)]);
        let (a, b) = (p.pick(1_000, 0).unwrap(), p.pick(1_000, 0).unwrap());
        p.give_back(a);
        p.give_back(b);
        assert_eq!(p.inconsistencies(), Vec::<String>::new());
        assert_eq!(p.pick(1_000, 0), Some(Pick::Reused(1, 100)));
        assert_eq!(p.pick(1_000, 0), Some(Pick::Reused(2, 200)));
    }

    #[test]
    fn remove_splits_ranges() {
        let mut p = Pool::new(10, vec![], vec![(5, 3)]);
        p.remove(4);
        p.remove(3);
        assert_eq!(p.fresh_count(), 8);
        let got: Vec<u128> = std::iter::from_fn(|| p.pick(0, 0))
            .map(|x| x.offset())
            .collect();
        assert!(!got.contains(&4) && !got.contains(&3));
        assert_eq!(got.len(), 8);
    }

    #[test]
    fn huge_subnet_costs_nothing() {
        let mut p = Pool::new(1u128 << 64, vec![(0, 0)], vec![]);
        assert_eq!(p.fresh_count(), (1u128 << 64) - 1);
        assert_eq!(p.pick(0, 0), Some(Pick::Fresh(1)));
    }

    #[test]
    fn spread_picks_start_at_the_offset_and_wrap_around() {
        let mut p = Pool::new(8, vec![(0, 0), (5, 5)], vec![]);
        p.start_at(4);
        let got: Vec<u128> = std::iter::from_fn(|| p.pick(0, 0))
            .map(|x| x.offset())
            .collect();
        assert_eq!(
            got,
            vec![4, 6, 7, 1, 2, 3],
            "from 4 up, 5 blocked, then wrapped"
        );
        assert_eq!(p.inconsistencies(), Vec::<String>::new());
        // A pick given back behind the cursor is handed out once the cursor wraps to it.
        p.give_back(Pick::Fresh(2));
        p.start_at(3);
        assert_eq!(p.pick(0, 0), Some(Pick::Fresh(2)));
        assert_eq!(p.fresh_count(), 0);
    }

    #[test]
    fn out_of_order_release_times_stay_sorted() {
        let mut p = Pool::new(4, vec![(0, 3)], vec![]);
        p.released(1, 300);
        p.released(2, 100);
        assert_eq!(p.pick(1_000, 0), Some(Pick::Reused(2, 100)));
    }
}
