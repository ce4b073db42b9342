//! The lease life cycle as the callers see it: allocate (CNI ADD), detach (CNI DEL), gc (CNI GC)
//! and release (the location controller). Each decides under the owner key's lock and commits
//! through `commit_with_retry`; the decisions themselves are in `plan` and below.

use std::collections::HashSet;

use nethouse_api::{
    AllocateResponse, AttachmentRef, DetachResponse, GcResponse, Lease, LeaseKind, Owner,
};

use super::codec::{encode_ip, encode_lease};
use super::commit::{Reread, Step, Write};
use super::keys;
use super::plan::{self, Plan};
use super::record::LeaseRec;
use super::state::{Cached, State};
use super::{AllocOutcome, Ipam, IpamError};
use crate::model::lease::{IpRecord, OwnerKey, ValidAllocate, ValidDetach};
use crate::store::{Expect, Store, Txn};

impl<S: Store> Ipam<S> {
    pub async fn allocate(
        &self,
        req: ValidAllocate,
    ) -> Result<(AllocateResponse, AllocOutcome), IpamError> {
        let _admin = self.admin.read().await;
        let _key = self.key_lock(&req.key).lock().await;
        let default_cooldown = self.config.default_cooldown_ms;
        self.commit_with_retry(&keys::lease(&req.key), Reread::Key, |st, now| {
            Ok(match plan::allocation(st, &req, now, default_cooldown)? {
                Plan::Done(resp, outcome) => Step::Done((resp, outcome)),
                Plan::Write {
                    txn,
                    picks,
                    allocation,
                } => Step::Write(Write {
                    txn,
                    picks,
                    apply: move |st: &mut State, rev| allocation.apply(st, rev),
                }),
            })
        })
        .await
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
        self.end(&key, |l| {
            ips.is_none_or(|want| {
                l.ips.len() == want.len() && l.ips.iter().all(|i| want.contains(&i.ip))
            })
        })
        .await
    }

    /// Ends the lease at `key` if `still_due` holds for its current value.
    async fn end(
        &self,
        key: &OwnerKey,
        still_due: impl Fn(&LeaseRec) -> bool,
    ) -> Result<Option<Lease>, IpamError> {
        self.commit_with_retry(&keys::lease(key), Reread::Key, |st, now| {
            Ok(match st.leases.get(key) {
                Some(c) if still_due(&c.value) => {
                    let lease = c.value.clone();
                    Step::Write(Write::new(
                        end_lease_txn(key, c, now),
                        move |st: &mut State, rev| Some(ended(st, key, lease, rev, now)),
                    ))
                }
                _ => Step::Done(None),
            })
        })
        .await
    }

    /// Drops the attachment of a fixed lease (the address stays with its owner).
    async fn detach_fixed(
        &self,
        key: &OwnerKey,
        still_due: impl Fn(&LeaseRec) -> bool,
    ) -> Result<bool, IpamError> {
        self.commit_with_retry(&keys::lease(key), Reread::Key, |st, now| {
            Ok(match st.leases.get(key) {
                Some(c) if still_due(&c.value) => {
                    let mut lease = c.value.clone();
                    lease.attachment = None;
                    lease.updated_unix_ms = now;
                    let txn = Txn::default()
                        .check(keys::lease(key), Expect::Revision(c.rev))
                        .put(keys::lease(key), encode_lease(&lease.to_api()));
                    Step::Write(Write::new(txn, move |st: &mut State, rev| {
                        st.put_lease(key.clone(), rev, lease);
                        true
                    }))
                }
                _ => Step::Done(false),
            })
        })
        .await
    }

    /// CNI DEL: a fixed lease is detached and retained, an ephemeral one released. Idempotent.
    pub async fn detach(&self, req: ValidDetach) -> Result<DetachResponse, IpamError> {
        let mut outcome = "not_found";
        for key in req.candidate_keys() {
            let _key = self.key_lock(&key).lock().await;
            // Another replica may have made or ended this lease (a shared store).
            self.confirm(&keys::lease(&key)).await?;
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
                    if self.end(&key, attached_here).await?.is_some() {
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
                LeaseKind::Ephemeral => {
                    self.end(&key, is_stale).await.map(|l| (false, l.is_some()))
                }
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
}

/// Ends a lease: deletes it and marks its addresses released now (their cooldown starts).
/// The lease's revision is the only check needed: an address record that says "leased"
/// is written only together with its lease and changed only together with that lease's
/// deletion, so while the lease is unchanged its address records are too.
pub(super) fn end_lease_txn(key: &OwnerKey, lease: &Cached<LeaseRec>, now: u64) -> Txn {
    let mut txn = Txn::default()
        .check(keys::lease(key), Expect::Revision(lease.rev))
        .delete(keys::lease(key));
    for lip in lease.value.ips.iter() {
        txn = txn.put(
            keys::address(&lip.subnet, lip.ip),
            encode_ip(&IpRecord::Released { at_ms: now }),
        );
    }
    txn
}

/// The view after `lease`'s end landed at `rev`; the answer is the lease as it was ended. The
/// store's watch may have applied the end already (or a later change): nothing is done twice.
fn ended(st: &mut State, key: &OwnerKey, lease: LeaseRec, rev: u64, now: u64) -> Lease {
    st.forget_lease(key, rev);
    for lip in lease.ips.iter() {
        if st.ip_rev(&lip.ip).is_none_or(|r| r < rev) {
            st.mark_released(&lip.subnet, lip.ip, rev, now);
        }
    }
    lease.to_api()
}

fn resp(outcome: &str) -> DetachResponse {
    DetachResponse {
        outcome: outcome.to_string(),
    }
}
