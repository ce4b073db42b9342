//! The store recovers from a failed commit by itself. A backend that fails its writes on request
//! stands in for a full disk; it fails exactly as the file does (redb latches the error).

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redb::backends::FileBackend;
use redb::{BackendError, Database, StorageBackend};

use super::{EmbeddedStore, Observer, Opener};
use crate::store::health::{FailureKind, StoreObserver};
use crate::store::{Expect, Outcome, Store, StoreError, Txn};

#[derive(Debug)]
struct Flaky {
    inner: FileBackend,
    full: Arc<AtomicBool>,
}

impl Flaky {
    fn check(&self) -> std::io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }
}

impl StorageBackend for Flaky {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.check()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.check()?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        self.inner.close()
    }
    fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(s, e)
    }
    fn try_lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(s, e)
    }
    fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(s, e)
    }
    fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(s, e)
    }
    fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(s, e)
    }
    fn query_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(s, e)
    }
}

fn flaky_opener(path: &Path, full: &Arc<AtomicBool>) -> Opener {
    let (path, full) = (path.to_path_buf(), full.clone());
    Box::new(move || {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        Database::builder().create_with_backend(Flaky {
            inner: FileBackend::new(file)?,
            full: full.clone(),
        })
    })
}

#[derive(Default)]
struct Seen {
    no_space: AtomicUsize,
    reopened: AtomicUsize,
    healthy: AtomicBool,
}

impl StoreObserver for Seen {
    fn commit(&self, _: Duration, _: usize) {}
    fn failure(&self, kind: FailureKind) {
        if kind == FailureKind::NoSpace {
            self.no_space.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn reopened(&self) {
        self.reopened.fetch_add(1, Ordering::SeqCst);
    }
    fn healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }
}

fn put(key: &str) -> Txn {
    Txn::default()
        .check(key, Expect::Absent)
        .put(key, key.as_bytes().to_vec())
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what} within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_full_disk_is_refused_fast_and_the_store_reopens_once_it_has_room() {
    let dir = tempfile::tempdir().unwrap();
    let full = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let store = EmbeddedStore::open_using(
        dir.path(),
        flaky_opener(&dir.path().join("nethouse.redb"), &full),
        Some(seen.clone() as Observer),
    )
    .unwrap();
    let mut health = store.watch_health().unwrap();
    let Outcome::Committed(first) = store.commit(put("acked")).await.unwrap() else {
        panic!("conflict on an empty store")
    };

    full.store(true, Ordering::SeqCst);
    let failed = store.commit(put("failed")).await.unwrap_err();
    assert!(
        matches!(&failed, StoreError::Commit { message } if message.contains("No space left on device")),
        "{failed}"
    );
    // Refused at once, with the cause, for as long as the disk is full.
    let failing = store
        .health()
        .failing
        .expect("failing after a failed commit");
    assert_eq!(failing.kind, FailureKind::NoSpace);
    assert!(!seen.healthy.load(Ordering::SeqCst));
    for _ in 0..3 {
        let refused = store.commit(put("refused")).await.unwrap_err();
        assert!(
            matches!(&refused, StoreError::Unavailable { cause } if cause.contains("No space left on device")),
            "{refused}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(store.health().failing.is_some(), "re-opened on a full disk");
    assert_eq!(seen.reopened.load(Ordering::SeqCst), 0);

    full.store(false, Ordering::SeqCst);
    until("the store re-opened", || store.health().failing.is_none()).await;
    health.mark_changed();
    assert_eq!(health.borrow_and_update().reopens, 1);
    assert_eq!(seen.reopened.load(Ordering::SeqCst), 1);
    assert!(seen.healthy.load(Ordering::SeqCst));
    assert!(
        seen.no_space.load(Ordering::SeqCst) >= 2,
        "each attempt on a full disk counts"
    );

    // The acknowledged commit is there, the failed and the refused ones are not.
    assert_eq!(store.get("acked").await.unwrap().unwrap().revision, first);
    assert_eq!(store.get("failed").await.unwrap(), None);
    assert_eq!(store.get("refused").await.unwrap(), None);
    let Outcome::Committed(next) = store.commit(put("after")).await.unwrap() else {
        panic!("conflict on a fresh key")
    };
    assert!(next > first, "revisions go on increasing after a re-open");
}

#[tokio::test]
async fn closing_during_an_outage_ends_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let full = Arc::new(AtomicBool::new(false));
    let mut store = EmbeddedStore::open_using(
        dir.path(),
        flaky_opener(&dir.path().join("nethouse.redb"), &full),
        None,
    )
    .unwrap();
    full.store(true, Ordering::SeqCst);
    store.commit(put("failed")).await.unwrap_err();
    let started = Instant::now();
    store.close();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "close waited {:?} for a store that cannot re-open",
        started.elapsed()
    );
    assert!(matches!(
        store.commit(put("late")).await,
        Err(StoreError::Unavailable { .. } | StoreError::Closed)
    ));
}
