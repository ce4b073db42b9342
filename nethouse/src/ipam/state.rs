//! The in-memory view of the store that allocation decisions are made from. It is a cache:
//! every write it leads to is a store transaction that checks the revisions the decision was
//! based on, so a stale view can only cost a retry, never a duplicate address.

use std::collections::BTreeMap;
use std::net::IpAddr;

use nethouse_api::IpConfig;
use rustc_hash::{FxHashMap, FxHashSet};

use super::pool::Pool;
use super::record::{Interner, LeaseRec, Sym};
use crate::model::lease::OwnerKey;
use crate::model::subnet::Subnet;
use crate::store::Revision;

#[derive(Clone, Debug)]
pub struct Cached<T> {
    pub rev: Revision,
    pub value: T,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpState {
    Leased(OwnerKey),
    Released(u64),
}

pub struct SubnetEntry {
    pub subnet: Subnet,
    pub rev: Revision,
    pub draining: bool,
    pub pool: Pool,
    pub attached: u64,
    pub retained: u64,
}

impl SubnetEntry {
    /// A subnet as read or added, before any lease is counted against it.
    pub fn new(subnet: Subnet, rev: Revision, draining: bool, pool: Pool) -> SubnetEntry {
        SubnetEntry {
            subnet,
            rev,
            draining,
            pool,
            attached: 0,
            retained: 0,
        }
    }
}

#[derive(Default)]
pub struct State {
    pub subnets: BTreeMap<String, SubnetEntry>,
    /// Revision of `m/subnets`, the key every subnet change bumps so subnet changes serialize.
    pub subnets_meta_rev: Option<Revision>,
    /// Boxed: the ordered map then moves 8-byte pointers, and its nodes stay small enough
    /// that a million leases cost tens of MB of map, not hundreds.
    pub leases: BTreeMap<OwnerKey, Box<Cached<LeaseRec>>>,
    pub ips: FxHashMap<IpAddr, Cached<IpState>>,
    pub by_node: FxHashMap<Sym, FxHashSet<OwnerKey>>,
    pub syms: Interner,
    /// Leases deleted at a revision the watch of the store may not have passed yet: a change
    /// of the lease older than its deletion, arriving late, must not bring it back. Kept only
    /// while a watch follows the store (several replicas), dropped as the watch passes them.
    pub tombstones: Option<FxHashMap<OwnerKey, Revision>>,
    /// With several replicas on one store: where this replica hands out never-used addresses
    /// from (`spread`); `None` alone: lowest first.
    pub spread: Option<super::spread::Spread>,
}

impl State {
    /// Subnet names of `zone`, usable for new leases, IPv4 ones first.
    pub fn zone_subnets(&self, zone: &str) -> Vec<&SubnetEntry> {
        let mut out: Vec<&SubnetEntry> = self
            .subnets
            .values()
            .filter(|e| e.subnet.zone == zone && !e.draining)
            .collect();
        out.sort_by_key(|e| {
            (
                e.subnet.family() != crate::model::cidr::Family::V4,
                e.subnet.name.clone(),
            )
        });
        out
    }

    fn account(&mut self, lease: &LeaseRec, add: bool) {
        let retained = lease.is_retained();
        for lip in lease.ips.iter() {
            if let Some(e) = self.subnets.get_mut(&*lip.subnet) {
                let counter = if retained {
                    &mut e.retained
                } else {
                    &mut e.attached
                };
                *counter = if add {
                    *counter + 1
                } else {
                    counter.saturating_sub(1)
                };
            }
        }
    }

    /// Records a lease written at `rev` (ignored if the cache already holds a newer one, or
    /// saw it deleted later).
    pub fn put_lease(&mut self, key: OwnerKey, rev: Revision, lease: LeaseRec) {
        if self.leases.get(&key).is_some_and(|c| c.rev >= rev) {
            return;
        }
        if let Some(t) = &self.tombstones
            && t.get(&key).is_some_and(|&deleted| deleted >= rev)
        {
            return;
        }
        self.remove_lease(&key);
        self.index_lease(&key, &lease);
        self.leases
            .insert(key, Box::new(Cached { rev, value: lease }));
    }

    /// Usage counters and the by-node index of one lease.
    pub fn index_lease(&mut self, key: &OwnerKey, lease: &LeaseRec) {
        self.account(lease, true);
        if let Some(a) = &lease.attachment {
            self.by_node
                .entry(a.node.clone())
                .or_default()
                .insert(key.clone());
        }
    }

    /// The lease was deleted at `rev`: forgotten unless the view holds a newer one.
    pub fn forget_lease(&mut self, key: &OwnerKey, rev: Revision) {
        if self.leases.get(key).is_some_and(|c| c.rev >= rev) {
            return;
        }
        self.remove_lease(key);
        if let Some(t) = &mut self.tombstones {
            let at = t.entry(key.clone()).or_insert(rev);
            *at = (*at).max(rev);
        }
    }

    /// The revision of an address as the view has it (a leased one: its lease's).
    pub fn ip_rev(&self, ip: &IpAddr) -> Option<Revision> {
        self.ips.get(ip).map(|c| c.rev)
    }

    pub fn remove_lease(&mut self, key: &OwnerKey) -> Option<Box<Cached<LeaseRec>>> {
        let old = self.leases.remove(key)?;
        self.account(&old.value, false);
        if let Some(a) = &old.value.attachment
            && let Some(set) = self.by_node.get_mut(&*a.node)
        {
            set.remove(key);
            if set.is_empty() {
                self.by_node.remove(&*a.node);
            }
        }
        Some(old)
    }

    /// An address of an ended lease: its cooldown starts at `at`. The address was leased, so
    /// the pool does not hold it; it only joins the released queue.
    pub fn mark_released(&mut self, subnet: &str, ip: IpAddr, rev: Revision, at: u64) {
        if let Some(entry) = self.subnets.get_mut(subnet)
            && let Some(off) = entry.subnet.cidr.offset_of(ip)
        {
            entry.pool.released(off, at);
        }
        self.ips.insert(
            ip,
            Cached {
                rev,
                value: IpState::Released(at),
            },
        );
    }

    /// Applies what the store says about one address key (after a lost race), keeping the
    /// pool in step.
    pub fn apply_ip(&mut self, subnet: &str, ip: IpAddr, stored: Option<(Revision, IpState)>) {
        let Some(entry) = self.subnets.get_mut(subnet) else {
            return;
        };
        let Some(off) = entry.subnet.cidr.offset_of(ip) else {
            return;
        };
        entry.pool.remove(off);
        let queued_at = match self.ips.get(&ip).map(|c| &c.value) {
            Some(IpState::Released(at)) => Some(*at),
            _ => None,
        };
        match stored {
            Some((rev, state)) => {
                // Queued once: a second entry would count it twice as cooling.
                if let IpState::Released(at) = state
                    && queued_at != Some(at)
                {
                    entry.pool.released(off, at);
                }
                self.ips.insert(ip, Cached { rev, value: state });
            }
            None => {
                self.ips.remove(&ip);
                if !entry.subnet.is_reserved(off) {
                    entry.pool.give_back(super::pool::Pick::Fresh(off));
                }
            }
        }
    }

    /// Addresses of `subnet` whose records were deleted (the subnet is being removed, in
    /// transactions the store takes): out of the view, out of the released queue (they cool
    /// down no more; one pass over the queue for all of them), offered as never used.
    pub fn forget_ips(&mut self, subnet: &str, ips: &[IpAddr]) {
        let Some(cidr) = self.subnets.get(subnet).map(|e| e.subnet.cidr) else {
            // The subnet left the view already: only its addresses are left to forget.
            for ip in ips {
                self.ips.remove(ip);
            }
            return;
        };
        for ip in ips {
            self.apply_ip(subnet, *ip, None);
        }
        let offs: FxHashSet<u128> = ips.iter().filter_map(|ip| cidr.offset_of(*ip)).collect();
        if let Some(e) = self.subnets.get_mut(subnet) {
            e.pool.forget_released(&offs);
        }
    }

    /// The per-address configuration a node applies for `lease`.
    pub fn ip_configs(&self, lease: &LeaseRec) -> Vec<IpConfig> {
        lease
            .ips
            .iter()
            .filter_map(|lip| {
                let e = self.subnets.get(&*lip.subnet)?;
                Some(IpConfig {
                    address: format!("{}/{}", lip.ip, e.subnet.cidr.prefix()),
                    gateway: e.subnet.gateway,
                    routes: e.subnet.routes.clone(),
                    dns: e.subnet.dns.clone(),
                    subnet: lip.subnet.to_string(),
                })
            })
            .collect()
    }

    /// Consistency of the two directions (lease -> address, address -> lease) and of each
    /// subnet's pool with the addresses; used by tests.
    pub fn inconsistencies(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (key, c) in &self.leases {
            for lip in c.value.ips.iter() {
                match self.ips.get(&lip.ip).map(|c| &c.value) {
                    Some(IpState::Leased(o)) if o == key => {}
                    other => out.push(format!(
                        "lease {} has {} but the address says {other:?}",
                        key.as_str(),
                        lip.ip
                    )),
                }
            }
        }
        for (ip, c) in &self.ips {
            if let IpState::Leased(o) = &c.value
                && !self
                    .leases
                    .get(o)
                    .is_some_and(|l| l.value.ips.iter().any(|x| x.ip == *ip))
            {
                out.push(format!(
                    "address {ip} points at {} which does not hold it",
                    o.as_str()
                ));
            }
        }
        for e in self.subnets.values() {
            self.pool_inconsistencies(e, &mut out);
        }
        out
    }

    /// The pool of one subnet against itself and against the addresses: no address with a
    /// record is offered as never used, and each released entry is the address's release.
    fn pool_inconsistencies(&self, e: &SubnetEntry, out: &mut Vec<String>) {
        let name = &e.subnet.name;
        out.extend(
            e.pool
                .inconsistencies()
                .into_iter()
                .map(|m| format!("pool of {name}: {m}")),
        );
        for ip in self.ips.keys() {
            if let Some(off) = e.subnet.cidr.offset_of(*ip)
                && e.pool.is_fresh(off)
            {
                out.push(format!(
                    "pool of {name}: {ip} has a record but is offered as never used"
                ));
            }
        }
        let mut queued = rustc_hash::FxHashSet::default();
        for (at, off) in e.pool.released_queue() {
            let ip = e.subnet.cidr.nth(off);
            let state = ip.and_then(|ip| self.ips.get(&ip)).map(|c| &c.value);
            if !queued.insert(off) {
                out.push(format!("pool of {name}: offset {off} is queued twice"));
            }
            if state != Some(&IpState::Released(at)) {
                out.push(format!(
                    "pool of {name}: offset {off} is queued as released at {at}, but the \
                     address says {state:?}"
                ));
            }
        }
    }
}
