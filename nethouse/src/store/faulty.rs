//! A memory store that misbehaves on request, for tests of what the IPAM and the server do
//! when the store fails or is slow: its next commit fails without applying, or applies and then
//! fails (a timeout after the write landed), every read of an address key fails, its next
//! commit applies and then holds its caller until released, it reports the health it is
//! told (a failing store, a re-open), or it refuses transactions larger than a limit (etcd's
//! `--max-txn-ops`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};

use super::health::Health;
use super::memory::MemoryStore;
use super::{Outcome, Revision, Store, StoreError, Txn, Versioned, Watch};
use crate::ipam::keys;

#[derive(Clone, Default)]
pub struct FaultyStore {
    /// The store underneath, for a second writer that should see no faults.
    pub inner: MemoryStore,
    faults: Arc<Faults>,
}

#[derive(Default)]
struct Faults {
    fail_next_commit: AtomicBool,
    lose_next_answer: AtomicBool,
    fail_address_reads: AtomicBool,
    hold_next_commit: AtomicBool,
    /// [`Store::max_txn_ops`]; 0 for none.
    max_txn_ops: AtomicUsize,
    committed: Notify,
    release: Notify,
    health: watch::Sender<Health>,
}

impl FaultyStore {
    /// The next commit fails and applies nothing (a full disk, a lost connection).
    pub fn fail_next_commit(&self) {
        self.faults.fail_next_commit.store(true, Ordering::SeqCst);
    }

    /// The next commit applies, then reports a failure: the caller cannot tell what happened.
    pub fn lose_next_answer(&self) {
        self.faults.lose_next_answer.store(true, Ordering::SeqCst);
    }

    /// Forgets a commit fault that no commit consumed.
    pub fn disarm(&self) {
        self.faults.fail_next_commit.store(false, Ordering::SeqCst);
        self.faults.lose_next_answer.store(false, Ordering::SeqCst);
    }

    /// Reads of address keys fail while `on`.
    pub fn fail_address_reads(&self, on: bool) {
        self.faults.fail_address_reads.store(on, Ordering::SeqCst);
    }

    /// The next commit applies, then waits for [`FaultyStore::release`] before it returns.
    pub fn hold_next_commit(&self) {
        self.faults.hold_next_commit.store(true, Ordering::SeqCst);
    }

    /// Returns once a held commit has applied.
    pub async fn committed(&self) {
        self.faults.committed.notified().await;
    }

    /// Lets the held commit return.
    pub fn release(&self) {
        self.faults.release.notify_one();
    }

    /// From now on, a transaction larger than `max` ([`Txn::size`]) is refused and applies
    /// nothing, as etcd refuses one over its `--max-txn-ops`; [`Store::max_txn_ops`] says so.
    pub fn limit_txn_ops(&self, max: usize) {
        self.faults.max_txn_ops.store(max, Ordering::SeqCst);
    }

    /// What [`Store::health`] says from now on; commits are not affected.
    pub fn set_health(&self, change: impl FnOnce(&mut Health)) {
        self.faults.health.send_modify(change);
    }
}

impl Store for FaultyStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        if key.starts_with(keys::ADDRESSES) && self.faults.fail_address_reads.load(Ordering::SeqCst)
        {
            return Err(StoreError::Read {
                what: key.to_string(),
                message: "injected".into(),
            });
        }
        self.inner.get(key).await
    }

    async fn scan_each<A, F>(&self, prefix: &str, acc: A, visit: F) -> Result<A, StoreError>
    where
        A: Send + 'static,
        F: FnMut(&mut A, &str, Revision, &[u8]) -> Result<(), String> + Send + 'static,
    {
        self.inner.scan_each(prefix, acc, visit).await
    }

    async fn commit(&self, txn: Txn) -> Result<Outcome, StoreError> {
        if let Some(max) = self.max_txn_ops()
            && txn.size() > max
        {
            return Err(StoreError::Commit {
                message: format!(
                    "too many operations in txn request ({} > {max})",
                    txn.size()
                ),
            });
        }
        if self.faults.fail_next_commit.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Commit {
                message: "injected".into(),
            });
        }
        let out = self.inner.commit(txn).await;
        if self.faults.lose_next_answer.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Commit {
                message: "injected after applying".into(),
            });
        }
        if self.faults.hold_next_commit.swap(false, Ordering::SeqCst) {
            self.faults.committed.notify_one();
            self.faults.release.notified().await;
        }
        out
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision().await
    }

    async fn watch(&self, after: Revision) -> Result<Watch, StoreError> {
        self.inner.watch(after).await
    }

    fn max_txn_ops(&self) -> Option<usize> {
        Some(self.faults.max_txn_ops.load(Ordering::SeqCst)).filter(|&n| n > 0)
    }

    fn shared(&self) -> bool {
        self.inner.shared()
    }

    fn health(&self) -> Health {
        self.faults.health.borrow().clone()
    }

    fn watch_health(&self) -> Option<watch::Receiver<Health>> {
        Some(self.faults.health.subscribe())
    }
}
