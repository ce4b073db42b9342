//! The narrow storage contract under NetHouse: versioned keys, prefix scans and atomic
//! multi-key transactions guarded by per-key expectations. "Reserve if free" is a transaction
//! that expects the key absent; compare-and-swap expects a revision. A lost race is the value
//! [`Outcome::Conflict`], not an error. There are no lock methods: every store (in-memory,
//! embedded redb, etcd) can offer exactly this. [`Store::watch`] streams what was committed,
//! so a replica keeps its view current with what other replicas wrote.

use std::future::Future;

pub mod any;
mod changelog;
pub mod embedded;
pub mod etcd;
pub mod health;
pub mod memory;
pub mod watch;
pub mod watch_lag;

pub use watch::{Change, Changes, Watch};

#[cfg(test)]
mod conformance;
#[cfg(test)]
pub mod faulty;

/// A store-wide number stamped on every key a transaction writes; it grows with every commit
/// that writes. Commits a store applied together (the etcd store's group commit) may share one
/// revision, but never a key: one key is written at most once per revision.
pub type Revision = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub revision: Revision,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The key must not exist (reserve-if-free).
    Absent,
    /// The key must exist with exactly this revision (compare-and-swap).
    Revision(Revision),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put(String, Vec<u8>),
    Delete(String),
}

/// All checks hold and then all ops apply, or nothing happens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub checks: Vec<(String, Expect)>,
    pub ops: Vec<Op>,
}

impl Txn {
    pub fn check(mut self, key: impl Into<String>, expect: Expect) -> Self {
        self.checks.push((key.into(), expect));
        self
    }

    pub fn put(mut self, key: impl Into<String>, value: Vec<u8>) -> Self {
        self.ops.push(Op::Put(key.into(), value));
        self
    }

    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete(key.into()));
        self
    }

    /// What a store's limit on one transaction ([`Store::max_txn_ops`]) counts: the larger of
    /// its checks and its ops. That is etcd's count of `--max-txn-ops` for a transaction as
    /// the etcd store sends it (the most of its compares, its success ops and its failure ops,
    /// which read each checked key once).
    pub fn size(&self) -> usize {
        self.checks.len().max(self.ops.len())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied and durable; the keys written carry this revision. Other transactions committed
    /// together with this one may carry the same revision (none of them writes a key this one
    /// checks or writes).
    Committed(Revision),
    /// The first check that failed; nothing was written.
    Conflict { key: String },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the store at {path}: {message}")]
    Open { path: String, message: String },
    #[error("reading {what}: {message}")]
    Read { what: String, message: String },
    #[error("committing a transaction: {message}")]
    Commit { message: String },
    #[error("stored record {key} is unreadable: {message}")]
    Decode { key: String, message: String },
    #[error("the store is closed")]
    Closed,
    /// Refused at once, nothing done: the store failed and has not re-opened yet.
    #[error("the store is re-opening after a failure ({cause}); nothing was done, retry later")]
    Unavailable { cause: String },
    /// The changes after `after` cannot be replayed any more (the store compacted them, kept
    /// fewer, or the watcher fell behind): whoever keeps a view must read the store again.
    #[error("changes after revision {after} can no longer be replayed ({why}); re-read the store")]
    Compacted { after: Revision, why: String },
}

pub trait Store: Send + Sync + 'static {
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Versioned>, StoreError>> + Send;

    /// Visits every key starting with `prefix`, in key order, without copying it: `visit`
    /// folds each (key, revision, value) into `acc`. Start-up reads the whole store this way.
    /// A visitor error stops the scan and comes back as [`StoreError::Decode`] naming the key.
    fn scan_each<A, F>(
        &self,
        prefix: &str,
        acc: A,
        visit: F,
    ) -> impl Future<Output = Result<A, StoreError>> + Send
    where
        A: Send + 'static,
        F: FnMut(&mut A, &str, Revision, &[u8]) -> Result<(), String> + Send + 'static;

    /// Every key starting with `prefix`, in key order, copied out.
    fn scan(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<(String, Versioned)>, StoreError>> + Send {
        self.scan_each(prefix, Vec::new(), |acc, key, revision, value| {
            acc.push((
                key.to_string(),
                Versioned {
                    value: value.to_vec(),
                    revision,
                },
            ));
            Ok(())
        })
    }

    /// Applies `txn` atomically and durably; returns once the outcome is durable. Concurrent
    /// commits behave as if applied one after another in some order, each checked against the
    /// state the ones before it left: the store may apply several at once (group commit), each
    /// with its own outcome.
    fn commit(&self, txn: Txn) -> impl Future<Output = Result<Outcome, StoreError>> + Send;

    /// The store's revision now: every commit answered so far is at or below it. Read before a
    /// full read-back, it is where a watch that keeps the read-back current starts.
    fn revision(&self) -> impl Future<Output = Result<Revision, StoreError>> + Send;

    /// Every revision above `after` that wrote something, in revision order, each once
    /// ([`Changes`]: the revision and every key put or deleted at it, by one transaction or by
    /// several committed together). When the changes after
    /// `after` cannot be replayed, the watch fails with [`StoreError::Compacted`] (at once or
    /// as its next item): the watcher must read the store again. A watch that ends (`None`)
    /// was cut: watch again from the last revision seen.
    fn watch(&self, after: Revision) -> impl Future<Output = Result<Watch, StoreError>> + Send;

    /// The largest transaction ([`Txn::size`]) this store commits, `None` for no limit. A
    /// larger one is refused as a whole (etcd: `--max-txn-ops`, "too many operations in txn
    /// request"); a change that may outgrow it (removing a subnet with all its address
    /// records) is split into transactions that fit. etcd's is at least 2 (the floor of
    /// `--etcd-max-txn-ops`): a removal's last transaction needs that many.
    fn max_txn_ops(&self) -> Option<usize> {
        None
    }

    /// Whether writers in other processes (other replicas on one etcd) change this store too.
    /// Then a view can be stale even for keys this process alone seems to write, and an answer
    /// read from the view alone must be confirmed against the store.
    fn shared(&self) -> bool {
        false
    }

    /// Whether commits go through now. A store that only fails call by call never says otherwise.
    fn health(&self) -> health::Health {
        health::Health::default()
    }

    /// Every change of [`Store::health`], for a store that refuses commits as a whole while it
    /// recovers (re-opens its file); `None` for one that never does.
    fn watch_health(&self) -> Option<tokio::sync::watch::Receiver<health::Health>> {
        None
    }
}

/// Evaluates a transaction against any key/value view; shared by the stores that apply
/// transactions themselves, so their semantics cannot drift apart.
pub(crate) fn first_failed_check(
    txn: &Txn,
    mut revision_of: impl FnMut(&str) -> Result<Option<Revision>, StoreError>,
) -> Result<Option<&str>, StoreError> {
    for (key, expect) in &txn.checks {
        let current = revision_of(key)?;
        let ok = match (expect, current) {
            (Expect::Absent, None) => true,
            (Expect::Revision(want), Some(have)) => *want == have,
            _ => false,
        };
        if !ok {
            return Ok(Some(key));
        }
    }
    Ok(None)
}
