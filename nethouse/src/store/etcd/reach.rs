//! Whether etcd can be reached, as the store's [`Health`]: `/readyz` turns 503 while no member
//! answers (a replica that cannot commit should get no traffic) and back as soon as a
//! round-trip goes through (`route` decides which failures mean that). Each round-trip is also
//! timed for the metrics, and its failure classified. It also keeps since when every member
//! has refused at once (an election): `route` waits for a leader for a bounded time from then.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::store::embedded::Observer;
use crate::store::health::{Failure, FailureKind, Health};
use crate::store::{StoreError, Txn};

pub struct Reach {
    health: watch::Sender<Health>,
    observer: Option<Observer>,
    /// Since when every member has refused, in every round that found them all refusing,
    /// with no answer since: the start of a wait for a leader, whichever call saw it first.
    refusing_since: Mutex<Option<Instant>>,
}

/// A failed round-trip: what etcd (or the timeout) said, whether it means the member cannot
/// serve (then the outcome of a commit is unknown), and whether the request certainly did
/// nothing (then it may go to another member at once, a commit too).
#[derive(Clone, Debug)]
pub struct CallError {
    pub message: String,
    pub unreachable: bool,
    pub not_applied: bool,
}

impl CallError {
    pub fn read(self, what: &str) -> StoreError {
        StoreError::Read {
            what: what.to_string(),
            message: format!("etcd: {}", self.message),
        }
    }

    pub fn commit(self, t: &Txn) -> StoreError {
        let ops = t.ops.len();
        let message = if self.unreachable && self.not_applied {
            // The last attempt was refused before doing anything, and a commit goes on to
            // another member (or round again) only after such a refusal: none applied it.
            format!(
                "etcd: {} (the transaction of {ops} ops was not applied)",
                self.message
            )
        } else if self.unreachable {
            format!(
                "etcd: {} (the transaction of {ops} ops may or may not have been applied)",
                self.message
            )
        } else {
            format!(
                "etcd refused the transaction of {ops} ops: {}",
                self.message
            )
        };
        StoreError::Commit { message }
    }
}

/// Whether an error of the client means etcd (a quorum of it) could not be reached, rather
/// than a refusal of the request itself (no permission, too many ops).
fn is_unreachable(e: &etcd_client::Error) -> bool {
    use tonic::Code;
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => matches!(
            s.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
        ),
        _ => false,
    }
}

/// Whether the request certainly did nothing: it never reached the member (the connection was
/// refused), or the member refused it before looking at it because it has no leader (etcd's
/// answer to a client that requires one, as ours do).
fn is_not_applied(e: &etcd_client::Error) -> bool {
    let first: &(dyn std::error::Error + 'static) = match e {
        etcd_client::Error::GRpcStatus(s) => {
            if s.code() == tonic::Code::Unavailable && s.message().contains("no leader") {
                return true;
            }
            s
        }
        etcd_client::Error::TransportError(t) => t,
        etcd_client::Error::IoError(io) => io,
        _ => return false,
    };
    let mut cause = Some(first);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

impl Reach {
    pub fn new(observer: Option<Observer>) -> Reach {
        if let Some(o) = &observer {
            o.healthy(true);
        }
        Reach {
            health: watch::Sender::new(Health::default()),
            observer,
            refusing_since: Mutex::new(None),
        }
    }

    pub fn health(&self) -> Health {
        self.health.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Health> {
        self.health.subscribe()
    }

    pub async fn call<T>(
        &self,
        op: &'static str,
        timeout: Duration,
        fut: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, CallError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(CallError {
                unreachable: is_unreachable(&e),
                not_applied: is_not_applied(&e),
                message: e.to_string(),
            }),
            Err(_) => Err(CallError {
                message: format!("no answer within {timeout:?}"),
                unreachable: true,
                not_applied: false,
            }),
        };
        if let Some(o) = &self.observer {
            o.round_trip(op, started.elapsed(), result.is_ok());
        }
        result
    }

    /// A commit (one transaction or a group of `transactions`) was answered after `took`,
    /// failed ones too: the store's commit metrics, as the embedded store's group commit.
    pub fn committed(&self, took: Duration, transactions: usize) {
        if let Some(o) = &self.observer {
            o.commit(took, transactions);
        }
    }

    /// etcd answered at `revision` (an answer's header); `own_commit` when the answer was to a
    /// commit of ours applied at that revision: for the watch-lag metrics.
    pub fn seen(&self, revision: i64, own_commit: bool) {
        if let Some(o) = &self.observer {
            o.revision(super::revision_of(revision), own_commit);
        }
    }

    fn refusing_since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // An Option<Instant> is never left half-written by a panic.
        self.refusing_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A round of `op` found every member refusing (no leader, connection refused): how long
    /// they have refused, from the first such round with no answer since.
    pub fn refusing(&self, op: &str, cause: &str) -> Duration {
        let now = Instant::now();
        let (since, first) = {
            let mut since = self.refusing_since();
            match *since {
                Some(s) => (s, false),
                None => (*since.insert(now), true),
            }
        };
        if first {
            tracing::warn!(
                op,
                error = %cause,
                "every etcd member refuses (no leader: an election?); waiting for one"
            );
        }
        now.duration_since(since)
    }

    /// How long every member has refused, if they do (see [`Reach::refusing`]).
    pub fn refusing_for(&self) -> Option<Duration> {
        self.refusing_since().map(|since| since.elapsed())
    }

    /// A round-trip went through: etcd can be reached.
    pub fn reached(&self) {
        if let Some(since) = self.refusing_since().take() {
            tracing::info!(
                refused_ms = since.elapsed().as_millis() as u64,
                "an etcd member answers again after every member refused"
            );
        }
        if self.health.borrow().failing.is_none() {
            return;
        }
        let mut was = None;
        self.health.send_if_modified(|h| {
            was = h.failing.take();
            was.is_some()
        });
        if let Some(f) = was {
            tracing::info!(
                outage_ms = f.since.elapsed().as_millis() as u64,
                "etcd can be reached again"
            );
            if let Some(o) = &self.observer {
                o.healthy(true);
            }
        }
    }

    /// No member could serve `op`: etcd cannot be reached.
    pub fn lost(&self, op: &str, cause: &str) {
        let cause = format!("etcd cannot be reached ({op}): {cause}");
        let mut first = false;
        self.health.send_modify(|h| match &mut h.failing {
            Some(f) => f.cause = cause.clone(),
            None => {
                first = true;
                h.failing = Some(Failure {
                    since: Instant::now(),
                    kind: FailureKind::Unreachable,
                    cause: cause.clone(),
                });
            }
        });
        if first {
            tracing::warn!(error = %cause, "etcd cannot be reached; not ready until it can");
            if let Some(o) = &self.observer {
                o.failure(FailureKind::Unreachable);
                o.healthy(false);
            }
        }
    }
}
