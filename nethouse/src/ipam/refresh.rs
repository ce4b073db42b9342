//! Re-reading the store into the view after a lost race or an unknown outcome. The view is a
//! cache; these are the only places it learns a change it did not make itself (another replica,
//! or a call dropped between its commit and its view update).

use std::collections::HashSet;
use std::net::IpAddr;

use super::codec::{decode_ip, decode_lease, decode_subnet};
use super::keys::{self, Key};
use super::record::LeaseRec;
use super::state::IpState;
use super::{Ipam, IpamError};
use crate::model::lease::{IpRecord, OwnerKey};
use crate::model::subnet::Subnet;
use crate::store::{Revision, Store, Versioned};

/// One address key as the store holds it: (subnet, address, revision and state if present).
pub(super) type StoredIp = (String, IpAddr, Option<(Revision, IpState)>);

/// What the store holds for one address key, decoded.
pub(super) fn decode_stored_ip(
    key: &str,
    stored: Option<Versioned>,
) -> Result<StoredIp, IpamError> {
    let Key::Address { subnet, ip } =
        keys::parse(key).map_err(|e| IpamError::unreadable_key(key, e))?
    else {
        return Err(IpamError::Corrupt {
            key: key.to_string(),
            message: "not an address key".into(),
        });
    };
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

impl<S: Store> Ipam<S> {
    /// Re-reads one key from the store into the view.
    pub(super) async fn refresh(&self, key: &str) -> Result<(), IpamError> {
        let stored = self.store.get(key).await?;
        match keys::parse(key).map_err(|e| IpamError::unreadable_key(key, e))? {
            Key::Lease(owner) => {
                self.refresh_lease(key, OwnerKey::from_stored(owner), stored)
                    .await
            }
            Key::Address { .. } => {
                let (subnet, ip, rec) = decode_stored_ip(key, stored)?;
                self.state().apply_ip(&subnet, ip, rec);
                Ok(())
            }
            Key::Subnet(name) => {
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
                Ok(())
            }
            Key::SubnetsMeta => {
                self.state().subnets_meta_rev = stored.map(|v| v.revision);
                Ok(())
            }
        }
    }

    /// The lease changed without this view seeing it: the addresses it held and the ones it
    /// holds now changed with it. All are read before anything is applied, so a failed read
    /// leaves the view as it was rather than half-updated.
    async fn refresh_lease(
        &self,
        key: &str,
        owner: OwnerKey,
        stored: Option<Versioned>,
    ) -> Result<(), IpamError> {
        let lease = match &stored {
            Some(v) => Some((v.revision, decode_lease(key, &v.value)?)),
            None => None,
        };
        let mut ip_keys: Vec<String> = {
            let st = self.state();
            st.leases.get(&owner).map_or_else(Vec::new, |c| {
                c.value
                    .ips
                    .iter()
                    .map(|l| keys::address(&l.subnet, l.ip))
                    .collect()
            })
        };
        if let Some((_, l)) = &lease {
            ip_keys.extend(l.ips.iter().map(|i| keys::address(&i.subnet, i.ip)));
        }
        ip_keys.sort_unstable();
        ip_keys.dedup();
        let mut ips = Vec::with_capacity(ip_keys.len());
        for k in &ip_keys {
            let stored = self.store.get(k).await?;
            ips.push(decode_stored_ip(k, stored)?);
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
        Ok(())
    }

    /// After a lost race on subnet keys another replica changed the set: re-read all subnets.
    pub(super) async fn refresh_subnets(&self, key: &str) -> Result<(), IpamError> {
        tracing::warn!(
            key,
            "the subnet set may have changed underneath; re-reading every subnet"
        );
        let stored = self.store.scan(keys::SUBNETS).await?;
        let meta = self.store.get(keys::SUBNETS_META).await?;
        let mut named = Vec::with_capacity(stored.len());
        for (k, v) in stored {
            let name = match keys::parse(&k) {
                Ok(Key::Subnet(name)) => name.to_string(),
                Ok(_) => continue,
                Err(e) => return Err(IpamError::unreadable_key(&k, e)),
            };
            let s = decode_subnet(&k, &v.value)?;
            named.push((k, name, v.revision, s));
        }
        let mut st = self.state();
        st.subnets_meta_rev = meta.map(|m| m.revision);
        let known: HashSet<&str> = named.iter().map(|(_, n, _, _)| n.as_str()).collect();
        st.subnets.retain(|name, _| known.contains(name.as_str()));
        for (k, name, rev, s) in named {
            match st.subnets.get_mut(&name) {
                Some(e) => {
                    e.rev = rev;
                    e.draining = s.draining;
                }
                None => {
                    let subnet = Subnet::from_stored(&s.spec).map_err(|e| IpamError::Corrupt {
                        key: k,
                        message: e.to_string(),
                    })?;
                    // Addresses of a subnet another replica added are learned from the watch
                    // (with a shared store) or on conflicts.
                    let entry = super::watched::new_entry(&st, subnet, rev, s.draining);
                    st.subnets.insert(name, entry);
                }
            }
        }
        Ok(())
    }
}
