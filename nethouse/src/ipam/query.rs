//! Read-only queries: by address, by owner, and a filtered list paged in key order.

use std::net::IpAddr;

use nethouse_api::{Attachment, Lease, LeaseFilter, LeaseList, Owner};

use super::record::LeaseRec;
use super::state::IpState;
use super::{Ipam, IpamError};
use crate::model::FieldError;
use crate::model::lease::OwnerKey;
use crate::store::Store;

pub const DEFAULT_PAGE: usize = 500;
pub const MAX_PAGE: usize = 5000;

impl<S: Store> Ipam<S> {
    pub fn lease_by_ip(&self, ip: IpAddr) -> Result<Lease, IpamError> {
        let st = self.state();
        match st.ips.get(&ip).map(|c| &c.value) {
            Some(IpState::Leased(owner)) => st
                .leases
                .get(owner)
                .map(|c| c.value.to_api())
                .ok_or_else(|| IpamError::NotFound {
                    what: format!("lease of {ip}"),
                }),
            _ => Err(IpamError::NotFound {
                what: format!("lease of {ip}"),
            }),
        }
    }

    pub fn lease_by_owner(&self, owner: &Owner) -> Result<Lease, IpamError> {
        self.state()
            .leases
            .get(&OwnerKey::fixed(owner))
            .map(|c| c.value.to_api())
            .ok_or_else(|| IpamError::NotFound {
                what: format!("fixed lease of {owner}"),
            })
    }

    /// The attachment of the lease at `key`, if it has one: the node scope of a bound caller is
    /// checked against it.
    pub fn attachment_of(&self, key: &OwnerKey) -> Option<Attachment> {
        let st = self.state();
        let a = st.leases.get(key)?.value.attachment.as_ref()?;
        Some(Attachment {
            container_id: a.container_id.to_string(),
            ifname: a.ifname.to_string(),
            node: a.node.to_string(),
        })
    }

    pub fn list(&self, filter: &LeaseFilter) -> Result<LeaseList, IpamError> {
        let limit = filter.limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(
                FieldError::new("limit", format!("must be 1..={MAX_PAGE}, got {limit}")).into(),
            );
        }
        let st = self.state();
        let start = match &filter.continue_from {
            Some(c) => std::ops::Bound::Excluded(OwnerKey::from_stored(c)),
            None => std::ops::Bound::Unbounded,
        };
        let matches = |l: &LeaseRec| {
            filter.zone.as_ref().is_none_or(|z| *l.zone == **z)
                && filter.kind.is_none_or(|k| l.kind == k)
                && filter
                    .subnet
                    .as_ref()
                    .is_none_or(|s| l.ips.iter().any(|i| *i.subnet == **s))
                && filter
                    .node
                    .as_ref()
                    .is_none_or(|n| l.node() == Some(n.as_str()))
                && filter
                    .cluster
                    .as_ref()
                    .is_none_or(|c| l.owner.as_ref().is_some_and(|o| *o.cluster == **c))
                && filter
                    .namespace
                    .as_ref()
                    .is_none_or(|n| l.owner.as_ref().is_some_and(|o| *o.namespace == **n))
                && filter.retained.is_none_or(|r| r == l.is_retained())
        };
        let mut items = Vec::new();
        let mut last: Option<&OwnerKey> = None;
        let mut next = None;
        for (key, c) in st.leases.range((start, std::ops::Bound::Unbounded)) {
            if !matches(&c.value) {
                continue;
            }
            if items.len() == limit {
                // There is more: the token is the last key returned, the next page starts after it.
                next = last.map(|k| k.as_str().to_string());
                break;
            }
            items.push(c.value.to_api());
            last = Some(key);
        }
        Ok(LeaseList { items, next })
    }
}
