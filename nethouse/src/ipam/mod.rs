//! The IPAM: leases, their addresses and their life cycle, over any [`Store`].
//!
//! Concurrency: one in-memory [`State`] behind a mutex that is never held across an await;
//! operations on one owner key are serialized by a striped async lock (so the cache of that
//! key is updated in commit order); subnet removal excludes new allocations through `admin`.
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

mod codec;
mod error;
mod load;
pub mod pool;
pub(crate) mod query;
mod record;
mod state;
mod subnets;

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use nethouse_api::{
    AllocateResponse, AttachmentRef, DetachResponse, GcResponse, Lease, LeaseKind, Owner,
};

use codec::{decode_ip, decode_lease, decode_subnet, encode_ip, encode_lease};
pub use error::IpamError;
use pool::Pick;
pub use query::{DEFAULT_PAGE, MAX_PAGE};
use record::{AttRec, IpRec, LeaseRec, OwnerRec};
pub use state::IpState;
use state::{Cached, State};

use crate::clock::Clock;
use crate::model::cidr::Family;
use crate::model::lease::{IpRecord, OwnerKey, ValidAllocate, ValidDetach, ip_key, lease_key};
use crate::store::{Expect, Outcome, Revision, Store, Txn, Versioned};

/// Bound on optimistic retries of one operation; a conflict costs one store read.
const MAX_ATTEMPTS: usize = 16;
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
}

enum Plan {
    Done(AllocateResponse, AllocOutcome),
    Write {
        txn: Txn,
        key: OwnerKey,
        lease: LeaseRec,
        picks: Vec<(String, Pick)>,
        outcome: AllocOutcome,
    },
}

/// One address key as the store holds it: (subnet, address, revision and state if present).
type StoredIp = (String, std::net::IpAddr, Option<(Revision, IpState)>);

impl<S: Store> Ipam<S> {
    /// Reads the whole store back and builds the view; refuses to start on an unreadable record
    /// rather than risk handing out an address twice.
    pub async fn load(
        store: S,
        clock: Arc<dyn Clock>,
        config: IpamConfig,
    ) -> Result<Self, IpamError> {
        let t = std::time::Instant::now();
        let state = load::read_back(&store).await?;
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

    fn cooldown_ms(&self, subnet: &crate::model::subnet::Subnet) -> u64 {
        subnet
            .cooldown_seconds
            .map(|s| s * 1000)
            .unwrap_or(self.config.default_cooldown_ms)
    }

    pub async fn allocate(
        &self,
        req: ValidAllocate,
    ) -> Result<(AllocateResponse, AllocOutcome), IpamError> {
        let _admin = self.admin.read().await;
        let _key = self.key_lock(&req.key).lock().await;
        for _ in 0..MAX_ATTEMPTS {
            let now = self.clock.now_ms();
            let plan = {
                let mut st = self.state();
                match st.leases.get(&req.key) {
                    Some(existing) => {
                        let existing = existing.clone();
                        plan_existing(&mut st, &req, &existing, now)?
                    }
                    None => self.plan_new(&mut st, &req, now)?,
                }
            };
            let (txn, key, lease, picks, outcome) = match plan {
                Plan::Done(resp, outcome) => return Ok((resp, outcome)),
                Plan::Write {
                    txn,
                    key,
                    lease,
                    picks,
                    outcome,
                } => (txn, key, lease, picks, outcome),
            };
            match self.store.commit(txn).await {
                Ok(Outcome::Committed(rev)) => {
                    let mut st = self.state();
                    // Only a new lease wrote its address keys; a re-attach touched the lease alone.
                    let written = if outcome == AllocOutcome::Created {
                        &lease.ips[..]
                    } else {
                        &[]
                    };
                    for lip in written {
                        st.ips.insert(
                            lip.ip,
                            Cached {
                                rev,
                                value: IpState::Leased(key.clone()),
                            },
                        );
                    }
                    let ips = st.ip_configs(&lease);
                    let api = lease.to_api();
                    st.put_lease(key, rev, lease);
                    return Ok((AllocateResponse { lease: api, ips }, outcome));
                }
                Ok(Outcome::Conflict { key: conflicted }) => {
                    self.give_back(picks);
                    self.refresh(&conflicted).await?;
                }
                Err(e) => {
                    self.settle_unknown(&key, picks).await;
                    return Err(e.into());
                }
            }
        }
        Err(IpamError::Contention {
            key: lease_key(&req.key),
        })
    }

    /// After a commit whose outcome is unknown (a store that can time out after applying): the
    /// store's word on the lease decides. Re-reading the lease key learns the lease and every
    /// address it holds if the write landed; a pick goes back to the pool only while the view
    /// still has it as it was picked. Were the lease left unread, the owner's retry would find
    /// its own addresses taken and answer "exhausted", and the lease would stay unknown here.
    async fn settle_unknown(&self, key: &OwnerKey, picks: Vec<(String, Pick)>) {
        let learned = self.refresh(&lease_key(key)).await.is_ok();
        let mut st = self.state();
        for (subnet, pick) in picks {
            let Some(ip) = st
                .subnets
                .get(&subnet)
                .and_then(|e| e.subnet.cidr.nth(pick.offset()))
            else {
                continue;
            };
            // Unread, the pick goes back: a wrong guess costs one conflict, a lost one an address.
            if (!learned || still_as_picked(&pick, st.ips.get(&ip)))
                && let Some(e) = st.subnets.get_mut(&subnet)
            {
                e.pool.give_back(pick);
            }
        }
    }

    fn give_back(&self, picks: Vec<(String, Pick)>) {
        let mut st = self.state();
        for (subnet, pick) in picks {
            if let Some(e) = st.subnets.get_mut(&subnet) {
                e.pool.give_back(pick);
            }
        }
    }

    /// Picks one address per family the zone serves and builds the transaction that takes them.
    fn plan_new(&self, st: &mut State, req: &ValidAllocate, now: u64) -> Result<Plan, IpamError> {
        let names: Vec<(String, Family)> = st
            .zone_subnets(&req.zone)
            .iter()
            .map(|e| (e.subnet.name.clone(), e.subnet.family()))
            .collect();
        if names.is_empty() {
            let exists = st.subnets.values().any(|e| e.subnet.zone == req.zone);
            return Err(if exists {
                IpamError::ZoneExhausted {
                    zone: req.zone.clone(),
                    detail: "every subnet of the zone is being removed".into(),
                }
            } else {
                IpamError::UnknownZone {
                    zone: req.zone.clone(),
                }
            });
        }
        let mut picks: Vec<(String, Pick)> = Vec::new();
        let mut txn = Txn::default().check(lease_key(&req.key), Expect::Absent);
        let mut ips = Vec::new();
        for family in [Family::V4, Family::V6] {
            let of_family: Vec<&String> = names
                .iter()
                .filter(|(_, f)| *f == family)
                .map(|(n, _)| n)
                .collect();
            if of_family.is_empty() {
                continue;
            }
            let mut got = None;
            for name in &of_family {
                if let Some((ip, pick, check)) = self.pick_in_subnet(st, name, now) {
                    got = Some((name.to_string(), ip, pick, check));
                    break;
                }
            }
            let Some((subnet, ip, pick, check)) = got else {
                let detail = self.exhaustion_detail(st, &of_family, family, now);
                self.give_back_locked(st, picks);
                return Err(IpamError::ZoneExhausted {
                    zone: req.zone.clone(),
                    detail,
                });
            };
            let entry_rev = st.subnets.get(&subnet).map(|e| e.rev).unwrap_or_default();
            txn = txn
                .check(subnets::subnet_key_of(&subnet), Expect::Revision(entry_rev))
                .check(ip_key(&subnet, ip), check)
                .put(
                    ip_key(&subnet, ip),
                    encode_ip(&IpRecord::Leased {
                        owner: req.key.as_str().to_string(),
                    }),
                );
            ips.push(IpRec {
                ip,
                subnet: st.syms.sym(&subnet),
            });
            picks.push((subnet, pick));
        }
        let owner = req.owner.as_ref().map(|o| OwnerRec {
            cluster: st.syms.sym(&o.cluster),
            namespace: st.syms.sym(&o.namespace),
            pod: o.pod.as_str().into(),
        });
        let lease = LeaseRec {
            kind: req.kind,
            owner,
            zone: st.syms.sym(&req.zone),
            ips: ips.into(),
            attachment: Some(AttRec::new(&req.attachment, &mut st.syms)),
            created_unix_ms: now,
            updated_unix_ms: now,
        };
        let txn = txn.put(lease_key(&req.key), encode_lease(&lease.to_api()));
        Ok(Plan::Write {
            txn,
            key: req.key.clone(),
            lease,
            picks,
            outcome: AllocOutcome::Created,
        })
    }

    fn give_back_locked(&self, st: &mut State, picks: Vec<(String, Pick)>) {
        for (subnet, pick) in picks {
            if let Some(e) = st.subnets.get_mut(&subnet) {
                e.pool.give_back(pick);
            }
        }
    }

    /// Takes the next usable address of one subnet, skipping pool entries the cache contradicts.
    fn pick_in_subnet(
        &self,
        st: &mut State,
        subnet: &str,
        now: u64,
    ) -> Option<(std::net::IpAddr, Pick, Expect)> {
        let cooldown = self.cooldown_ms(&st.subnets.get(subnet)?.subnet);
        loop {
            let entry = st.subnets.get_mut(subnet)?;
            let pick = entry.pool.pick(now, cooldown)?;
            let ip = entry.subnet.cidr.nth(pick.offset())?;
            let cached = st.ips.get(&ip);
            if still_as_picked(&pick, cached) {
                let check = cached.map_or(Expect::Absent, |c| Expect::Revision(c.rev));
                return Some((ip, pick, check));
            }
            // Stale pool entry: the cache knows better; drop it and try the next.
        }
    }

    fn exhaustion_detail(&self, st: &State, names: &[&String], family: Family, now: u64) -> String {
        let (mut capacity, mut leased, mut cooling) = (0u128, 0u64, 0u64);
        for name in names {
            if let Some(e) = st.subnets.get(*name) {
                capacity += e.subnet.capacity();
                leased += e.attached + e.retained;
                cooling += e.pool.cooling(now, self.cooldown_ms(&e.subnet));
            }
        }
        format!(
            "no free {} address: {leased} of {capacity} leased, {cooling} cooling down",
            family.as_str()
        )
    }

    /// What the store holds for one address key, decoded.
    fn decode_stored_ip(key: &str, stored: Option<Versioned>) -> Result<StoredIp, IpamError> {
        let (subnet, ip) = state::parse_ip_key(key)?;
        let rec = match stored {
            Some(v) => Some((
                v.revision,
                match decode_ip(key, &v.value)? {
                    IpRecord::Leased { owner } => IpState::Leased(OwnerKey::from_stored(&owner)),
                    IpRecord::Released { at_ms } => IpState::Released(at_ms),
                },
            )),
            None => None,
        };
        Ok((subnet.to_string(), ip, rec))
    }

    /// Re-reads one key from the store into the cache (after a lost race).
    async fn refresh(&self, key: &str) -> Result<(), IpamError> {
        let stored = self.store.get(key).await?;
        if let Some(owner) = key.strip_prefix("l/") {
            let owner = OwnerKey::from_stored(owner);
            let lease = match &stored {
                Some(v) => Some((v.revision, decode_lease(key, &v.value)?)),
                None => None,
            };
            // The lease changed without this cache seeing it (another writer, or a call dropped
            // between its commit and its cache update): the addresses it held and the ones it
            // holds now changed with it. All are read before anything is applied, so a failed
            // read leaves the cache as it was rather than half-updated.
            let mut ip_keys: Vec<String> = {
                let st = self.state();
                st.leases.get(&owner).map_or_else(Vec::new, |c| {
                    c.value
                        .ips
                        .iter()
                        .map(|l| ip_key(&l.subnet, l.ip))
                        .collect()
                })
            };
            if let Some((_, l)) = &lease {
                ip_keys.extend(l.ips.iter().map(|i| ip_key(&i.subnet, i.ip)));
            }
            ip_keys.sort_unstable();
            ip_keys.dedup();
            let mut ips = Vec::with_capacity(ip_keys.len());
            for k in &ip_keys {
                let stored = self.store.get(k).await?;
                ips.push(Self::decode_stored_ip(k, stored)?);
            }
            let mut st = self.state();
            match lease {
                Some((rev, lease)) => {
                    let rec = LeaseRec::from_api(&lease, &mut st.syms);
                    st.put_lease(owner, rev, rec);
                }
                None => {
                    st.remove_lease(&owner);
                }
            }
            for (subnet, ip, rec) in ips {
                st.apply_ip(&subnet, ip, rec);
            }
        } else if key.starts_with("i/") {
            let (subnet, ip, rec) = Self::decode_stored_ip(key, stored)?;
            self.state().apply_ip(&subnet, ip, rec);
        } else if let Some(name) = key.strip_prefix("s/") {
            let mut st = self.state();
            match stored {
                Some(v) => {
                    let s = decode_subnet(key, &v.value)?;
                    if let Some(e) = st.subnets.get_mut(name) {
                        e.rev = v.revision;
                        e.draining = s.draining;
                    }
                }
                None => {
                    st.subnets.remove(name);
                }
            }
        } else if key == subnets::META_KEY {
            self.state().subnets_meta_rev = stored.map(|v| v.revision);
        }
        Ok(())
    }

    /// Ends a lease: deletes it and marks its addresses released now (their cooldown starts).
    /// The lease's revision is the only check needed: an address record that says "leased"
    /// is written only together with its lease and changed only together with that lease's
    /// deletion, so while the lease is unchanged its address records are too.
    fn end_lease_txn(key: &OwnerKey, lease: &Cached<LeaseRec>, now: u64) -> Txn {
        let mut txn = Txn::default()
            .check(lease_key(key), Expect::Revision(lease.rev))
            .delete(lease_key(key));
        for lip in lease.value.ips.iter() {
            txn = txn.put(
                ip_key(&lip.subnet, lip.ip),
                encode_ip(&IpRecord::Released { at_ms: now }),
            );
        }
        txn
    }

    fn apply_ended(&self, key: &OwnerKey, rev: u64, now: u64) -> Option<Lease> {
        let mut st = self.state();
        let old = st.remove_lease(key)?;
        for lip in old.value.ips.iter() {
            st.mark_released(&lip.subnet, lip.ip, rev, now);
        }
        Some(old.value.to_api())
    }

    /// Releases the fixed lease of `owner` (the location controller's call). Idempotent:
    /// `Ok(None)` when there is none.
    pub async fn release(&self, owner: &Owner) -> Result<Option<Lease>, IpamError> {
        self.release_exact(owner, None).await
    }

    /// Like [`Ipam::release`], but with `ips` only a lease holding exactly those addresses is
    /// ended: a caller repeating a release it already made (it crashed before recording it)
    /// must not end the lease the owner got since.
    pub async fn release_exact(
        &self,
        owner: &Owner,
        ips: Option<&[std::net::IpAddr]>,
    ) -> Result<Option<Lease>, IpamError> {
        let key = OwnerKey::fixed(owner);
        let _key = self.key_lock(&key).lock().await;
        self.end_with_retries(&key, |l| {
            ips.is_none_or(|want| {
                l.ips.len() == want.len() && l.ips.iter().all(|i| want.contains(&i.ip))
            })
        })
        .await
    }

    /// Ends the lease at `key` if `still_due` holds for its current value.
    async fn end_with_retries(
        &self,
        key: &OwnerKey,
        still_due: impl Fn(&LeaseRec) -> bool,
    ) -> Result<Option<Lease>, IpamError> {
        for _ in 0..MAX_ATTEMPTS {
            let now = self.clock.now_ms();
            let txn = {
                let st = self.state();
                match st.leases.get(key) {
                    Some(c) if still_due(&c.value) => Self::end_lease_txn(key, c, now),
                    _ => return Ok(None),
                }
            };
            match self.store.commit(txn).await? {
                Outcome::Committed(rev) => return Ok(self.apply_ended(key, rev, now)),
                Outcome::Conflict { key: k } => self.refresh(&k).await?,
            }
        }
        Err(IpamError::Contention {
            key: lease_key(key),
        })
    }

    /// Drops the attachment of a fixed lease (the address stays with its owner).
    async fn detach_fixed(
        &self,
        key: &OwnerKey,
        still_due: impl Fn(&LeaseRec) -> bool,
    ) -> Result<bool, IpamError> {
        for _ in 0..MAX_ATTEMPTS {
            let now = self.clock.now_ms();
            let (txn, lease) = {
                let st = self.state();
                match st.leases.get(key) {
                    Some(c) if still_due(&c.value) => {
                        let mut lease = c.value.clone();
                        lease.attachment = None;
                        lease.updated_unix_ms = now;
                        let txn = Txn::default()
                            .check(lease_key(key), Expect::Revision(c.rev))
                            .put(lease_key(key), encode_lease(&lease.to_api()));
                        (txn, lease)
                    }
                    _ => return Ok(false),
                }
            };
            match self.store.commit(txn).await? {
                Outcome::Committed(rev) => {
                    self.state().put_lease(key.clone(), rev, lease);
                    return Ok(true);
                }
                Outcome::Conflict { key: k } => self.refresh(&k).await?,
            }
        }
        Err(IpamError::Contention {
            key: lease_key(key),
        })
    }

    /// CNI DEL: a fixed lease is detached and retained, an ephemeral one released. Idempotent.
    pub async fn detach(&self, req: ValidDetach) -> Result<DetachResponse, IpamError> {
        let mut outcome = "not_found";
        for key in req.candidate_keys() {
            let _key = self.key_lock(&key).lock().await;
            let kind = {
                let st = self.state();
                st.leases
                    .get(&key)
                    .map(|c| (c.value.kind, c.value.attachment.clone()))
            };
            let attached_here = |l: &LeaseRec| {
                l.attachment
                    .as_ref()
                    .is_some_and(|a| a.is(&req.container_id, &req.ifname))
            };
            match kind {
                None => continue,
                Some((LeaseKind::Fixed, Some(a))) if a.is(&req.container_id, &req.ifname) => {
                    if self.detach_fixed(&key, attached_here).await? {
                        return Ok(resp("detached"));
                    }
                }
                Some((LeaseKind::Ephemeral, _)) => {
                    if self.end_with_retries(&key, attached_here).await?.is_some() {
                        return Ok(resp("released"));
                    }
                }
                // A newer sandbox of the same pod owns the lease now, or it is already detached.
                Some((LeaseKind::Fixed, _)) => outcome = "not_attached_here",
            }
        }
        Ok(resp(outcome))
    }

    /// Node GC: every lease attached on `node` to an attachment not in `valid` loses it —
    /// fixed leases are detached (never released), ephemeral ones released.
    pub async fn gc(&self, node: &str, valid: &[AttachmentRef]) -> GcResponse {
        let valid: HashSet<(&str, &str)> = valid
            .iter()
            .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
            .collect();
        let is_stale = |l: &LeaseRec| {
            l.attachment.as_ref().is_some_and(|a| {
                &*a.node == node && !valid.contains(&(&*a.container_id, &*a.ifname))
            })
        };
        let candidates: Vec<(OwnerKey, LeaseKind)> = {
            let st = self.state();
            st.by_node
                .get(node)
                .map(|keys| {
                    keys.iter()
                        .filter_map(|k| st.leases.get(k).map(|c| (k, c)))
                        .filter(|(_, c)| is_stale(&c.value))
                        .map(|(k, c)| (k.clone(), c.value.kind))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut out = GcResponse::default();
        for (key, kind) in candidates {
            let _key = self.key_lock(&key).lock().await;
            let result = match kind {
                LeaseKind::Fixed => self.detach_fixed(&key, is_stale).await.map(|d| (d, false)),
                LeaseKind::Ephemeral => self
                    .end_with_retries(&key, is_stale)
                    .await
                    .map(|l| (false, l.is_some())),
            };
            match result {
                Ok((detached, released)) => {
                    out.detached += detached as u64;
                    out.released += released as u64;
                }
                Err(e) => out.errors.push(format!("{}: {e}", key.as_str())),
            }
        }
        out
    }

    /// Checks the cache against itself (lease -> address -> lease); empty when consistent.
    pub fn inconsistencies(&self) -> Vec<String> {
        self.state().inconsistencies()
    }
}

/// Whether the view still has a picked address as the pool offered it: never used, or released
/// at the time the pool recorded.
fn still_as_picked(pick: &Pick, cached: Option<&Cached<IpState>>) -> bool {
    match (pick, cached) {
        (Pick::Fresh(_), None) => true,
        (Pick::Reused(_, at), Some(c)) => c.value == IpState::Released(*at),
        _ => false,
    }
}

fn resp(outcome: &str) -> DetachResponse {
    DetachResponse {
        outcome: outcome.to_string(),
    }
}

/// A lease already exists for the key: same attachment → answer as before; another attachment
/// of a fixed owner → move it (see the module docs for why that is safe).
fn plan_existing(
    st: &mut State,
    req: &ValidAllocate,
    existing: &Cached<LeaseRec>,
    now: u64,
) -> Result<Plan, IpamError> {
    let lease = &existing.value;
    if *lease.zone != *req.zone {
        return Err(IpamError::WrongZone {
            owner: req
                .owner
                .as_ref()
                .map(|o| o.to_string())
                .unwrap_or_else(|| req.key.as_str().to_string()),
            ips: lease
                .ips
                .iter()
                .map(|l| l.ip.to_string())
                .collect::<Vec<_>>()
                .join(","),
            lease_zone: lease.zone.to_string(),
            requested_zone: req.zone.clone(),
        });
    }
    if lease
        .attachment
        .as_ref()
        .is_some_and(|a| a.same_as(&req.attachment))
    {
        let resp = AllocateResponse {
            ips: st.ip_configs(lease),
            lease: lease.to_api(),
        };
        return Ok(Plan::Done(resp, AllocOutcome::Existing));
    }
    let mut moved = lease.clone();
    moved.attachment = Some(AttRec::new(&req.attachment, &mut st.syms));
    moved.updated_unix_ms = now;
    let txn = Txn::default()
        .check(lease_key(&req.key), Expect::Revision(existing.rev))
        .put(lease_key(&req.key), encode_lease(&moved.to_api()));
    Ok(Plan::Write {
        txn,
        key: req.key.clone(),
        lease: moved,
        picks: Vec::new(),
        outcome: AllocOutcome::Reattached,
    })
}

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
