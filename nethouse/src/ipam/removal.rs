//! Removing a subnet that holds no lease, in transactions the store takes.
//!
//! The subnet is first marked draining: no allocation, here or on another replica, can commit
//! in it any more (each checks the subnet key's revision, and a draining subnet takes no new
//! lease), so its address records stay as they are while it drains. Then the STORE — not the
//! view — is scanned for them: a leased one refuses the removal and undrains the subnet.
//! Otherwise every record is deleted, checked at its scanned revision, and the subnet key with
//! the last of them. A store that limits one transaction ([`Store::max_txn_ops`]: etcd's
//! `--max-txn-ops`, 128 by default, and a record costs a compare and a delete) gets them in
//! chunks ([`chunks`]), each checking the subnet key at the draining revision, the last one
//! also deleting the subnet key (and checking the subnets' meta key, as every subnet change
//! does); a store without a limit gets one transaction, as it always did.
//!
//! A transaction that fails midway (a lost race, a store error) — what happens, and why:
//! - A lost race before any record was deleted changed nothing: as a refused removal, the
//!   subnet is undrained (only if it is still at the draining revision: another replica may be
//!   removing it now) and the caller gets [`IpamError::Contention`].
//! - Once records may be gone (a chunk committed, or its outcome is unknown), the subnet STAYS
//!   draining: undraining it would hand out the deleted addresses as never used, skipping the
//!   cooldown of their last release, and there is no undoing a delete. The view re-reads the
//!   subnet and its records (the deleted ones leave `ips`), and the caller gets
//!   [`IpamError::SubnetRemovalIncomplete`] with the cause. Removing the subnet again drains it
//!   at its current revision, scans what is left and finishes; a process that dies midway
//!   leaves the same draining subnet in the store, read back at start.
//! - A lost race on the meta key alone (another subnet added or removed meanwhile) only
//!   re-reads that key and sends the last transaction again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;

use nethouse_api::Subnet as SubnetView;

use super::codec::decode_ip;
use super::commit::MAX_ATTEMPTS;
use super::keys::{self, Key};
use super::refresh::decode_stored_ip;
use super::subnets::meta_check;
use super::{Ipam, IpamError};
use crate::model::cidr::Cidr;
use crate::model::lease::IpRecord;
use crate::store::{Expect, Outcome, Revision, Store, StoreError, Txn, Versioned};

/// What every transaction of a removal carries besides its records: the subnet key's check.
const EVERY: usize = 1;
/// What the last one carries besides its records: the subnet key's check and delete, the meta
/// key's check and put.
const LAST: usize = 2;

/// The records (by position in key order) each transaction of a removal deletes, so that
/// each fits in `max_ops` ([`Txn::size`]; `None`: no limit); the last transaction also deletes
/// the subnet key. A record costs one check and one delete. As few transactions as fit, the
/// last one filled last. A limit below what one record needs still makes progress, one
/// record a transaction: the store refuses what it cannot take.
pub(super) fn chunks(records: usize, max_ops: Option<usize>) -> Vec<Range<usize>> {
    let (per_chunk, in_last) = match max_ops {
        Some(max) => (max.saturating_sub(EVERY).max(1), max.saturating_sub(LAST)),
        None => (usize::MAX, usize::MAX),
    };
    let mut out = Vec::with_capacity(records / per_chunk + 1);
    let mut start = 0;
    while records - start > in_last {
        let end = records.min(start.saturating_add(per_chunk));
        out.push(start..end);
        start = end;
    }
    out.push(start..records);
    out
}

/// The transaction deleting `records`, each at its revision, while the subnet key is at `rev`.
pub(super) fn chunk_txn(name: &str, rev: Revision, records: &[(String, Versioned)]) -> Txn {
    let mut txn = Txn::default().check(keys::subnet(name), Expect::Revision(rev));
    for (k, v) in records {
        txn = txn
            .check(k.clone(), Expect::Revision(v.revision))
            .delete(k.clone());
    }
    txn
}

/// Why a transaction of the removal did not commit.
enum Failed {
    Lost(String),
    Store(StoreError),
}

impl<S: Store> Ipam<S> {
    /// Removes a subnet that holds no lease (see the module's comment).
    pub async fn remove_subnet(&self, name: &str) -> Result<SubnetView, IpamError> {
        let admin = self.admin.write().await;
        let view = self.subnet(name)?;
        let cidr = self.state().subnets.get(name).map(|e| e.subnet.cidr);
        let rev = self.set_draining(name, true, None).await?;
        // Drained: no allocation may pick the subnet now. Allocations in other subnets go on
        // while the records are deleted; other subnet changes wait.
        let _admin = admin.downgrade();
        let records = match self.store.scan(&keys::addresses_of(name)).await {
            Ok(r) => r,
            Err(e) => {
                let _ = self.set_draining(name, false, Some(rev)).await;
                return Err(e.into());
            }
        };
        let mut leased = 0usize;
        for (k, v) in &records {
            if matches!(decode_ip(k, &v.value)?, IpRecord::Leased { .. }) {
                leased += 1;
            }
        }
        if leased > 0 {
            self.set_draining(name, false, Some(rev)).await?;
            return Err(IpamError::SubnetInUse {
                name: name.to_string(),
                leases: leased,
            });
        }
        let plan = chunks(records.len(), self.store.max_txn_ops());
        let (last, before) = plan
            .split_last()
            .expect("a removal always has its last transaction");
        let mut deleted = 0;
        for range in before {
            let chunk = &records[range.clone()];
            let failed = match self.store.commit(chunk_txn(name, rev, chunk)).await {
                Ok(Outcome::Committed(at)) => {
                    self.forget_deleted(name, chunk, at);
                    deleted += chunk.len();
                    continue;
                }
                Ok(Outcome::Conflict { key }) => Failed::Lost(key),
                Err(e) => Failed::Store(e),
            };
            let e = self
                .removal_failed(name, cidr, rev, failed, deleted == 0)
                .await;
            return Err(incomplete(name, deleted, records.len(), e));
        }
        let chunk = &records[last.clone()];
        let mut lost_meta = 0;
        let failed = loop {
            let txn = meta_check(
                &self.state(),
                chunk_txn(name, rev, chunk).delete(keys::subnet(name)),
            );
            match self.store.commit(txn).await {
                Ok(Outcome::Committed(at)) => {
                    self.forget_subnet(name, cidr, at);
                    return Ok(view);
                }
                Ok(Outcome::Conflict { key }) if key == keys::SUBNETS_META => {
                    lost_meta += 1;
                    if lost_meta == MAX_ATTEMPTS {
                        break Failed::Lost(key);
                    }
                    match self.store.get(keys::SUBNETS_META).await {
                        Ok(meta) => self.state().subnets_meta_rev = meta.map(|m| m.revision),
                        Err(e) => break Failed::Store(e),
                    }
                }
                Ok(Outcome::Conflict { key }) => break Failed::Lost(key),
                Err(e) => break Failed::Store(e),
            }
        };
        let e = self
            .removal_failed(name, cidr, rev, failed, deleted == 0)
            .await;
        Err(match plan.len() {
            // One transaction: all or nothing, as it always was.
            1 => e,
            _ => incomplete(name, deleted, records.len(), e),
        })
    }

    /// Records deleted at `at` leave the view (the pool takes their addresses as never used).
    fn forget_deleted(&self, name: &str, records: &[(String, Versioned)], at: Revision) {
        let mut st = self.state();
        let deleted: Vec<IpAddr> = records
            .iter()
            .filter_map(|(k, _)| match keys::parse(k) {
                Ok(Key::Address { ip, .. }) => Some(ip),
                _ => None,
            })
            .filter(|ip| st.ip_rev(ip).is_none_or(|r| r < at))
            .collect();
        st.forget_ips(name, &deleted);
    }

    /// The subnet and its records were deleted at `at`. Every address of its CIDR leaves the
    /// view, also one a transaction of an earlier attempt deleted without an answer.
    fn forget_subnet(&self, name: &str, cidr: Option<Cidr>, at: Revision) {
        let mut st = self.state();
        st.subnets_meta_rev = st.subnets_meta_rev.max(Some(at));
        // A subnet of that name newer than the removal (another replica's, watched) stays.
        if st.subnets.get(name).is_some_and(|e| e.rev < at) {
            st.subnets.remove(name);
        }
        if let Some(cidr) = cidr {
            st.ips
                .retain(|ip, c| cidr.offset_of(*ip).is_none() || c.rev >= at);
        }
    }

    /// After a transaction that did not commit (or may have): the view re-reads the subnets
    /// and this one's records; a lost race before anything was deleted undrains the subnet
    /// (at the draining revision only). The cause, as the caller should see it.
    async fn removal_failed(
        &self,
        name: &str,
        cidr: Option<Cidr>,
        rev: Revision,
        failed: Failed,
        nothing_deleted: bool,
    ) -> IpamError {
        let key = keys::subnet(name);
        // Best effort: the view is a cache, and the next removal scans the store again.
        let _ = self.reread_records(name, cidr).await;
        let lost = match &failed {
            Failed::Lost(k) => k.as_str(),
            Failed::Store(_) => key.as_str(),
        };
        let _ = self.refresh_subnets(lost).await;
        match failed {
            Failed::Lost(lost) => {
                if nothing_deleted {
                    let _ = self.set_draining(name, false, Some(rev)).await;
                }
                IpamError::Contention { key, lost }
            }
            Failed::Store(e) => e.into(),
        }
    }

    /// Brings the view's addresses of the subnet to what the store holds.
    async fn reread_records(&self, name: &str, cidr: Option<Cidr>) -> Result<(), IpamError> {
        let Some(cidr) = cidr else { return Ok(()) };
        let mut held = HashMap::new();
        for (k, v) in self.store.scan(&keys::addresses_of(name)).await? {
            let (_, ip, rec) = decode_stored_ip(&k, Some(v))?;
            held.insert(ip, rec);
        }
        let mut st = self.state();
        let gone: Vec<IpAddr> = st
            .ips
            .keys()
            .filter(|ip| cidr.offset_of(**ip).is_some() && !held.contains_key(*ip))
            .copied()
            .collect();
        st.forget_ips(name, &gone);
        for (ip, rec) in held {
            if rec
                .as_ref()
                .is_some_and(|(r, _)| st.ip_rev(&ip).is_none_or(|v| v < *r))
            {
                st.apply_ip(name, ip, rec);
            }
        }
        Ok(())
    }
}

/// A failure after records may have been deleted: the subnet stays draining.
fn incomplete(name: &str, deleted: usize, records: usize, cause: IpamError) -> IpamError {
    match cause {
        // Nothing was deleted and the subnet was undrained: a plain lost race.
        IpamError::Contention { .. } if deleted == 0 => cause,
        _ => IpamError::SubnetRemovalIncomplete {
            name: name.to_string(),
            deleted,
            records,
            cause: Box::new(cause),
        },
    }
}
