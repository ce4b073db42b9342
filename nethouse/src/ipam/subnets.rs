//! Subnet administration and the usage views (per subnet, per zone).
//!
//! Every subnet change also rewrites `m/subnets`, so two changes racing from different
//! replicas conflict on that key and the overlap check is always made against the latest set.

use nethouse_api::{Subnet as SubnetView, SubnetSpec, SubnetUsage, Zone};

use super::codec::{StoredSubnet, decode_ip, encode_subnet};
use super::pool::Pool;
use super::state::{IpState, SubnetEntry, parse_ip_key};
use super::{Ipam, IpamError, MAX_ATTEMPTS};
use crate::model::cidr::Family;
use crate::model::lease::IpRecord;
use crate::model::subnet::Subnet;
use crate::store::{Expect, Outcome, Store, Txn};

pub const META_KEY: &str = "m/subnets";

pub fn subnet_key_of(name: &str) -> String {
    crate::model::lease::subnet_key(name)
}

impl<S: Store> Ipam<S> {
    fn meta_check(&self, txn: Txn) -> Txn {
        let expect = match self.state().subnets_meta_rev {
            Some(r) => Expect::Revision(r),
            None => Expect::Absent,
        };
        txn.check(META_KEY, expect).put(META_KEY, Vec::new())
    }

    pub async fn add_subnet(&self, spec: &SubnetSpec) -> Result<SubnetView, IpamError> {
        let subnet = Subnet::from_spec(spec)?;
        let _admin = self.admin.write().await;
        for _ in 0..MAX_ATTEMPTS {
            {
                let st = self.state();
                if st.subnets.contains_key(&subnet.name) {
                    return Err(IpamError::SubnetExists {
                        name: subnet.name.clone(),
                    });
                }
                if let Some(other) = st
                    .subnets
                    .values()
                    .find(|e| e.subnet.cidr.overlaps(&subnet.cidr))
                {
                    return Err(IpamError::SubnetOverlap {
                        name: subnet.name.clone(),
                        cidr: subnet.cidr.to_string(),
                        other: other.subnet.name.clone(),
                        other_cidr: other.subnet.cidr.to_string(),
                    });
                }
            }
            let key = subnet_key_of(&subnet.name);
            let stored = StoredSubnet {
                spec: subnet.to_spec(),
                draining: false,
            };
            let txn = self.meta_check(
                Txn::default()
                    .check(key.clone(), Expect::Absent)
                    .put(key, encode_subnet(&stored)),
            );
            match self.store.commit(txn).await? {
                Outcome::Committed(rev) => {
                    let mut st = self.state();
                    st.subnets_meta_rev = Some(rev);
                    let mut blocked = subnet.reserved().to_vec();
                    // Records of an earlier subnet of the same name were deleted with it; any
                    // other address record under this name would be a bug, so block nothing more.
                    blocked.shrink_to_fit();
                    let pool = Pool::new(subnet.cidr.size(), blocked, Vec::new());
                    st.subnets.insert(
                        subnet.name.clone(),
                        SubnetEntry {
                            subnet: subnet.clone(),
                            rev,
                            draining: false,
                            pool,
                            attached: 0,
                            retained: 0,
                        },
                    );
                    drop(st);
                    return self.subnet(&subnet.name);
                }
                Outcome::Conflict { key } => self.refresh_subnets(&key).await?,
            }
        }
        Err(IpamError::Contention {
            key: META_KEY.into(),
        })
    }

    /// After a lost race on subnet keys another replica changed the set: re-read all subnets.
    async fn refresh_subnets(&self, key: &str) -> Result<(), IpamError> {
        tracing::warn!(key, "subnet set changed underneath; re-reading subnets");
        let stored = self.store.scan("s/").await?;
        let meta = self.store.get(META_KEY).await?;
        let mut st = self.state();
        st.subnets_meta_rev = meta.map(|m| m.revision);
        let known: std::collections::HashSet<String> = stored
            .iter()
            .map(|(k, _)| k.trim_start_matches("s/").to_string())
            .collect();
        st.subnets.retain(|name, _| known.contains(name));
        for (k, v) in stored {
            let s = super::codec::decode_subnet(&k, &v.value)?;
            let name = k.trim_start_matches("s/").to_string();
            match st.subnets.get_mut(&name) {
                Some(e) => {
                    e.rev = v.revision;
                    e.draining = s.draining;
                }
                None => {
                    let subnet = Subnet::from_spec(&s.spec).map_err(|e| IpamError::Corrupt {
                        key: k.clone(),
                        message: e.to_string(),
                    })?;
                    // Addresses of a subnet another replica added are learned on conflicts.
                    let pool =
                        Pool::new(subnet.cidr.size(), subnet.reserved().to_vec(), Vec::new());
                    st.subnets.insert(
                        name,
                        SubnetEntry {
                            subnet,
                            rev: v.revision,
                            draining: s.draining,
                            pool,
                            attached: 0,
                            retained: 0,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    async fn set_draining(&self, name: &str, draining: bool) -> Result<(), IpamError> {
        let (rev, spec) = {
            let st = self.state();
            let e = st.subnets.get(name).ok_or_else(|| IpamError::NotFound {
                what: format!("subnet {name:?}"),
            })?;
            (e.rev, e.subnet.to_spec())
        };
        let key = subnet_key_of(name);
        let txn = self.meta_check(
            Txn::default()
                .check(key.clone(), Expect::Revision(rev))
                .put(key.clone(), encode_subnet(&StoredSubnet { spec, draining })),
        );
        match self.store.commit(txn).await? {
            Outcome::Committed(new_rev) => {
                let mut st = self.state();
                st.subnets_meta_rev = Some(new_rev);
                if let Some(e) = st.subnets.get_mut(name) {
                    e.rev = new_rev;
                    e.draining = draining;
                }
                Ok(())
            }
            Outcome::Conflict { key } => {
                self.refresh_subnets(&key).await?;
                Err(IpamError::Contention { key })
            }
        }
    }

    /// Removes a subnet that holds no lease. The subnet is first marked draining (so no
    /// allocation, here or on another replica, can commit in it any more), then the STORE — not
    /// the cache — is asked whether any address is still leased.
    pub async fn remove_subnet(&self, name: &str) -> Result<SubnetView, IpamError> {
        let _admin = self.admin.write().await;
        let view = self.subnet(name)?;
        self.set_draining(name, true).await?;
        let records = self.store.scan(&format!("i/{name}/")).await;
        let records = match records {
            Ok(r) => r,
            Err(e) => {
                let _ = self.set_draining(name, false).await;
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
            self.set_draining(name, false).await?;
            return Err(IpamError::SubnetInUse {
                name: name.to_string(),
                leases: leased,
            });
        }
        let rev = self
            .state()
            .subnets
            .get(name)
            .map(|e| e.rev)
            .unwrap_or_default();
        let key = subnet_key_of(name);
        let mut txn = self.meta_check(
            Txn::default()
                .check(key.clone(), Expect::Revision(rev))
                .delete(key),
        );
        for (k, v) in &records {
            txn = txn
                .check(k.clone(), Expect::Revision(v.revision))
                .delete(k.clone());
        }
        match self.store.commit(txn).await? {
            Outcome::Committed(new_rev) => {
                let mut st = self.state();
                st.subnets_meta_rev = Some(new_rev);
                st.subnets.remove(name);
                for (k, _) in &records {
                    if let Ok((_, ip)) = parse_ip_key(k) {
                        st.ips.remove(&ip);
                    }
                }
                Ok(view)
            }
            Outcome::Conflict { key } => {
                self.refresh_subnets(&key).await?;
                let _ = self.set_draining(name, false).await;
                Err(IpamError::Contention { key })
            }
        }
    }

    fn view(&self, e: &SubnetEntry, now: u64) -> SubnetView {
        let cooldown = self.cooldown_ms(&e.subnet);
        SubnetView {
            name: e.subnet.name.clone(),
            zone: e.subnet.zone.clone(),
            cidr: e.subnet.cidr.to_string(),
            gateway: e.subnet.gateway,
            exclude: e.subnet.exclude.clone(),
            routes: e.subnet.routes.clone(),
            dns: e.subnet.dns.clone(),
            cooldown_seconds: cooldown / 1000,
            usage: SubnetUsage {
                capacity: e.subnet.capacity(),
                attached: e.attached,
                retained: e.retained,
                cooling: e.pool.cooling(now, cooldown),
                free: if e.draining {
                    0
                } else {
                    e.pool.available(now, cooldown)
                },
            },
        }
    }

    pub fn subnet(&self, name: &str) -> Result<SubnetView, IpamError> {
        let now = self.clock.now_ms();
        let st = self.state();
        st.subnets
            .get(name)
            .map(|e| self.view(e, now))
            .ok_or_else(|| IpamError::NotFound {
                what: format!("subnet {name:?}"),
            })
    }

    pub fn subnets(&self) -> Vec<SubnetView> {
        let now = self.clock.now_ms();
        let st = self.state();
        st.subnets.values().map(|e| self.view(e, now)).collect()
    }

    /// Zones with what a new lease could get in each (the scheduler extender's capacity view).
    pub fn zones(&self) -> Vec<Zone> {
        let mut zones: std::collections::BTreeMap<String, Zone> = Default::default();
        for s in self.subnets() {
            let family = match s.cidr.contains(':') {
                true => Family::V6,
                false => Family::V4,
            };
            let z = zones.entry(s.zone.clone()).or_insert_with(|| Zone {
                name: s.zone.clone(),
                subnets: Vec::new(),
                free_v4: None,
                free_v6: None,
                can_allocate: false,
            });
            z.subnets.push(s.name.clone());
            let slot = match family {
                Family::V4 => &mut z.free_v4,
                Family::V6 => &mut z.free_v6,
            };
            *slot = Some(slot.unwrap_or(0).saturating_add(s.usage.free));
        }
        zones
            .into_values()
            .map(|mut z| {
                z.can_allocate = z.free_v4.is_none_or(|n| n > 0) && z.free_v6.is_none_or(|n| n > 0);
                z
            })
            .collect()
    }
}

impl IpState {
    pub fn is_leased(&self) -> bool {
        matches!(self, IpState::Leased(_))
    }
}
