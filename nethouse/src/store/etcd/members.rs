//! The etcd members a store talks to, one connection each, and which of them to ask.
//!
//! Requests go to one member, the current one, for as long as it answers; a member whose
//! round-trip fails (refused, reset, no answer within the request timeout, no leader) is passed
//! over for [`AVOID_FOR`] and the next one becomes current. etcd's client would balance every
//! request over all endpoints instead, and keep giving a share of them to a member that is down
//! (each fails at once: "tcp connect error") or frozen (each hangs until its timeout); choosing
//! the member here makes a lost member cost one failed round-trip per replica, not a share of
//! every round-trip until it is back. Each replica starts at a random member, and moves to
//! etcd's leader as soon as it learns which one that is (`leader`): a commit sent to a
//! follower costs a forward to the leader and a wait for the follower's own apply.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use tokio::sync::OnceCell;

/// How long a member that failed is passed over: long enough that requests stop paying its
/// timeout, short enough that a member that came back gets traffic again soon after.
pub const AVOID_FOR: Duration = Duration::from_secs(3);

/// Which member to ask, pure: the current one, and when each failed last.
#[derive(Debug)]
pub struct Choice {
    current: usize,
    failed_at: Vec<Option<Instant>>,
}

impl Choice {
    pub fn new(members: usize, current: usize) -> Choice {
        Choice {
            current: current % members.max(1),
            failed_at: vec![None; members],
        }
    }

    fn avoided(&self, i: usize, now: Instant) -> bool {
        self.failed_at[i].is_some_and(|t| now.duration_since(t) < AVOID_FOR)
    }

    /// Every member in the order to ask them: the current one first unless it failed lately,
    /// then the others from the one after it on; members that failed lately come last, the
    /// one that failed longest ago first (when every member fails, each still gets asked).
    pub fn order(&self, now: Instant) -> Vec<usize> {
        let n = self.failed_at.len();
        let ring = (0..n).map(|k| (self.current + k) % n);
        let mut order: Vec<usize> = ring.clone().filter(|&i| !self.avoided(i, now)).collect();
        let mut avoided: Vec<usize> = ring.filter(|&i| self.avoided(i, now)).collect();
        avoided.sort_by_key(|&i| self.failed_at[i]);
        order.extend(avoided);
        order
    }

    /// Member `i` failed a round-trip at `now`: passed over, and if it was current the next
    /// member that did not fail lately becomes current.
    pub fn failed(&mut self, i: usize, now: Instant) {
        self.failed_at[i] = Some(now);
        if self.current == i
            && let Some(&next) = self.order(now).first()
        {
            self.current = next;
        }
    }

    /// Member `i` is the one to ask (it leads etcd), unless it failed lately.
    pub fn prefer(&mut self, i: usize, now: Instant) {
        if i < self.failed_at.len() && !self.avoided(i, now) {
            self.current = i;
        }
    }

    /// Member `i` answered: no longer passed over.
    pub fn answered(&mut self, i: usize) {
        self.failed_at[i] = None;
    }

    /// Whether every member failed lately: then etcd cannot be reached at all.
    pub fn all_failing(&self, now: Instant) -> bool {
        (0..self.failed_at.len()).all(|i| self.avoided(i, now))
    }

    pub fn current(&self) -> usize {
        self.current
    }
}

pub struct Members {
    urls: Vec<String>,
    /// Connected on first use: with etcd's auth, connecting is a round-trip (a token), and a
    /// member that is down at start must not stop NetHouse from starting on the others.
    clients: Vec<OnceCell<Client>>,
    options: ConnectOptions,
    choice: Mutex<Choice>,
}

impl Members {
    /// One lazily connected client per endpoint; the current member is chosen at random.
    pub fn new(urls: Vec<String>, options: ConnectOptions) -> Members {
        let n = urls.len();
        let start = RandomState::new().hash_one(std::process::id()) as usize;
        Members {
            clients: (0..n).map(|_| OnceCell::new()).collect(),
            urls,
            options,
            choice: Mutex::new(Choice::new(n, start)),
        }
    }

    fn choice(&self) -> std::sync::MutexGuard<'_, Choice> {
        // Nothing in Choice is left half-updated by a panic.
        self.choice.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn url(&self, i: usize) -> &str {
        &self.urls[i]
    }

    pub fn order(&self) -> Vec<usize> {
        self.choice().order(Instant::now())
    }

    /// The client of member `i`, connecting (and authenticating) it first if needed.
    pub async fn client(&self, i: usize) -> Result<Client, etcd_client::Error> {
        self.clients[i]
            .get_or_try_init(|| {
                Client::connect([self.urls[i].as_str()], Some(self.options.clone()))
            })
            .await
            .cloned()
    }

    pub fn failed(&self, i: usize, why: &str) {
        let mut c = self.choice();
        let was_current = c.current() == i;
        c.failed(i, Instant::now());
        if was_current && c.current() != i {
            tracing::warn!(
                member = %self.urls[i],
                next = %self.urls[c.current()],
                error = %why,
                "an etcd member failed; asking the next one"
            );
        }
    }

    pub fn answered(&self, i: usize) {
        self.choice().answered(i);
    }

    /// Makes member `i` (etcd's leader) the one asked first, unless it failed lately.
    pub fn prefer(&self, i: usize) {
        let mut c = self.choice();
        let was = c.current();
        c.prefer(i, Instant::now());
        if c.current() != was {
            tracing::info!(
                member = %self.urls[c.current()],
                "asking the etcd leader first"
            );
        }
    }

    pub fn all_failing(&self) -> bool {
        self.choice().all_failing(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_member_is_asked_until_it_fails_then_the_next() {
        let t = Instant::now();
        let mut c = Choice::new(3, 1);
        assert_eq!(c.order(t), vec![1, 2, 0]);
        c.failed(1, t);
        assert_eq!(c.current(), 2);
        assert_eq!(c.order(t), vec![2, 0, 1], "the failed one last");
        // A member that is not current fails: the current one stays.
        c.failed(0, t + Duration::from_millis(10));
        assert_eq!(c.current(), 2);
        assert_eq!(c.order(t + Duration::from_millis(10)), vec![2, 1, 0]);
        assert!(!c.all_failing(t + Duration::from_millis(10)));
        // All failed: each is still asked, the one that failed longest ago first.
        c.failed(2, t + Duration::from_millis(20));
        assert!(c.all_failing(t + Duration::from_millis(20)));
        assert_eq!(c.order(t + Duration::from_millis(20)), vec![1, 0, 2]);
        // Once passed over long enough, a member is asked again in ring order.
        let later = t + AVOID_FOR + Duration::from_millis(25);
        assert_eq!(c.current(), 1);
        assert_eq!(c.order(later), vec![1, 2, 0]);
        // An answer ends the avoidance at once.
        c.answered(1);
        assert_eq!(c.order(t + Duration::from_millis(30))[0], 1);
    }

    #[test]
    fn the_leader_is_asked_first_unless_it_failed_lately() {
        let t = Instant::now();
        let mut c = Choice::new(3, 0);
        c.prefer(2, t);
        assert_eq!(c.order(t), vec![2, 0, 1]);
        c.failed(2, t);
        assert_eq!(c.current(), 0);
        // Still named leader right after it failed: not asked first until it had time to recover.
        c.prefer(2, t + Duration::from_millis(10));
        assert_eq!(c.current(), 0);
        c.prefer(2, t + AVOID_FOR + Duration::from_millis(10));
        assert_eq!(c.current(), 2);
        // A position that does not exist changes nothing.
        c.prefer(7, t);
        assert_eq!(c.current(), 2);
    }

    #[test]
    fn one_member_is_always_asked() {
        let t = Instant::now();
        let mut c = Choice::new(1, 7);
        c.failed(0, t);
        assert_eq!(c.order(t), vec![0]);
        assert!(c.all_failing(t));
    }
}
