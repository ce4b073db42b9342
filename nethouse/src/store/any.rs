//! The store `nethouse serve` runs on, chosen at start (`--store embedded|etcd`). An enum
//! rather than a trait object: [`Store`]'s scans are generic, and one server type serves both.

use super::embedded::EmbeddedStore;
use super::etcd::EtcdStore;
use super::health::Health;
use super::{Outcome, Revision, Store, StoreError, Txn, Versioned, Watch};

pub enum AnyStore {
    Embedded(EmbeddedStore),
    /// Boxed: etcd's client is kilobytes of gRPC handles.
    Etcd(Box<EtcdStore>),
}

impl Store for AnyStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        match self {
            AnyStore::Embedded(s) => s.get(key).await,
            AnyStore::Etcd(s) => s.get(key).await,
        }
    }

    async fn scan_each<A, F>(&self, prefix: &str, acc: A, visit: F) -> Result<A, StoreError>
    where
        A: Send + 'static,
        F: FnMut(&mut A, &str, Revision, &[u8]) -> Result<(), String> + Send + 'static,
    {
        match self {
            AnyStore::Embedded(s) => s.scan_each(prefix, acc, visit).await,
            AnyStore::Etcd(s) => s.scan_each(prefix, acc, visit).await,
        }
    }

    async fn commit(&self, txn: Txn) -> Result<Outcome, StoreError> {
        match self {
            AnyStore::Embedded(s) => s.commit(txn).await,
            AnyStore::Etcd(s) => s.commit(txn).await,
        }
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        match self {
            AnyStore::Embedded(s) => s.revision().await,
            AnyStore::Etcd(s) => s.revision().await,
        }
    }

    async fn watch(&self, after: Revision) -> Result<Watch, StoreError> {
        match self {
            AnyStore::Embedded(s) => s.watch(after).await,
            AnyStore::Etcd(s) => s.watch(after).await,
        }
    }

    fn max_txn_ops(&self) -> Option<usize> {
        match self {
            AnyStore::Embedded(s) => s.max_txn_ops(),
            AnyStore::Etcd(s) => s.max_txn_ops(),
        }
    }

    fn shared(&self) -> bool {
        match self {
            AnyStore::Embedded(s) => s.shared(),
            AnyStore::Etcd(s) => s.shared(),
        }
    }

    fn health(&self) -> Health {
        match self {
            AnyStore::Embedded(s) => s.health(),
            AnyStore::Etcd(s) => s.health(),
        }
    }

    fn watch_health(&self) -> Option<tokio::sync::watch::Receiver<Health>> {
        match self {
            AnyStore::Embedded(s) => s.watch_health(),
            AnyStore::Etcd(s) => s.watch_health(),
        }
    }
}
