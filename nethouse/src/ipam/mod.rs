//! The IPAM: leases, their addresses and their life cycle, over any [`Store`].
//!
//! Concurrency: one in-memory [`State`] behind a mutex that is never held across an await;
//! operations on one owner key are serialized by a striped async lock (so the cache of that
//! key is updated in commit order); subnet removal excludes allocations in flight through
//! `admin` while it marks the subnet draining, and other subnet changes until it is done.
//! Correctness never rests on the cache: each transaction checks the revisions it relied on.
//!
//! Re-attaching a fixed lease (the rule, and why it is safe): an allocation for a fixed owner
//! that already holds a lease returns the SAME addresses and moves the attachment to the caller,
//! even when the old attachment is on another node that never ran DEL (a dead node). This is
//! safe because the owner is the pod's namespace/name, and the Kubernetes API admits at most
//! one pod object of a name at a time: a new sandbox for that name exists only after the old
//! pod object was deleted — gracefully (its node ran DEL) or by force, which is the operator's
//! or node-lifecycle's statement that the old sandbox is gone. A late DEL from the old sandbox
//! carries the old container ID, so it does not detach the new attachment.
//!
//! Files: `plan` decides an allocation (pure, table-tested); `commit` is the one loop that
//! commits a change and retries lost races; `leases`, `subnets` and `removal` (a subnet's, in
//! transactions the store takes) are the operations, `query` the reads; `refresh` re-reads the store after a lost race and `load` reads it all back at
//! start; `watched` applies what other replicas committed (the store's watch) and confirms
//! the view's answers against a shared store; `spread` keeps replicas from trying for the same
//! addresses; `keys` is the store's key scheme; `state` is the view, `pool` the address order,
//! `record` and `codec` the in-memory and stored forms of a lease.

mod codec;
mod commit;
mod error;
pub mod keys;
mod leases;
mod load;
mod plan;
pub mod pool;
pub(crate) mod query;
pub mod races;
mod record;
mod refresh;
mod removal;
mod spread;
mod state;
mod subnets;
mod watched;

use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

pub use error::IpamError;
pub use keys::KeyError;
pub use query::{DEFAULT_PAGE, MAX_PAGE};
pub use state::IpState;
use state::State;

use crate::clock::Clock;
use crate::model::lease::OwnerKey;
use crate::store::Store;

const KEY_LOCK_STRIPES: usize = 1024;

#[derive(Clone, Debug)]
pub struct IpamConfig {
    /// Cooldown of a released address unless its subnet overrides it.
    pub default_cooldown_ms: u64,
}

impl Default for IpamConfig {
    fn default() -> Self {
        IpamConfig {
            default_cooldown_ms: 60_000,
        }
    }
}

/// How an allocation was satisfied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocOutcome {
    Created,
    /// A fixed lease moved to a new attachment.
    Reattached,
    /// The same attachment asked again (idempotent).
    Existing,
}

pub struct Ipam<S: Store> {
    store: S,
    clock: Arc<dyn Clock>,
    config: IpamConfig,
    state: Mutex<State>,
    key_locks: Vec<tokio::sync::Mutex<()>>,
    admin: tokio::sync::RwLock<()>,
    /// The store's revision the view is complete up to (see [`Ipam::applied`]).
    applied: AtomicU64,
    races: races::LostRaces,
}

impl<S: Store> Ipam<S> {
    /// Reads the whole store back and builds the view; refuses to start on an unreadable record
    /// rather than risk handing out an address twice.
    pub async fn load(
        store: S,
        clock: Arc<dyn Clock>,
        config: IpamConfig,
    ) -> Result<Self, IpamError> {
        let t = std::time::Instant::now();
        let (state, at) = load::read_back_at(&store).await?;
        tracing::info!(
            ms = t.elapsed().as_millis() as u64,
            leases = state.leases.len(),
            addresses = state.ips.len(),
            "store read back"
        );
        Ok(Ipam {
            store,
            clock,
            config,
            state: Mutex::new(state),
            key_locks: (0..KEY_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            admin: tokio::sync::RwLock::new(()),
            applied: AtomicU64::new(at),
            races: races::LostRaces::default(),
        })
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Mutations of State are small and never leave it half-updated across a panic point
        // that matters more than serving; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key_lock(&self, key: &OwnerKey) -> &tokio::sync::Mutex<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        &self.key_locks[(h.finish() as usize) % KEY_LOCK_STRIPES]
    }

    /// Checks the cache against itself (lease -> address -> lease, pools -> addresses); empty
    /// when consistent.
    pub fn inconsistencies(&self) -> Vec<String> {
        self.state().inconsistencies()
    }
}

#[cfg(test)]
mod concurrent_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod interleave;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod removal_tests;
#[cfg(test)]
mod spread_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod watched_tests;
