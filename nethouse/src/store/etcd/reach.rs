//! Whether etcd can be reached, from every round-trip and from a probe while there are none,
//! as the store's [`Health`]: `/readyz` turns 503 while etcd cannot be reached (a replica that
//! cannot commit should get no traffic) and back as soon as a round-trip goes through. Each
//! round-trip is also timed for the metrics.

use std::sync::Weak;
use std::time::{Duration, Instant};

use etcd_client::{GetOptions, KvClient};
use tokio::sync::watch;

use crate::store::embedded::Observer;
use crate::store::health::{Failure, FailureKind, Health};
use crate::store::{StoreError, Txn};

/// How often the probe asks etcd; `/readyz` follows etcd's reachability this closely.
const PROBE_EVERY: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Reach {
    health: watch::Sender<Health>,
    observer: Option<Observer>,
}

/// A failed round-trip: what etcd (or the timeout) said, and whether it means etcd cannot be
/// reached (then the outcome of a commit is unknown).
#[derive(Debug)]
pub struct CallError {
    pub message: String,
    pub unreachable: bool,
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
        let message = if self.unreachable {
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

impl Reach {
    pub fn new(observer: Option<Observer>) -> Reach {
        if let Some(o) = &observer {
            o.healthy(true);
        }
        Reach {
            health: watch::Sender::new(Health::default()),
            observer,
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
                message: e.to_string(),
            }),
            Err(_) => Err(CallError {
                message: format!("no answer within {timeout:?}"),
                unreachable: true,
            }),
        };
        if let Some(o) = &self.observer {
            o.round_trip(op, started.elapsed(), result.is_ok());
        }
        match &result {
            Ok(_) => self.reached(),
            Err(e) if e.unreachable => self.lost(op, &e.message),
            Err(_) => {}
        }
        result
    }

    fn reached(&self) {
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

    fn lost(&self, op: &str, cause: &str) {
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

/// Asks etcd for one key's count every [`PROBE_EVERY`] (a linearizable read: it needs a leader
/// and a quorum, as a commit does) for as long as the store lives.
pub async fn probe(reach: Weak<Reach>, mut kv: KvClient, key: String) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(reach) = reach.upgrade() else { return };
        let get = kv.get(key.clone(), Some(GetOptions::new().with_count_only()));
        let _ = reach.call("probe", PROBE_TIMEOUT, get).await;
    }
}
