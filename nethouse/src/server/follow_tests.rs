//! Following a shared store's watch: a watch that was set up and then failed (its etcd member
//! died) is watched again at once, however many outages came before.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream;

use super::{App, Auth, DEFAULT_MAX_IN_FLIGHT};
use crate::clock::ManualClock;
use crate::ipam::{Ipam, IpamConfig};
use crate::store::memory::MemoryStore;
use crate::store::{Outcome, Revision, Store, StoreError, Txn, Versioned, Watch};

/// A shared store whose every watch is set up and then fails at once; counts the watches.
#[derive(Clone)]
struct FailingWatches {
    inner: MemoryStore,
    watches: Arc<Mutex<usize>>,
}

impl Store for FailingWatches {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
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
        self.inner.commit(txn).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision().await
    }

    async fn watch(&self, _after: Revision) -> Result<Watch, StoreError> {
        *self.watches.lock().unwrap() += 1;
        let cut = StoreError::Read {
            what: "the store's watch".into(),
            message: "its member died".into(),
        };
        Ok(Watch::new(Box::pin(stream::iter([Err(cut)]))))
    }

    fn max_txn_ops(&self) -> Option<usize> {
        self.inner.max_txn_ops()
    }

    fn shared(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_watch_that_was_set_up_is_watched_again_without_growing_back_off() {
    let store = FailingWatches {
        inner: MemoryStore::shared(),
        watches: Arc::default(),
    };
    let ipam = Ipam::load(
        store.clone(),
        Arc::new(ManualClock::new(1_000)),
        IpamConfig::default(),
    )
    .await
    .unwrap();
    let _app = App::new(ipam, Auth::Disabled, DEFAULT_MAX_IN_FLIGHT);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let watches = *store.watches.lock().unwrap();
    // 100 ms between outages: about 15. A back-off doubling on would allow 5 (0.1 + 0.2 + 0.4
    // + 0.8 s).
    assert!(watches >= 10, "{watches} watches in 1.5 s");
}
