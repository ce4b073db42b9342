//! The default store: one redb file, every transaction durable (fsync) before it is answered.
//!
//! Group commit: a single writer thread takes every transaction waiting in its queue, applies
//! them one after another inside ONE redb write transaction (each still checked against the
//! state left by the ones before it, so the batch is serializable), commits once — one fsync —
//! and only then answers each caller. Throughput grows with concurrency while each answer still
//! means "on disk".
//!
//! A failed commit (a full disk, an I/O error) leaves redb refusing everything until the file
//! is closed and opened again. The writer does that by itself (`recover`): commits are refused
//! at once meanwhile, and [`Store::health`] says why. Files: `writer` is the group commit,
//! `recover` the re-opening.
//!
//! Watch: the writer publishes each committed transaction, once its commit is durable, to a
//! [`ChangeLog`] that keeps the last ones in memory. A watch from before this process opened
//! the file (or before a re-open) is answered [`StoreError::Compacted`]: re-read.

mod recover;
#[cfg(test)]
mod recover_tests;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use redb::{Database, DatabaseError, ReadableDatabase, TableDefinition};
use tokio::sync::{mpsc, oneshot, watch};

use super::changelog::{ChangeLog, DEFAULT_KEEP};
use super::health::{Health, StoreObserver};
use super::{Outcome, Revision, Store, StoreError, Txn, Versioned, Watch};

/// Key -> 8 bytes little-endian revision followed by the value.
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

type Reply = oneshot::Sender<Result<Outcome, StoreError>>;

/// Told of every commit (failed ones included), of each failure and re-open, and of whether
/// commits go through: the disk's latency and its failures are what an operator needs first.
pub type Observer = Arc<dyn StoreObserver>;

/// Opens the database file; called at start and again by every re-open.
type Opener = Box<dyn Fn() -> Result<Database, DatabaseError> + Send + Sync>;

/// What the store handle and its writer thread share.
struct Shared {
    /// `None` while the writer re-opens the file: reads are refused then, like commits.
    db: RwLock<Option<Arc<Database>>>,
    health: watch::Sender<Health>,
    open: Opener,
    dir: PathBuf,
    observer: Option<Observer>,
    /// Committed transactions, for [`Store::watch`].
    log: ChangeLog,
}

impl Shared {
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        let db = self.db.read().unwrap_or_else(|p| p.into_inner()).clone();
        db.ok_or_else(|| self.unavailable())
    }

    fn set_db(&self, db: Option<Arc<Database>>) -> Option<Arc<Database>> {
        std::mem::replace(&mut *self.db.write().unwrap_or_else(|p| p.into_inner()), db)
    }

    fn unavailable(&self) -> StoreError {
        let cause = match &self.health.borrow().failing {
            Some(f) => f.describe(),
            None => "it is being re-opened".to_string(),
        };
        StoreError::Unavailable { cause }
    }

    fn observe(&self, f: impl FnOnce(&dyn StoreObserver)) {
        if let Some(o) = &self.observer {
            f(o.as_ref());
        }
    }
}

pub struct EmbeddedStore {
    shared: Arc<Shared>,
    path: PathBuf,
    queue: Option<mpsc::UnboundedSender<(Txn, Reply)>>,
    writer: Option<JoinHandle<()>>,
}

impl EmbeddedStore {
    /// Opens (or creates) `dir/nethouse.redb` with the default page cache.
    pub fn open(dir: &Path) -> Result<EmbeddedStore, StoreError> {
        Self::open_with(dir, DEFAULT_CACHE_BYTES, None)
    }

    /// As [`EmbeddedStore::open`], reporting to `observer`.
    pub fn open_observed(dir: &Path, observer: Observer) -> Result<EmbeddedStore, StoreError> {
        Self::open_with(dir, DEFAULT_CACHE_BYTES, Some(observer))
    }

    pub fn open_with(
        dir: &Path,
        cache_bytes: usize,
        observer: Option<Observer>,
    ) -> Result<EmbeddedStore, StoreError> {
        let path = dir.join("nethouse.redb");
        let file = path.clone();
        let open: Opener = Box::new(move || {
            // The cache serves the write path's B-tree pages; start-up reads the file once, so
            // a large cache would only turn into resident memory.
            let repair_logged = std::cell::Cell::new(-1i32);
            Database::builder()
                .set_cache_size(cache_bytes)
                .set_repair_callback(move |session| {
                    // Not closed cleanly (kill -9, power loss, a failed commit): redb walks the
                    // whole file to rebuild its allocator state, which on a big store is most of
                    // the start-up. Say so.
                    let quarter = (session.progress() * 4.0) as i32;
                    if quarter > repair_logged.get() {
                        repair_logged.set(quarter);
                        tracing::warn!(
                            progress = format!("{:.0}%", session.progress() * 100.0),
                            "the store was not closed cleanly; repairing it"
                        );
                    }
                })
                .create(&file)
        });
        Self::open_using(dir, open, observer)
    }

    fn open_using(
        dir: &Path,
        open: Opener,
        observer: Option<Observer>,
    ) -> Result<EmbeddedStore, StoreError> {
        let open_err = |message: String| StoreError::Open {
            path: dir.display().to_string(),
            message,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| open_err(format!("creating the directory: {e}")))?;
        let db = open_db(&open).map_err(|e| open_err(e.to_string()))?;
        let at = stored_revision(&db).map_err(|e| open_err(e.to_string()))?;
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(Arc::new(db))),
            health: watch::Sender::new(Health::default()),
            open,
            dir: dir.to_path_buf(),
            observer,
            log: ChangeLog::new(at, DEFAULT_KEEP),
        });
        shared.observe(|o| o.healthy(true));
        let (tx, rx) = mpsc::unbounded_channel();
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("nethouse-store-writer".into())
            .spawn(move || writer::run(&writer_shared, rx))
            .map_err(|e| open_err(format!("starting the writer thread: {e}")))?;
        Ok(EmbeddedStore {
            shared,
            path: dir.join("nethouse.redb"),
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
        let db = self.shared.db()?;
        let run = || -> Result<T, redb::Error> {
            let r = db.begin_read()?;
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

/// Opens the file and creates the tables, so readers never meet a missing table.
fn open_db(open: &Opener) -> Result<Database, redb::Error> {
    let db = open()?;
    let w = db.begin_write()?;
    w.open_table(KV)?;
    w.open_table(META)?;
    w.commit()?;
    Ok(db)
}

/// The revision of the last commit in the file.
pub(super) fn stored_revision(db: &Database) -> Result<Revision, redb::Error> {
    let r = db.begin_read()?;
    let meta = r.open_table(META)?;
    Ok(meta.get(META_REVISION)?.map(|v| v.value()).unwrap_or(0))
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
        let db = self.shared.db()?;
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
        // While the store re-opens, a commit is refused before it is queued: the caller hears
        // at once, and nothing piles up behind a file that may stay broken for minutes.
        if self.shared.health.borrow().failing.is_some() {
            return Err(self.shared.unavailable());
        }
        let queue = self.queue.as_ref().ok_or(StoreError::Closed)?;
        let (tx, rx) = oneshot::channel();
        queue.send((txn, tx)).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        let db = self.shared.db()?;
        stored_revision(&db).map_err(|e| StoreError::Read {
            what: "the store's revision".into(),
            message: e.to_string(),
        })
    }

    async fn watch(&self, after: Revision) -> Result<Watch, StoreError> {
        self.shared.log.watch(after)
    }

    fn health(&self) -> Health {
        self.shared.health.borrow().clone()
    }

    fn watch_health(&self) -> Option<watch::Receiver<Health>> {
        Some(self.shared.health.subscribe())
    }
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
    async fn a_watch_from_before_the_store_was_opened_is_told_to_reread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let s = EmbeddedStore::open(&path).unwrap();
        let start = s.revision().await.unwrap();
        s.commit(Txn::default().put("k", vec![])).await.unwrap();
        drop(s);
        let s = EmbeddedStore::open(&path).unwrap();
        let e = s.watch(start).await.unwrap_err();
        assert!(matches!(e, StoreError::Compacted { .. }), "{e}");
        let at = s.revision().await.unwrap();
        let mut w = s.watch(at).await.unwrap();
        let Outcome::Committed(r) = s.commit(Txn::default().put("k2", vec![])).await.unwrap()
        else {
            panic!("conflict without checks")
        };
        assert_eq!(w.next().await.unwrap().unwrap().revision, r);
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
