//! The watch of the stores that apply transactions themselves (in-memory, embedded): the last
//! committed transactions kept in memory for replay, and a broadcast of each new one.
//! Subscribing and copying the replay happen under one lock that every publish also takes, so
//! a watcher sees every transaction after its revision exactly once: no gap between the replay
//! and the live part, no repeat.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::stream::{self, StreamExt};
use tokio::sync::broadcast;

use super::watch::{Changes, Watch};
use super::{Revision, StoreError};

/// Transactions kept for replay by default: a watcher that lost its connection for a moment
/// (or a replica a little behind) resumes without reading the whole store again.
pub const DEFAULT_KEEP: usize = 10_000;
/// Transactions a live watcher may fall behind before it is told to re-read.
const LIVE_BACKLOG: usize = 16_384;

pub struct ChangeLog {
    inner: Mutex<Inner>,
}

struct Inner {
    /// The last committed transactions, oldest first.
    history: VecDeque<Arc<Changes>>,
    keep: usize,
    /// Revisions up to this one are not replayable (before the store was opened, or dropped
    /// from the history).
    forgotten: Revision,
    live: broadcast::Sender<Arc<Changes>>,
}

impl ChangeLog {
    /// A log of a store whose revision is `at` now, keeping the last `keep` transactions.
    pub fn new(at: Revision, keep: usize) -> Self {
        ChangeLog {
            inner: Mutex::new(Inner {
                history: VecDeque::new(),
                keep,
                forgotten: at,
                live: broadcast::Sender::new(LIVE_BACKLOG),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Publishing is a push and a send: a panic cannot leave the log half-updated.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a committed transaction; call in revision order, once it is durable.
    pub fn publish(&self, changes: Changes) {
        if changes.changes.is_empty() {
            return;
        }
        let mut inner = self.lock();
        let changes = Arc::new(changes);
        inner.history.push_back(changes.clone());
        while inner.history.len() > inner.keep {
            if let Some(old) = inner.history.pop_front() {
                inner.forgotten = old.revision;
            }
        }
        // No receiver is not an error: nobody watches.
        let _ = inner.live.send(changes);
    }

    /// Forgets everything before `at` and ends every watch: what was committed around a
    /// failure is known only to the store now (a commit that reported failure may have
    /// landed), so watchers must read it again.
    pub fn reset(&self, at: Revision) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.forgotten = at;
        inner.live = broadcast::Sender::new(LIVE_BACKLOG);
    }

    /// The transactions after `after`: the kept ones, then each new one as it is published.
    pub fn watch(&self, after: Revision) -> Result<Watch, StoreError> {
        let inner = self.lock();
        if after < inner.forgotten {
            return Err(StoreError::Compacted {
                after,
                why: format!(
                    "only changes after revision {} are kept in memory",
                    inner.forgotten
                ),
            });
        }
        let replay: Vec<Arc<Changes>> = inner
            .history
            .iter()
            .filter(|c| c.revision > after)
            .cloned()
            .collect();
        let live = inner.live.subscribe();
        drop(inner);
        let replayed = stream::iter(replay);
        let state = (live, after);
        let live = stream::unfold(state, |(mut rx, mut last)| async move {
            loop {
                match rx.recv().await {
                    // Already replayed, or published between the copy and the subscription.
                    Ok(c) if c.revision <= last => continue,
                    Ok(c) => {
                        last = c.revision;
                        return Some((Ok(c), (rx, last)));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let e = StoreError::Compacted {
                            after: last,
                            why: format!("the watcher fell {n} transactions behind"),
                        };
                        // Ends the stream after the error: a closed channel is never read.
                        let (_, closed) = broadcast::channel(1);
                        return Some((Err(e), (closed, Revision::MAX)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        let stream = replayed
            .map(Ok)
            .chain(live)
            .map(|c| c.map(Arc::unwrap_or_clone));
        Ok(Watch::new(stream.boxed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::watch::Change;

    fn tx(revision: Revision) -> Changes {
        Changes {
            revision,
            changes: vec![Change {
                key: format!("k{revision}"),
                value: Some(vec![]),
            }],
        }
    }

    #[tokio::test]
    async fn replay_then_live_each_once_and_a_laggard_is_told_to_reread() {
        let log = ChangeLog::new(0, 2);
        log.publish(tx(1));
        log.publish(tx(2));
        log.publish(tx(3));
        let e = log.watch(0).unwrap_err();
        assert!(matches!(e, StoreError::Compacted { after: 0, .. }), "{e}");
        let mut w = log.watch(1).unwrap();
        log.publish(tx(4));
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(w.next().await.unwrap().unwrap().revision);
        }
        assert_eq!(got, vec![2, 3, 4]);
        log.reset(4);
        assert!(w.next().await.is_none(), "a reset ends every watch");
    }
}
