//! The one way an IPAM change reaches the store. Plan from the view, commit the planned
//! transaction (it checks every revision the plan relied on), and on success apply it to the
//! view. A lost race re-reads what changed and plans again; an unknown outcome re-reads the key
//! the change is about, so the view learns whichever happened. Every change — allocate, end,
//! detach, add a subnet — goes through [`Ipam::commit_with_retry`], so this is written once.

use super::keys::{self, Key};
use super::plan;
use super::pool::Pick;
use super::state::State;
use super::{Ipam, IpamError};
use crate::store::{Outcome, Revision, Store, Txn};

/// Bound on optimistic retries of one operation; a conflict costs one store read.
pub(super) const MAX_ATTEMPTS: usize = 16;

/// What one attempt decided from the view.
pub(super) enum Step<T, A> {
    /// Nothing to write: the answer.
    Done(T),
    Write(Write<A>),
}

pub(super) struct Write<A> {
    pub txn: Txn,
    /// Addresses taken from the pools for this write; they go back if it does not land.
    pub picks: Vec<(String, Pick)>,
    /// Brings the view up to the landed write, at its revision, and gives the answer.
    pub apply: A,
}

impl<A> Write<A> {
    /// A write that took no address from a pool.
    pub fn new(txn: Txn, apply: A) -> Self {
        Write {
            txn,
            picks: Vec::new(),
            apply,
        }
    }
}

/// What a lost race can have made stale in the view.
#[derive(Clone, Copy, Debug)]
pub(super) enum Reread {
    /// The key that failed its check (after an unknown outcome: the change's own key).
    Key,
    /// The set of subnets: another replica changed it.
    Subnets,
}

impl<S: Store> Ipam<S> {
    /// Plans with `plan` (given the view and the time), commits, applies; after a lost race
    /// re-reads and plans again, at most [`MAX_ATTEMPTS`] times. `key` is the key the change
    /// is about: re-read after an unknown outcome, named when contention wins.
    pub(super) async fn commit_with_retry<T, A>(
        &self,
        key: &str,
        reread: Reread,
        mut plan: impl FnMut(&mut State, u64) -> Result<Step<T, A>, IpamError>,
    ) -> Result<T, IpamError>
    where
        A: FnOnce(&mut State, Revision) -> T,
    {
        let mut lost_last = None;
        for _ in 0..MAX_ATTEMPTS {
            let now = self.clock.now_ms();
            let step = {
                let mut st = self.state();
                plan(&mut st, now)?
            };
            let write = match step {
                // Nothing to write: with a shared store, only once the store agrees with the
                // view the answer came from (another replica may have changed the key).
                Step::Done(answer) => {
                    if matches!(reread, Reread::Key) && !self.confirm(key).await? {
                        continue;
                    }
                    return Ok(answer);
                }
                Step::Write(write) => write,
            };
            match self.store.commit(write.txn).await {
                Ok(Outcome::Committed(rev)) => return Ok((write.apply)(&mut self.state(), rev)),
                Ok(Outcome::Conflict { key: lost }) => {
                    tracing::debug!(key, lost = %lost, "lost a race; re-reading and trying again");
                    self.races.record(&lost);
                    self.settle(reread, &lost, write.picks).await?;
                    lost_last = Some(lost);
                }
                Err(e) => {
                    // Only a store that can time out after applying leaves the outcome
                    // unknown; the re-read learns it. Its own failure changes nothing more:
                    // the next conflict on this key re-reads it again.
                    let _ = self.settle(reread, key, write.picks).await;
                    return Err(e.into());
                }
            }
        }
        Err(IpamError::Contention {
            key: key.to_string(),
            // Only confirmations failed: the view kept disagreeing with the store on `key`.
            lost: lost_last.unwrap_or_else(|| key.to_string()),
        })
    }

    /// Re-reads after a write that did not land (or may have), then gives its picks back.
    async fn settle(
        &self,
        reread: Reread,
        key: &str,
        picks: Vec<(String, Pick)>,
    ) -> Result<(), IpamError> {
        let read = match reread {
            Reread::Key => self.refresh(key).await,
            Reread::Subnets => self.refresh_subnets(key).await,
        };
        if !picks.is_empty() {
            let mut st = self.state();
            plan::give_back(&mut st, picks, read.is_ok());
            // Another replica took the address: it is taking the ones after it too.
            if let Ok(Key::Address { subnet, .. }) = keys::parse(key) {
                super::spread::jump(&mut st, subnet);
            }
        }
        read
    }
}
