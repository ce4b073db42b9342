//! In-memory store: the fake for unit and property tests. Shares its transaction semantics
//! with the embedded store through [`super::first_failed_check`], and its watch through
//! [`ChangeLog`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::changelog::{ChangeLog, DEFAULT_KEEP};
use super::watch::{Change, Changes, Watch};
use super::{Op, Outcome, Revision, Store, StoreError, Txn, Versioned, first_failed_check};

struct Inner {
    data: BTreeMap<String, Versioned>,
    revision: Revision,
    log: ChangeLog,
    /// What [`Store::shared`] says: a test of several replicas on one store sets it.
    shared: bool,
}

/// Cloning shares the data, so a test can "restart" a service on the same store.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_history(DEFAULT_KEEP)
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose watch replays only the last `keep` transactions.
    pub fn with_history(keep: usize) -> Self {
        MemoryStore {
            inner: Arc::new(Mutex::new(Inner {
                data: BTreeMap::new(),
                revision: 0,
                log: ChangeLog::new(0, keep),
                shared: false,
            })),
        }
    }

    /// As several replicas see one etcd: [`Store::shared`] says so.
    pub fn shared() -> Self {
        let s = Self::default();
        s.lock().shared = true;
        s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied transaction (ops are
        // applied only after every check passed), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self.lock().data.get(key).cloned())
    }

    async fn scan_each<A, F>(&self, prefix: &str, mut acc: A, mut visit: F) -> Result<A, StoreError>
    where
        A: Send + 'static,
        F: FnMut(&mut A, &str, Revision, &[u8]) -> Result<(), String> + Send + 'static,
    {
        let inner = self.lock();
        for (k, v) in inner
            .data
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            visit(&mut acc, k, v.revision, &v.value).map_err(|message| StoreError::Decode {
                key: k.clone(),
                message,
            })?;
        }
        Ok(acc)
    }

    async fn commit(&self, txn: Txn) -> Result<Outcome, StoreError> {
        let mut inner = self.lock();
        let failed = first_failed_check(&txn, |k| Ok(inner.data.get(k).map(|v| v.revision)))?;
        if let Some(key) = failed {
            return Ok(Outcome::Conflict {
                key: key.to_string(),
            });
        }
        inner.revision += 1;
        let revision = inner.revision;
        let mut changes = Vec::with_capacity(txn.ops.len());
        for op in txn.ops {
            match op {
                Op::Put(k, value) => {
                    changes.push(Change {
                        key: k.clone(),
                        value: Some(value.clone()),
                    });
                    inner.data.insert(k, Versioned { value, revision });
                }
                Op::Delete(k) => {
                    // A delete of a missing key changes nothing, and is not reported (as etcd).
                    if inner.data.remove(&k).is_some() {
                        changes.push(Change {
                            key: k,
                            value: None,
                        });
                    }
                }
            }
        }
        inner.log.publish(Changes { revision, changes });
        Ok(Outcome::Committed(revision))
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.lock().revision)
    }

    async fn watch(&self, after: Revision) -> Result<Watch, StoreError> {
        self.lock().log.watch(after)
    }

    fn shared(&self) -> bool {
        self.lock().shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        crate::store::conformance::run(|| async { MemoryStore::new() }).await;
    }

    #[tokio::test]
    async fn a_watch_from_before_the_kept_history_is_told_to_reread() {
        let s = MemoryStore::with_history(2);
        crate::store::conformance::old_watch_is_compacted(&s, |_| async {}).await;
    }
}
