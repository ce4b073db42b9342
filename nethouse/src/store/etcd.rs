//! The store of several NetHouse replicas: etcd (`nethouse serve --store etcd`).
//!
//! Every [`Txn`] is an etcd transaction: its checks are the compares (absent: `version == 0`;
//! at a revision: `mod_revision == r`), its ops the success branch, and the revision etcd
//! answers is the commit's. Store revisions ARE etcd revisions, so a watch resumes exactly
//! where a read-back left off. A lost race reads the checked keys in the failure branch of the
//! same transaction, so the conflict names the first failed check without a second round-trip.
//! Commits that wait while another is in flight go to etcd together, as nested transactions of
//! one (`group`, `batch`): each keeps its own checks and outcome, and those that commit share
//! one revision (they never share a key).
//!
//! Keys: `{--etcd-prefix}{key}`, with the IPAM's key scheme underneath (`ipam::keys`): one key
//! per lease (`l/…`), one per address ever used (`i/{subnet}/{ip}`), one per subnet (`s/…`) and
//! `m/subnets`, which only subnet changes write. An allocation writes its lease and its address
//! keys and only *compares* its subnet's key, so no key is written by every allocation: two
//! allocations contend only when they pick the same address or serve the same pod, and etcd
//! applies them without a hot key (a compare reads, it does not serialize writers).
//!
//! Files: `connect` (flags to clients: endpoints, TLS, auth), `members` (one client per member,
//! which member to ask), `route` (a round-trip on the first member that serves it), `reach`
//! (round-trips timed, reachability as health), `txn` (a Txn, or a group of them, as etcd's),
//! `batch` (which waiting commits may go together), `group` (group commit: the queue and the
//! task that sends it), `watch` (etcd's watch as [`Watch`], noticing a member that stopped
//! answering).

mod batch;
#[cfg(test)]
mod batch_tests;
mod connect;
#[cfg(test)]
mod election_tests;
#[cfg(test)]
mod failover_tests;
mod group;
#[cfg(test)]
mod group_tests;
mod leader;
mod members;
mod reach;
mod route;
#[cfg(test)]
pub(crate) mod tests;
mod txn;
mod watch;

use std::sync::Arc;

use etcd_client::GetOptions;

pub use connect::{ConnectError, EtcdOptions, EtcdTls};
use group::Committer;
use reach::Reach;
use route::{Conn, Retry};

use super::health::Health;
use super::{Outcome, Revision, Store, StoreError, Txn, Versioned, Watch};
use crate::store::embedded::Observer;

/// Keys per range request of a scan: a million leases must not come back in one answer
/// (etcd's and gRPC's message limits), and 1,000 records of a few hundred bytes stay well
/// under both while costing only a thousand round-trips for a million.
const SCAN_PAGE: i64 = 1000;

pub struct EtcdStore {
    conn: Arc<Conn>,
    prefix: String,
    /// The task that probes etcd while nothing else talks to it; aborted on drop.
    probe: tokio::task::AbortHandle,
    /// Group commit: every commit goes through its queue.
    committer: Committer,
    /// etcd's `--max-txn-ops`, as NetHouse was told it (`--etcd-max-txn-ops`).
    max_txn_ops: usize,
}

impl EtcdStore {
    /// Connects (and, with a user, authenticates) to the endpoints of `opts`, and starts
    /// following whether etcd can be reached. Needs a tokio runtime.
    pub async fn connect(
        opts: &EtcdOptions,
        observer: Option<Observer>,
    ) -> Result<EtcdStore, ConnectError> {
        let members = connect::members(opts).await?;
        let conn = Arc::new(Conn {
            members,
            reach: Reach::new(observer),
            timeout: opts.request_timeout,
            leader_wait: opts.leader_wait,
        });
        let probe = tokio::spawn(route::probe(
            Arc::downgrade(&conn),
            format!("{}{}", opts.prefix, crate::ipam::keys::SUBNETS_META),
        ))
        .abort_handle();
        let limits = batch::Limits {
            max_txn_ops: opts.max_txn_ops,
            ..batch::Limits::default()
        };
        let committer = Committer::start(conn.clone(), &opts.prefix, limits, opts.group_wait);
        Ok(EtcdStore {
            conn,
            prefix: opts.prefix.clone(),
            probe,
            committer,
            max_txn_ops: limits.max_txn_ops,
        })
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The store's key of an etcd key under the prefix.
    fn local<'a>(&self, key: &'a [u8]) -> Result<&'a str, String> {
        let key = std::str::from_utf8(key).map_err(|e| format!("key is not UTF-8: {e}"))?;
        key.strip_prefix(self.prefix.as_str())
            .ok_or_else(|| format!("key {key:?} is outside the prefix {:?}", self.prefix))
    }

    /// A read of `key` (with `opts`) on the first member that serves it.
    async fn read(
        &self,
        op: &'static str,
        key: Vec<u8>,
        opts: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse, reach::CallError> {
        let (resp, _) = self
            .conn
            .call(op, Retry::Any, |c| {
                let (key, opts) = (key.clone(), opts.clone());
                async move { c.kv_client().get(key, opts).await }
            })
            .await?;
        self.conn
            .reach
            .seen(resp.header().map_or(0, |h| h.revision()), false);
        Ok(resp)
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.probe.abort();
    }
}

/// The end of the range of every key starting with `prefix` (etcd's convention).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes (or nothing): every key from the prefix on.
    vec![0]
}

fn revision_of(r: i64) -> Revision {
    // etcd revisions start at 1 and never go down.
    r.max(0) as Revision
}

impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let resp = self
            .read("get", self.full(key).into_bytes(), None)
            .await
            .map_err(|e| e.read(key))?;
        Ok(resp.kvs().first().map(|kv| Versioned {
            value: kv.value().to_vec(),
            revision: revision_of(kv.mod_revision()),
        }))
    }

    async fn scan_each<A, F>(&self, prefix: &str, mut acc: A, mut visit: F) -> Result<A, StoreError>
    where
        A: Send + 'static,
        F: FnMut(&mut A, &str, Revision, &[u8]) -> Result<(), String> + Send + 'static,
    {
        let what = format!("keys under {prefix:?}");
        let start = self.full(prefix).into_bytes();
        let end = prefix_end(&start);
        let mut from = start;
        // Every page at the revision of the first: the scan is one consistent snapshot.
        let mut at = 0i64;
        loop {
            let opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(SCAN_PAGE)
                .with_revision(at);
            let resp = self
                .read("range", from.clone(), Some(opts))
                .await
                .map_err(|e| e.read(&what))?;
            if at == 0 {
                at = resp.header().map_or(0, |h| h.revision());
            }
            for item in resp.kvs() {
                let key = self
                    .local(item.key())
                    .map_err(|message| StoreError::Decode {
                        key: String::from_utf8_lossy(item.key()).into_owned(),
                        message,
                    })?;
                visit(
                    &mut acc,
                    key,
                    revision_of(item.mod_revision()),
                    item.value(),
                )
                .map_err(|message| StoreError::Decode {
                    key: key.to_string(),
                    message,
                })?;
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    // The next page starts just after the last key.
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(acc),
            }
        }
    }

    async fn commit(&self, t: Txn) -> Result<Outcome, StoreError> {
        self.committer.commit(t).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        let key = self.full(crate::ipam::keys::SUBNETS_META).into_bytes();
        let resp = self
            .read("get", key, Some(GetOptions::new().with_count_only()))
            .await
            .map_err(|e| e.read("the store's revision"))?;
        Ok(revision_of(resp.header().map_or(0, |h| h.revision())))
    }

    async fn watch(&self, after: Revision) -> Result<Watch, StoreError> {
        watch::start(self.conn.clone(), &self.prefix, after).await
    }

    /// One transaction alone is sent as it is (`group` never nests one that fills the limit),
    /// and etcd counts it as [`Txn::size`] does (`batch::ops_of`).
    fn max_txn_ops(&self) -> Option<usize> {
        Some(self.max_txn_ops)
    }

    fn shared(&self) -> bool {
        true
    }

    fn health(&self) -> Health {
        self.conn.reach.health()
    }

    fn watch_health(&self) -> Option<tokio::sync::watch::Receiver<Health>> {
        Some(self.conn.reach.subscribe())
    }
}
