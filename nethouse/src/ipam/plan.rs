//! Allocation decisions, pure: from the view, a request and the time, either the answer (the
//! attachment asked before) or the write to make — which addresses to take and which revisions
//! the write must find unchanged. No I/O here: `commit` sends the write and applies it to the
//! view once it landed. Kept apart so each decision can be tested from a table of views.

use std::net::IpAddr;

use nethouse_api::AllocateResponse;

use super::keys;
use super::pool::Pick;
use super::record::{AttRec, IpRec, LeaseRec, OwnerRec};
use super::state::{Cached, IpState, State};
use super::{AllocOutcome, IpamError};
use crate::model::cidr::Family;
use crate::model::lease::{IpRecord, OwnerKey, ValidAllocate};
use crate::model::subnet::Subnet;
use crate::store::{Expect, Revision, Txn};

use super::codec::{encode_ip, encode_lease};

pub(super) enum Plan {
    /// The same attachment asked again: the answer, with nothing to write.
    Done(AllocateResponse, AllocOutcome),
    Write {
        txn: Txn,
        /// Taken from the pools; they go back if the write does not land.
        picks: Vec<(String, Pick)>,
        allocation: Allocation,
    },
}

/// What the view becomes once an allocation's write landed.
pub(super) struct Allocation {
    key: OwnerKey,
    lease: LeaseRec,
    outcome: AllocOutcome,
}

impl Allocation {
    pub(super) fn apply(self, st: &mut State, rev: Revision) -> (AllocateResponse, AllocOutcome) {
        // Only a new lease wrote its address keys; a re-attach touched the lease alone.
        // The store's watch may have brought a newer state of an address already: kept.
        if self.outcome == AllocOutcome::Created {
            for lip in self.lease.ips.iter() {
                if st.ip_rev(&lip.ip).is_some_and(|r| r > rev) {
                    continue;
                }
                st.ips.insert(
                    lip.ip,
                    Cached {
                        rev,
                        value: IpState::Leased(self.key.clone()),
                    },
                );
            }
        }
        let ips = st.ip_configs(&self.lease);
        let lease = self.lease.to_api();
        st.put_lease(self.key, rev, self.lease);
        (AllocateResponse { lease, ips }, self.outcome)
    }
}

/// Cooldown of a released address of `subnet`.
pub(super) fn cooldown_ms(subnet: &Subnet, default_ms: u64) -> u64 {
    subnet
        .cooldown_seconds
        .map(|s| s * 1000)
        .unwrap_or(default_ms)
}

/// The allocation for `req`: the owner's lease if it has one, else a new one.
pub(super) fn allocation(
    st: &mut State,
    req: &ValidAllocate,
    now: u64,
    default_cooldown_ms: u64,
) -> Result<Plan, IpamError> {
    match st.leases.get(&req.key) {
        Some(existing) => {
            let existing = existing.clone();
            plan_existing(st, req, &existing, now)
        }
        None => plan_new(st, req, now, default_cooldown_ms),
    }
}

/// Picks one address per family the zone serves and builds the transaction that takes them.
pub(super) fn plan_new(
    st: &mut State,
    req: &ValidAllocate,
    now: u64,
    default_cooldown_ms: u64,
) -> Result<Plan, IpamError> {
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
    let mut txn = Txn::default().check(keys::lease(&req.key), Expect::Absent);
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
        let got = of_family.iter().find_map(|name| {
            pick_in_subnet(st, name, now, default_cooldown_ms).map(|p| (name.to_string(), p))
        });
        let Some((subnet, (ip, pick, check))) = got else {
            let detail = exhaustion_detail(st, &of_family, family, now, default_cooldown_ms);
            give_back(st, picks, false);
            return Err(IpamError::ZoneExhausted {
                zone: req.zone.clone(),
                detail,
            });
        };
        let entry_rev = st.subnets.get(&subnet).map(|e| e.rev).unwrap_or_default();
        txn = txn
            .check(keys::subnet(&subnet), Expect::Revision(entry_rev))
            .check(keys::address(&subnet, ip), check)
            .put(
                keys::address(&subnet, ip),
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
    let txn = txn.put(keys::lease(&req.key), encode_lease(&lease.to_api()));
    Ok(Plan::Write {
        txn,
        picks,
        allocation: Allocation {
            key: req.key.clone(),
            lease,
            outcome: AllocOutcome::Created,
        },
    })
}

/// A lease already exists for the key: same attachment → answer as before; another attachment
/// of a fixed owner → move it (see the module docs of `ipam` for why that is safe).
pub(super) fn plan_existing(
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
        .check(keys::lease(&req.key), Expect::Revision(existing.rev))
        .put(keys::lease(&req.key), encode_lease(&moved.to_api()));
    Ok(Plan::Write {
        txn,
        picks: Vec::new(),
        allocation: Allocation {
            key: req.key.clone(),
            lease: moved,
            outcome: AllocOutcome::Reattached,
        },
    })
}

/// Takes the next usable address of one subnet, skipping pool entries the view contradicts;
/// with the check the write must make on the address's key.
fn pick_in_subnet(
    st: &mut State,
    subnet: &str,
    now: u64,
    default_cooldown_ms: u64,
) -> Option<(IpAddr, Pick, Expect)> {
    let cooldown = cooldown_ms(&st.subnets.get(subnet)?.subnet, default_cooldown_ms);
    super::spread::start(st, subnet);
    loop {
        let pick = super::spread::pick(st, subnet, now, cooldown)?;
        let ip = st.subnets.get(subnet)?.subnet.cidr.nth(pick.offset())?;
        let cached = st.ips.get(&ip);
        if still_as_picked(&pick, cached) {
            let check = cached.map_or(Expect::Absent, |c| Expect::Revision(c.rev));
            return Some((ip, pick, check));
        }
        // Stale pool entry: the view knows better; drop it and try the next.
    }
}

/// Whether the view still has a picked address as the pool offered it: never used, or released
/// at the time the pool recorded.
pub(super) fn still_as_picked(pick: &Pick, cached: Option<&Cached<IpState>>) -> bool {
    match (pick, cached) {
        (Pick::Fresh(_), None) => true,
        (Pick::Reused(_, at), Some(c)) => c.value == IpState::Released(*at),
        _ => false,
    }
}

/// Returns picks whose write did not land to their pools. With `checked`, only those the view
/// still has as they were picked: the view was just re-read, and a pick it now has leased or
/// released anew must not be offered (nor counted free) a second time. Unchecked, all go back:
/// a wrong guess costs the next allocation one conflict, a pick kept back an address.
pub(super) fn give_back(st: &mut State, picks: Vec<(String, Pick)>, checked: bool) {
    for (subnet, pick) in picks {
        let Some(ip) = st
            .subnets
            .get(&subnet)
            .and_then(|e| e.subnet.cidr.nth(pick.offset()))
        else {
            continue;
        };
        if (!checked || still_as_picked(&pick, st.ips.get(&ip)))
            && let Some(e) = st.subnets.get_mut(&subnet)
        {
            e.pool.give_back(pick);
        }
    }
}

/// Why a family has no address to give, in the counts the decision was made from, taken under
/// the same lock at the same time: free (what the pools offered), leased, cooling down, and the
/// rest, which allocations in flight have picked and not yet committed. Without the free count
/// and the rest, "leased" far below capacity under load read as a contradiction.
pub(super) fn exhaustion_detail(
    st: &State,
    names: &[&String],
    family: Family,
    now: u64,
    default_cooldown_ms: u64,
) -> String {
    let (mut capacity, mut free, mut leased, mut cooling) = (0u128, 0u128, 0u64, 0u64);
    for name in names {
        if let Some(e) = st.subnets.get(*name) {
            let cooldown = cooldown_ms(&e.subnet, default_cooldown_ms);
            capacity += e.subnet.capacity();
            free += e.pool.available(now, cooldown);
            leased += e.attached + e.retained;
            cooling += e.pool.cooling(now, cooldown);
        }
    }
    let in_flight = capacity.saturating_sub(free + leased as u128 + cooling as u128);
    format!(
        "no free {} address: {free} of {capacity} free, {leased} leased, {cooling} cooling down, \
         {in_flight} held by allocations not yet committed",
        family.as_str()
    )
}
