//! The default store: one redb file, every transaction durable (fsync) before it is answered.
//!
//! Group commit: a single writer thread takes every transaction waiting in its queue, applies
//! them one after another inside ONE redb write transaction (each still checked against the
//! state left by the ones before it, so the batch is serializable), commits once — one fsync —
//! and only then answers each caller. Throughput grows with concurrency while each answer still
//! means "on disk".

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use super::{Op, Outcome, Revision, Store, StoreError, Txn, Versioned, first_failed_check};

/// Key -> 8 bytes little-endian revision followed by the value.
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
/// Most transactions folded into one commit; bounds the latency a batch adds to its first caller.
const MAX_BATCH: usize = 4096;
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

type Reply = oneshot::Sender<Result<Outcome, StoreError>>;

/// Told of every commit, failed ones included: how long it took, fsync included, and how many
/// transactions it carried (conflicting ones too).
/// The disk's latency is what an operator needs to see first when calls slow down.
pub type OnCommit = Arc<dyn Fn(Duration, usize) + Send + Sync>;

pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
    queue: Option<mpsc::UnboundedSender<(Txn, Reply)>>,
    writer: Option<JoinHandle<()>>,
}

impl EmbeddedStore {
    /// Opens (or creates) `dir/nethouse.redb` with the default page cache.
    pub fn open(dir: &Path) -> Result<EmbeddedStore, StoreError> {
        Self::open_with(dir, DEFAULT_CACHE_BYTES, None)
    }

    /// As [`EmbeddedStore::open`], reporting every commit to `on_commit`.
    pub fn open_observed(dir: &Path, on_commit: OnCommit) -> Result<EmbeddedStore, StoreError> {
        Self::open_with(dir, DEFAULT_CACHE_BYTES, Some(on_commit))
    }

    pub fn open_with(
        dir: &Path,
        cache_bytes: usize,
        on_commit: Option<OnCommit>,
    ) -> Result<EmbeddedStore, StoreError> {
        let open_err = |message: String| StoreError::Open {
            path: dir.display().to_string(),
            message,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| open_err(format!("creating the directory: {e}")))?;
        let path = dir.join("nethouse.redb");
        // The cache serves the write path's B-tree pages; start-up reads the file once, so a
        // large cache would only turn into resident memory.
        let repair_logged = std::cell::Cell::new(-1i32);
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .set_repair_callback(move |session| {
                // Not closed cleanly (kill -9, power loss): redb walks the whole file to rebuild
                // its allocator state, which on a big store is most of the start-up. Say so.
                let quarter = (session.progress() * 4.0) as i32;
                if quarter > repair_logged.get() {
                    repair_logged.set(quarter);
                    tracing::warn!(
                        progress = format!("{:.0}%", session.progress() * 100.0),
                        "the store was not closed cleanly; repairing it"
                    );
                }
            })
            .create(&path)
            .map_err(|e| open_err(e.to_string()))?;
        // Create the tables so readers never meet a missing table.
        let init = || -> Result<(), redb::Error> {
            let w = db.begin_write()?;
            w.open_table(KV)?;
            w.open_table(META)?;
            w.commit()?;
            Ok(())
        };
        init().map_err(|e| open_err(e.to_string()))?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::unbounded_channel();
        let writer_db = db.clone();
        let writer = std::thread::Builder::new()
            .name("nethouse-store-writer".into())
            .spawn(move || writer_loop(&writer_db, rx, on_commit))
            .map_err(|e| open_err(format!("starting the writer thread: {e}")))?;
        Ok(EmbeddedStore {
            db,
            path,
            queue: Some(tx),
            writer: Some(writer),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting transactions, lets the writer finish the ones already queued, and waits.
    pub fn close(&mut self) {
        self.queue.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }

    fn read<T>(
        &self,
        what: &str,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static str, &'static [u8]>) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let run = || -> Result<T, redb::Error> {
            let r = self.db.begin_read()?;
            let table = r.open_table(KV)?;
            f(&table)
        };
        run().map_err(|e| StoreError::Read {
            what: what.to_string(),
            message: e.to_string(),
        })
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// (revision, value) of a stored entry.
fn split(bytes: &[u8]) -> (Revision, &[u8]) {
    let (rev, value) = bytes.split_at(8.min(bytes.len()));
    let mut buf = [0u8; 8];
    buf[..rev.len()].copy_from_slice(rev);
    (u64::from_le_bytes(buf), value)
}

fn decode(bytes: &[u8]) -> Versioned {
    let (revision, value) = split(bytes);
    Versioned {
        revision,
        value: value.to_vec(),
    }
}

fn encode(revision: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&revision.to_le_bytes());
    out.extend_from_slice(value);
    out
}

impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.read(key, |t| Ok(t.get(key)?.map(|v| decode(v.value()))))
    }

    async fn scan_each<A, F>(&self, prefix: &str, acc: A, mut visit: F) -> Result<A, StoreError>
    where
        A: Send + 'static,
        F: FnMut(&mut A, &str, Revision, &[u8]) -> Result<(), String> + Send + 'static,
    {
        let db = self.db.clone();
        let prefix = prefix.to_string();
        let what = format!("keys under {prefix:?}");
        let scan = move || -> Result<A, StoreError> {
            let read = |e: redb::Error| StoreError::Read {
                what: format!("keys under {prefix:?}"),
                message: e.to_string(),
            };
            let r = db.begin_read().map_err(|e| read(e.into()))?;
            let table = r.open_table(KV).map_err(|e| read(e.into()))?;
            let mut acc = acc;
            for entry in table.range(prefix.as_str()..).map_err(|e| read(e.into()))? {
                let (k, v) = entry.map_err(|e| read(e.into()))?;
                let key = k.value();
                if !key.starts_with(prefix.as_str()) {
                    break;
                }
                let bytes = v.value();
                let (rev, value) = split(bytes);
                visit(&mut acc, key, rev, value).map_err(|message| StoreError::Decode {
                    key: key.to_string(),
                    message,
                })?;
            }
            Ok(acc)
        };
        match tokio::task::spawn_blocking(scan).await {
            Ok(res) => res,
            Err(e) => Err(StoreError::Read {
                what,
                message: format!("scan task failed: {e}"),
            }),
        }
    }

    async fn commit(&self, txn: Txn) -> Result<Outcome, StoreError> {
        let queue = self.queue.as_ref().ok_or(StoreError::Closed)?;
        let (tx, rx) = oneshot::channel();
        queue.send((txn, tx)).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn writer_loop(
    db: &Database,
    mut rx: mpsc::UnboundedReceiver<(Txn, Reply)>,
    on_commit: Option<OnCommit>,
) {
    let mut batch: Vec<(Txn, Reply)> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let applied = apply_batch(db, &batch);
        // Failed commits too: a disk that stalls and then errors is what this is for.
        if let Some(observe) = &on_commit {
            observe(started.elapsed(), batch.len());
        }
        match applied {
            Ok(outcomes) => {
                for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                let message = e.to_string();
                tracing::error!(error = %message, batch = batch.len(), "store commit failed");
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(StoreError::Commit {
                        message: message.clone(),
                    }));
                }
            }
        }
    }
}

fn apply_batch(db: &Database, batch: &[(Txn, Reply)]) -> Result<Vec<Outcome>, redb::Error> {
    let w = db.begin_write()?;
    let mut outcomes = Vec::with_capacity(batch.len());
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
            for op in &txn.ops {
                match op {
                    Op::Put(k, v) => {
                        kv.insert(k.as_str(), encode(revision, v).as_slice())?;
                    }
                    Op::Delete(k) => {
                        kv.remove(k.as_str())?;
                    }
                }
            }
            outcomes.push(Outcome::Committed(revision));
        }
        meta.insert(META_REVISION, revision)?;
    }
    w.commit()?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let n = std::sync::atomic::AtomicUsize::new(0);
        crate::store::conformance::run(|| {
            let d = root.join(
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    .to_string(),
            );
            async move { EmbeddedStore::open(&d).unwrap() }
        })
        .await;
    }

    #[tokio::test]
    async fn committed_data_and_revisions_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let rev = {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            let Outcome::Committed(r) = s
                .commit(
                    Txn::default()
                        .check("a", super::super::Expect::Absent)
                        .put("a", b"1".to_vec()),
                )
                .await
                .unwrap()
            else {
                panic!("conflict on an empty store")
            };
            r
        };
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let got = s.get("a").await.unwrap().unwrap();
        assert_eq!(got.value, b"1");
        assert_eq!(got.revision, rev);
        let Outcome::Committed(next) = s.commit(Txn::default().put("b", vec![])).await.unwrap()
        else {
            panic!()
        };
        assert!(next > rev, "revisions must keep increasing across restarts");
    }
}
