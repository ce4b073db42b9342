//! How far a replica's view runs behind a shared store (etcd), for its metrics. Two measures,
//! because each misses what the other sees:
//!
//! - in revisions: the newest revision etcd has reported in any answer (commits, reads, and the
//!   probe every 2 s while nothing else talks to it) minus the revision the view is complete up
//!   to. It grows while the watch stalls even when this replica writes nothing.
//! - in seconds: from etcd answering one of this replica's own commits to the watch bringing
//!   that revision. Only own commits have a known time, so that is what is timed; the watch
//!   carries every replica's changes in one stream, so its delay is the same for theirs.
//!
//! Pure: the caller passes the time in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Revision;

/// Own commits waiting for the watch. Beyond this (a watch that is gone for long), later ones
/// are not timed; the earlier ones then report the whole outage when the watch is back.
const MAX_PENDING: usize = 1024;

#[derive(Debug, Default)]
pub struct WatchLag {
    newest: Revision,
    applied: Revision,
    /// Own commits' revisions, ascending, with when etcd answered them.
    pending: VecDeque<(Revision, Instant)>,
}

impl WatchLag {
    /// etcd answered at `revision`; `own_commit` when that answer was to a commit of this
    /// replica that was applied at that revision. Returns a lag to record at once: an own commit
    /// the watch had already brought counts as no lag.
    pub fn seen(&mut self, revision: Revision, own_commit: bool, at: Instant) -> Option<Duration> {
        self.newest = self.newest.max(revision);
        if !own_commit {
            return None;
        }
        if revision <= self.applied {
            return Some(Duration::ZERO);
        }
        if self.pending.len() < MAX_PENDING {
            // Answers may come back out of order; keep the queue sorted by revision.
            let i = self.pending.partition_point(|(r, _)| *r <= revision);
            self.pending.insert(i, (revision, at));
        }
        None
    }

    /// The view is complete up to `revision` at `now`: the lags of the own commits it brought.
    pub fn applied(&mut self, revision: Revision, now: Instant) -> Vec<Duration> {
        self.applied = self.applied.max(revision);
        let mut lags = Vec::new();
        while let Some(&(r, at)) = self.pending.front() {
            if r > self.applied {
                break;
            }
            self.pending.pop_front();
            lags.push(now.saturating_duration_since(at));
        }
        lags
    }

    /// Revisions etcd has reported that the view does not hold yet.
    pub fn behind(&self) -> u64 {
        self.newest.saturating_sub(self.applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn own_commits_are_timed_until_the_watch_brings_them() {
        let t0 = Instant::now();
        let mut lag = WatchLag::default();
        assert_eq!(lag.seen(10, true, t0), None);
        assert_eq!(lag.seen(12, true, t0 + ms(2)), None);
        assert_eq!(lag.behind(), 12);
        assert_eq!(lag.applied(10, t0 + ms(5)), vec![ms(5)]);
        assert_eq!(lag.behind(), 2);
        // A later revision brings every earlier own commit.
        assert_eq!(lag.applied(20, t0 + ms(9)), vec![ms(7)]);
        assert_eq!(lag.behind(), 0);
    }

    #[test]
    fn revisions_behind_grow_while_the_watch_stalls() {
        let t0 = Instant::now();
        let mut lag = WatchLag::default();
        lag.applied(5, t0);
        for (seen, behind) in [(5, 0), (9, 4), (7, 4), (30, 25)] {
            assert_eq!(lag.seen(seen, false, t0), None);
            assert_eq!(lag.behind(), behind, "after seeing {seen}");
        }
        // Another replica's commits are not timed.
        assert!(lag.applied(30, t0 + ms(100)).is_empty());
        assert_eq!(lag.behind(), 0);
    }

    #[test]
    fn an_own_commit_the_watch_brought_first_counts_as_no_lag() {
        let t0 = Instant::now();
        let mut lag = WatchLag::default();
        lag.applied(8, t0);
        assert_eq!(lag.seen(8, true, t0 + ms(3)), Some(Duration::ZERO));
        assert!(lag.applied(8, t0 + ms(4)).is_empty());
    }

    #[test]
    fn answers_out_of_order_are_matched_by_revision() {
        let t0 = Instant::now();
        let mut lag = WatchLag::default();
        lag.seen(14, true, t0 + ms(1));
        lag.seen(11, true, t0 + ms(2));
        assert_eq!(lag.applied(11, t0 + ms(6)), vec![ms(4)]);
        assert_eq!(lag.applied(14, t0 + ms(8)), vec![ms(7)]);
    }

    #[test]
    fn a_long_outage_keeps_a_bounded_queue_and_reports_its_length() {
        let t0 = Instant::now();
        let mut lag = WatchLag::default();
        for r in 1..=(MAX_PENDING as u64 + 500) {
            lag.seen(r, true, t0);
        }
        let lags = lag.applied(MAX_PENDING as u64 + 500, t0 + Duration::from_secs(30));
        assert_eq!(lags.len(), MAX_PENDING);
        assert!(lags.iter().all(|l| *l == Duration::from_secs(30)));
    }
}
