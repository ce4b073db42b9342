//! Whether a store's commits go through, for `/readyz`, `/healthz`, metrics and the recovery
//! that re-reads the IPAM's view after the store re-opened its file.

use std::io;
use std::time::{Duration, Instant};

/// What a store says about itself. A store that fails only call by call (the in-memory fake)
/// is always [`Health::default`]: healthy, never re-opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Set while commits are refused: one failed and the store has not re-opened yet.
    pub failing: Option<Failure>,
    /// How often the store re-opened after a failure. Whatever was read from it before the
    /// last re-open may miss a change whose commit reported failure but reached the disk.
    pub reopens: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The first failure of this outage.
    pub since: Instant,
    pub kind: FailureKind,
    /// The latest error, e.g. "I/O error: No space left on device (os error 28)".
    pub cause: String,
}

impl Failure {
    /// "failing for 12s: <cause>", for answers and logs.
    pub fn describe(&self) -> String {
        format!(
            "failing for {}s: {}",
            self.since.elapsed().as_secs(),
            self.cause
        )
    }
}

/// Short, fixed metric labels; the full text goes to the log and to `/readyz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The file system is full (ENOSPC) or the quota is used up (EDQUOT).
    NoSpace,
    /// Any other I/O error.
    Io,
    /// Not an I/O error (redb's own complaint, a thread that would not start).
    Other,
    /// The store's server (etcd) cannot be reached: no answer, no connection, no quorum.
    Unreachable,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::NoSpace => "no_space",
            FailureKind::Io => "io",
            FailureKind::Other => "other",
            FailureKind::Unreachable => "unreachable",
        }
    }

    pub fn of_io(e: &io::Error) -> FailureKind {
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => FailureKind::NoSpace,
            _ => FailureKind::Io,
        }
    }
}

/// What a store reports as it works; the metrics implement it.
pub trait StoreObserver: Send + Sync {
    /// A commit ended after `took` (fsync included; failed commits too), carrying `transactions`
    /// (conflicting ones too).
    fn commit(&self, took: Duration, transactions: usize);
    /// A commit, or an attempt to re-open the store, failed.
    fn failure(&self, kind: FailureKind);
    /// The store re-opened its file after a failure.
    fn reopened(&self);
    /// Whether commits go through.
    fn healthy(&self, healthy: bool);
    /// One request to the store's server (etcd) by `op` (`get`, `range`, `txn`, `watch`,
    /// `probe`) took `took`; `ok` unless it failed. Stores without a server never call it.
    fn round_trip(&self, op: &'static str, took: Duration, ok: bool) {
        let _ = (op, took, ok);
    }
    /// The store's server (etcd) answered at `revision`; `own_commit` when the answer was to a
    /// commit of this process applied at that revision. Stores without a server never call it.
    fn revision(&self, revision: super::Revision, own_commit: bool) {
        let _ = (revision, own_commit);
    }
}
