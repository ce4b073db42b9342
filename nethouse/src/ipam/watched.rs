//! Keeping the view current with what other replicas commit: the store's watch reports every
//! revision's changes (`server::follow` feeds them in), and each is applied here key by key,
//! newer revisions only — the view may already hold a key's newer state (this replica's own
//! write, or a refresh after a lost race) when an older change of it arrives. A revision may
//! carry several transactions (the etcd store's group commit: this replica's own and other
//! replicas' side by side), but one key at most once, so a key the view holds at that very
//! revision already holds that change and is skipped. A deleted lease leaves a tombstone until
//! the watch has passed its deletion, so a late older change cannot bring it back.
//!
//! With a shared store an answer the view gives without writing ("this attachment already has
//! this lease", "no such lease") is confirmed against the store first ([`Ipam::confirm`]):
//! the watch makes the view current within milliseconds, the confirmation makes it exact.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use nethouse_api::Lease;

use super::codec::{decode_ip, decode_lease, decode_subnet};
use super::keys::{self, Key};
use super::pool::Pool;
use super::record::LeaseRec;
use super::state::{IpState, State, SubnetEntry};
use super::{Ipam, IpamError};
use crate::model::lease::{IpRecord, OwnerKey};
use crate::model::subnet::Subnet;
use crate::store::{Changes, Revision, Store};

/// One watched key, decoded (outside the view's lock).
enum Watched {
    SubnetPut(Subnet, bool),
    SubnetGone(String),
    LeasePut(OwnerKey, Lease),
    LeaseGone(OwnerKey),
    Ip(String, IpAddr, Option<IpState>),
    Meta,
}

fn decode(key: &str, value: Option<&[u8]>) -> Result<Watched, IpamError> {
    let parsed = keys::parse(key).map_err(|e| IpamError::unreadable_key(key, e))?;
    Ok(match (parsed, value) {
        (Key::Subnet(_), Some(v)) => {
            let stored = decode_subnet(key, v)?;
            let subnet = Subnet::from_stored(&stored.spec).map_err(|e| IpamError::Corrupt {
                key: key.to_string(),
                message: e.to_string(),
            })?;
            Watched::SubnetPut(subnet, stored.draining)
        }
        (Key::Subnet(name), None) => Watched::SubnetGone(name.to_string()),
        (Key::Lease(owner), Some(v)) => {
            Watched::LeasePut(OwnerKey::from_stored(owner), decode_lease(key, v)?)
        }
        (Key::Lease(owner), None) => Watched::LeaseGone(OwnerKey::from_stored(owner)),
        (Key::Address { subnet, ip }, v) => {
            let state = match v {
                Some(v) => Some(match decode_ip(key, v)? {
                    IpRecord::Leased { owner } => IpState::Leased(OwnerKey::from_stored(&owner)),
                    IpRecord::Released { at_ms } => IpState::Released(at_ms),
                }),
                None => None,
            };
            Watched::Ip(subnet.to_string(), ip, state)
        }
        (Key::SubnetsMeta, _) => Watched::Meta,
    })
}

/// Applied first: a subnet must be known before its addresses; removed last, after them.
fn order(w: &Watched) -> u8 {
    match w {
        Watched::SubnetPut(..) => 0,
        Watched::LeasePut(..) | Watched::LeaseGone(_) => 1,
        Watched::Ip(..) => 2,
        Watched::SubnetGone(_) | Watched::Meta => 3,
    }
}

/// A subnet the view learns of (added by another replica): every address the view already has
/// a record of is blocked in its pool.
pub(super) fn new_entry(st: &State, subnet: Subnet, rev: Revision, draining: bool) -> SubnetEntry {
    let mut blocked = subnet.reserved().to_vec();
    blocked.extend(
        st.ips
            .keys()
            .filter_map(|ip| subnet.cidr.offset_of(*ip))
            .map(|o| (o, o)),
    );
    let pool = Pool::new(subnet.cidr.size(), blocked, Vec::new());
    SubnetEntry::new(subnet, rev, draining, pool)
}

/// Applies one watched key at `rev`. An address record deleted (a chunk of another replica's
/// subnet removal) goes into `deleted`, so its subnet's released queue is purged once for all.
fn apply(st: &mut State, rev: Revision, w: Watched, deleted: &mut Vec<(String, IpAddr)>) {
    match w {
        Watched::SubnetPut(subnet, draining) => match st.subnets.get_mut(&subnet.name) {
            Some(e) if e.rev >= rev => {}
            Some(e) => {
                e.rev = rev;
                e.draining = draining;
            }
            None => {
                let e = new_entry(st, subnet, rev, draining);
                st.subnets.insert(e.subnet.name.clone(), e);
            }
        },
        Watched::SubnetGone(name) => {
            if st.subnets.get(&name).is_some_and(|e| e.rev < rev) {
                st.subnets.remove(&name);
            }
        }
        Watched::LeasePut(owner, lease) => {
            let rec = LeaseRec::from_api(&lease, &mut st.syms);
            st.put_lease(owner, rev, rec);
        }
        Watched::LeaseGone(owner) => st.forget_lease(&owner, rev),
        Watched::Ip(subnet, ip, state) => {
            if st.ip_rev(&ip).is_none_or(|r| r < rev) {
                match state {
                    Some(s) => st.apply_ip(&subnet, ip, Some((rev, s))),
                    None => deleted.push((subnet, ip)),
                }
            }
        }
        Watched::Meta => {
            st.subnets_meta_rev = st.subnets_meta_rev.max(Some(rev));
        }
    }
}

impl<S: Store> Ipam<S> {
    /// The revision the view is complete up to: where the watch that keeps it current resumes.
    pub fn applied(&self) -> Revision {
        self.applied.load(Ordering::SeqCst)
    }

    /// Applies one watched revision. A record that cannot be decoded is skipped (and
    /// returned as the error): the view is a cache, and the revision checks keep every write
    /// right whatever it misses.
    pub fn apply_watched(&self, changes: &Changes) -> Result<(), IpamError> {
        let mut first_error = None;
        let mut decoded: Vec<Watched> = Vec::with_capacity(changes.changes.len());
        for c in &changes.changes {
            match decode(&c.key, c.value.as_deref()) {
                Ok(w) => decoded.push(w),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        decoded.sort_by_key(order);
        let rev = changes.revision;
        {
            let mut st = self.state();
            let mut deleted = Vec::new();
            for w in decoded {
                apply(&mut st, rev, w, &mut deleted);
            }
            deleted.sort_unstable();
            for group in deleted.chunk_by(|a, b| a.0 == b.0) {
                let ips: Vec<IpAddr> = group.iter().map(|(_, ip)| *ip).collect();
                st.forget_ips(&group[0].0, &ips);
            }
            // No older change can come any more: tombstones at or below `rev` did their work.
            if let Some(t) = &mut st.tombstones {
                t.retain(|_, deleted| *deleted > rev);
            }
        }
        self.applied.fetch_max(rev, Ordering::SeqCst);
        first_error.map_or(Ok(()), Err)
    }

    /// With a shared store: whether the view holds `key` (a lease key) at the revision the store
    /// has; if not, the view re-reads it and `false` says the decision must be made again.
    pub(super) async fn confirm(&self, key: &str) -> Result<bool, IpamError> {
        if !self.store.shared() {
            return Ok(true);
        }
        let stored = self.store.get(key).await?.map(|v| v.revision);
        let viewed = match keys::parse(key) {
            Ok(Key::Lease(owner)) => self
                .state()
                .leases
                .get(&OwnerKey::from_stored(owner))
                .map(|c| c.rev),
            // Only lease keys are confirmed; anything else is taken as the view has it.
            _ => return Ok(true),
        };
        if stored == viewed {
            return Ok(true);
        }
        self.refresh(key).await?;
        Ok(false)
    }
}
