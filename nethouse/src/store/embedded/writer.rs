//! The writer thread: group commit, and the hand-over to `recover` when a commit fails.

use std::time::Instant;

use redb::{Database, ReadableTable};
use tokio::sync::mpsc;

use super::recover::{Backoff, fail, recover};
use super::{KV, META, META_REVISION, Reply, Shared, decode, encode};
use crate::store::health::FailureKind;
use crate::store::{Change, Changes, Op, Outcome, StoreError, Txn, first_failed_check};

/// Most transactions folded into one commit; bounds the latency a batch adds to its first caller.
const MAX_BATCH: usize = 4096;

pub(super) fn run(shared: &Shared, mut rx: mpsc::UnboundedReceiver<(Txn, Reply)>) {
    let mut batch: Vec<(Txn, Reply)> = Vec::with_capacity(MAX_BATCH);
    let mut backoff = Backoff::default();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let db = match shared.db() {
            Ok(db) => db,
            Err(e) => {
                // Only `recover` takes the database away, and it runs on this thread.
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(StoreError::Unavailable {
                        cause: e.to_string(),
                    }));
                }
                continue;
            }
        };
        let started = Instant::now();
        let applied = apply_batch(&db, &batch);
        drop(db);
        // Failed commits too: a disk that stalls and then errors is what this is for.
        shared.observe(|o| o.commit(started.elapsed(), batch.len()));
        match applied {
            Ok((outcomes, changes)) => {
                // Durable now; watchers hear of it no later than the callers.
                for c in changes {
                    shared.log.publish(c);
                }
                for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                let (kind, cause) = (kind_of(&e), e.to_string());
                tracing::error!(
                    error = %cause,
                    kind = kind.as_str(),
                    batch = batch.len(),
                    "store commit failed; refusing commits until the store is re-opened"
                );
                let since = fail(shared, kind, cause.clone());
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(StoreError::Commit {
                        message: cause.clone(),
                    }));
                }
                if !recover(shared, &mut rx, &mut backoff, since) {
                    return;
                }
            }
        }
    }
}

/// The metric label of a redb error: I/O errors by their kind, anything else is `other`.
pub(super) fn kind_of(e: &redb::Error) -> FailureKind {
    match e {
        redb::Error::Io(io) => FailureKind::of_io(io),
        // redb latched an earlier I/O error; the error itself was counted when it happened.
        redb::Error::PreviousIo => FailureKind::Io,
        _ => FailureKind::Other,
    }
}

/// The outcome of each transaction of the batch, and what each committed one wrote (for the
/// watch), once the whole batch is durable.
type Applied = (Vec<Outcome>, Vec<Changes>);

fn apply_batch(db: &Database, batch: &[(Txn, Reply)]) -> Result<Applied, redb::Error> {
    let w = db.begin_write()?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut written = Vec::with_capacity(batch.len());
    {
        let mut kv = w.open_table(KV)?;
        let mut meta = w.open_table(META)?;
        let mut revision = meta.get(META_REVISION)?.map(|v| v.value()).unwrap_or(0);
        for (txn, _) in batch {
            let failed = first_failed_check(txn, |k| {
                kv.get(k)
                    .map(|v| v.map(|v| decode(v.value()).revision))
                    .map_err(|e| StoreError::Read {
                        what: k.to_string(),
                        message: e.to_string(),
                    })
            })
            .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
            if let Some(key) = failed {
                outcomes.push(Outcome::Conflict {
                    key: key.to_string(),
                });
                continue;
            }
            revision += 1;
            let mut changes = Vec::with_capacity(txn.ops.len());
            for op in &txn.ops {
                match op {
                    Op::Put(k, v) => {
                        kv.insert(k.as_str(), encode(revision, v).as_slice())?;
                        changes.push(Change {
                            key: k.clone(),
                            value: Some(v.clone()),
                        });
                    }
                    Op::Delete(k) => {
                        // Deleting a missing key changes nothing: not reported (as etcd).
                        if kv.remove(k.as_str())?.is_some() {
                            changes.push(Change {
                                key: k.clone(),
                                value: None,
                            });
                        }
                    }
                }
            }
            outcomes.push(Outcome::Committed(revision));
            written.push(Changes { revision, changes });
        }
        meta.insert(META_REVISION, revision)?;
    }
    w.commit()?;
    Ok((outcomes, written))
}
