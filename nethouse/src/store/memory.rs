//! In-memory store: the fake for unit and property tests. Shares its transaction semantics
//! with the embedded store through [`super::first_failed_check`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{Op, Outcome, Revision, Store, StoreError, Txn, Versioned, first_failed_check};

#[derive(Default)]
struct Inner {
    data: BTreeMap<String, Versioned>,
    revision: Revision,
}

/// Cloning shares the data, so a test can "restart" a service on the same store.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
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
        for op in txn.ops {
            match op {
                Op::Put(k, value) => {
                    inner.data.insert(k, Versioned { value, revision });
                }
                Op::Delete(k) => {
                    inner.data.remove(&k);
                }
            }
        }
        Ok(Outcome::Committed(revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        crate::store::conformance::run(|| async { MemoryStore::new() }).await;
    }
}
