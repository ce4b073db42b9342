//! Subnet administration and the usage views (per subnet, per zone); removal is `removal`.
//!
//! Every subnet change also rewrites the subnets' meta key, so two changes racing from
//! different replicas conflict on that key and the overlap check is always made against the
//! latest set.

use nethouse_api::{Subnet as SubnetView, SubnetSpec, SubnetUsage, Zone};

use super::codec::{StoredSubnet, encode_subnet};
use super::commit::{Reread, Step, Write};
use super::keys;
use super::plan::cooldown_ms;
use super::pool::Pool;
use super::state::{IpState, State, SubnetEntry};
use super::{Ipam, IpamError};
use crate::model::cidr::Family;
use crate::model::subnet::Subnet;
use crate::store::{Expect, Outcome, Revision, Store, Txn};

/// Adds the meta key's check and rewrite to a subnet change.
pub(super) fn meta_check(st: &State, txn: Txn) -> Txn {
    let expect = match st.subnets_meta_rev {
        Some(r) => Expect::Revision(r),
        None => Expect::Absent,
    };
    txn.check(keys::SUBNETS_META, expect)
        .put(keys::SUBNETS_META, Vec::new())
}

impl<S: Store> Ipam<S> {
    pub async fn add_subnet(&self, spec: &SubnetSpec) -> Result<SubnetView, IpamError> {
        let subnet = Subnet::from_spec(spec)?;
        let _admin = self.admin.write().await;
        self.commit_with_retry(keys::SUBNETS_META, Reread::Subnets, |st, _| {
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
            let key = keys::subnet(&subnet.name);
            let stored = StoredSubnet {
                spec: subnet.to_spec(),
                draining: false,
            };
            let txn = meta_check(
                st,
                Txn::default()
                    .check(key.clone(), Expect::Absent)
                    .put(key, encode_subnet(&stored)),
            );
            let subnet = subnet.clone();
            Ok(Step::Write(Write::new(txn, move |st: &mut State, rev| {
                st.subnets_meta_rev = st.subnets_meta_rev.max(Some(rev));
                // The store's watch may have brought it (or a later change) already.
                if st.subnets.get(&subnet.name).is_some_and(|e| e.rev >= rev) {
                    return;
                }
                // Records of an earlier subnet of the same name were deleted with it; any
                // other address record under this name would be a bug, so block nothing more.
                let pool = Pool::new(subnet.cidr.size(), subnet.reserved().to_vec(), Vec::new());
                st.subnets.insert(
                    subnet.name.clone(),
                    SubnetEntry::new(subnet, rev, false, pool),
                );
            })))
        })
        .await?;
        self.subnet(&subnet.name)
    }

    /// Marks the subnet draining (no new leases) or not; it must be at revision `at` (`None`:
    /// at the view's). Returns the subnet key's new revision.
    pub(super) async fn set_draining(
        &self,
        name: &str,
        draining: bool,
        at: Option<Revision>,
    ) -> Result<Revision, IpamError> {
        let (rev, spec) = {
            let st = self.state();
            let e = st.subnets.get(name).ok_or_else(|| IpamError::NotFound {
                what: format!("subnet {name:?}"),
            })?;
            (at.unwrap_or(e.rev), e.subnet.to_spec())
        };
        let key = keys::subnet(name);
        let txn = meta_check(
            &self.state(),
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
                Ok(new_rev)
            }
            Outcome::Conflict { key } => {
                self.races.record(&key);
                self.refresh_subnets(&key).await?;
                Err(IpamError::Contention {
                    lost: key.clone(),
                    key,
                })
            }
        }
    }

    fn view(&self, e: &SubnetEntry, now: u64) -> SubnetView {
        let cooldown = cooldown_ms(&e.subnet, self.config.default_cooldown_ms);
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
