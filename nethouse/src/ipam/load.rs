//! Start-up: the whole store read back into the in-memory view. Addresses and leases are
//! scanned in parallel without copying records, and repeated strings are interned as they
//! are read. Cost is linear in the number of records.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use super::codec::{decode_ip_ref, decode_lease_msg, decode_subnet};
use super::keys::{self, Key};
use super::pool::Pool;
use super::record::{Interner, LeaseRec};
use super::state::{Cached, IpState, State, SubnetEntry};
use super::{Ipam, IpamError};
use crate::model::cidr::Cidr;
use crate::model::lease::{IpRecordRef, OwnerKey};
use crate::model::subnet::Subnet;
use crate::store::{Revision, Store};

impl<S: Store> Ipam<S> {
    /// Replaces the view with what the store holds, read back as at start-up. After the store
    /// re-opened following a failure, a change whose commit reported failure may be on disk
    /// after all; only the store can say. The caller keeps every change out meanwhile (the
    /// server's recovery gate): one planned on the old view and applied to the new would mix
    /// the two.
    pub async fn reload(&self) -> Result<(), IpamError> {
        let t = std::time::Instant::now();
        let (state, at) = read_back_at(&self.store).await?;
        let (leases, addresses) = (state.leases.len(), state.ips.len());
        *self.state() = state;
        self.applied.store(at, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(
            ms = t.elapsed().as_millis() as u64,
            leases,
            addresses,
            "store read back again"
        );
        Ok(())
    }
}

/// Released addresses found by the scan of `i/`: (subnet, ip, offset, revision, released at).
#[derive(Default)]
struct Released(Vec<(String, IpAddr, u128, Revision, u64)>);

/// The view, and the store's revision taken before reading it: every change after that
/// revision may be missing from the view, none before. A watch from there keeps it current;
/// replaying a change the read already saw is harmless (each key is applied only if newer).
pub async fn read_back_at<S: Store>(store: &S) -> Result<(State, Revision), IpamError> {
    let at = store.revision().await?;
    let mut st = read_back(store).await?;
    if store.shared() {
        st.tombstones = Some(Default::default());
        st.spread = Some(super::spread::Spread::random());
    }
    Ok((st, at))
}

async fn read_back<S: Store>(store: &S) -> Result<State, IpamError> {
    let mut st = State {
        subnets_meta_rev: store.get(keys::SUBNETS_META).await?.map(|m| m.revision),
        ..State::default()
    };
    let mut subnets = Vec::new();
    for (key, v) in store.scan(keys::SUBNETS).await? {
        let stored = decode_subnet(&key, &v.value)?;
        let subnet = Subnet::from_stored(&stored.spec).map_err(|e| IpamError::Corrupt {
            key: key.clone(),
            message: e.to_string(),
        })?;
        // Served as stored, but the operator should know it would be refused today.
        if let Err(e) = Subnet::from_spec(&stored.spec) {
            tracing::warn!(
                subnet = subnet.name,
                "stored subnet breaks a rule added since it was created: {e}"
            );
        }
        subnets.push((subnet, v.revision, stored.draining));
    }
    let cidrs: Arc<HashMap<String, Cidr>> = Arc::new(
        subnets
            .iter()
            .map(|(s, _, _)| (s.name.clone(), s.cidr))
            .collect(),
    );

    let scan_ips = store.scan_each(keys::ADDRESSES, Released::default(), {
        let cidrs = cidrs.clone();
        move |acc, key, rev, value| {
            let Key::Address { subnet, ip } = keys::parse(key).map_err(|e| e.to_string())? else {
                return Err("not an address key".into());
            };
            let off = cidrs
                .get(subnet)
                .and_then(|c| c.offset_of(ip))
                .ok_or("address outside every stored subnet")?;
            if let IpRecordRef::Released { at_ms } = decode_ip_ref(value)? {
                acc.0.push((subnet.to_string(), ip, off, rev, at_ms));
            }
            Ok(())
        }
    });
    // Keys arrive in order: collected, they build the ordered map in bulk with full nodes.
    let scan_leases = store.scan_each(
        keys::LEASES,
        (
            Vec::<(OwnerKey, Box<Cached<LeaseRec>>)>::new(),
            Interner::default(),
        ),
        |(leases, syms), key, rev, value| {
            let lease = decode_lease_msg(value)?;
            let Key::Lease(owner) = keys::parse(key).map_err(|e| e.to_string())? else {
                return Err("not a lease key".into());
            };
            let rec = LeaseRec::from_api(&lease, syms);
            leases.push((
                OwnerKey::from_stored(owner),
                Box::new(Cached { rev, value: rec }),
            ));
            Ok(())
        },
    );
    let (released, (leases, syms)) = tokio::try_join!(scan_ips, scan_leases)?;
    st.syms = syms;
    let mut used: HashMap<String, Vec<(u128, u128)>> = HashMap::new();
    let mut released_by_subnet: HashMap<String, Vec<(u64, u128)>> = HashMap::new();
    st.ips.reserve(leases.len() + released.0.len());
    for (subnet, ip, off, rev, at) in released.0 {
        used.entry(subnet.clone()).or_default().push((off, off));
        released_by_subnet
            .entry(subnet)
            .or_default()
            .push((at, off));
        st.ips.insert(
            ip,
            Cached {
                rev,
                value: IpState::Released(at),
            },
        );
    }
    // Leases of one subnet come in long runs: look a subnet up only when the name changes.
    let names: Vec<&str> = subnets.iter().map(|(s, _, _)| s.name.as_str()).collect();
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut leased_offsets: Vec<Vec<(u128, u128)>> = vec![Vec::new(); names.len()];
    let mut current = usize::MAX;
    for (key, lease) in &leases {
        for lip in lease.value.ips.iter() {
            if names.get(current) != Some(&&*lip.subnet) {
                current = index.get(&*lip.subnet).copied().unwrap_or(usize::MAX);
            }
            let off = subnets
                .get(current)
                .and_then(|(s, _, _)| s.cidr.offset_of(lip.ip))
                .ok_or_else(|| IpamError::Corrupt {
                    key: keys::lease(key),
                    message: format!("{} is outside subnet {:?}", lip.ip, lip.subnet),
                })?;
            leased_offsets[current].push((off, off));
            // The lease's revision guards its addresses (see `end_lease_txn`).
            st.ips.insert(
                lip.ip,
                Cached {
                    rev: lease.rev,
                    value: IpState::Leased(key.clone()),
                },
            );
        }
    }
    for (name, offs) in names.iter().zip(leased_offsets) {
        used.entry(name.to_string()).or_default().extend(offs);
    }

    for (subnet, rev, draining) in subnets {
        let mut blocked = used.remove(&subnet.name).unwrap_or_default();
        blocked.extend_from_slice(subnet.reserved());
        let pool = Pool::new(
            subnet.cidr.size(),
            blocked,
            released_by_subnet.remove(&subnet.name).unwrap_or_default(),
        );
        st.subnets.insert(
            subnet.name.clone(),
            SubnetEntry::new(subnet, rev, draining, pool),
        );
    }
    for (key, lease) in &leases {
        st.index_lease(key, &lease.value);
    }
    st.leases = BTreeMap::from_iter(leases);
    Ok(st)
}
