//! The in-memory form of a lease. A million of them must load in about a second and fit in a
//! few hundred MB, so the strings that repeat across leases (zone, subnet, node, cluster,
//! namespace, ifname) are interned and shared, and only the per-pod ones are owned.
//! The wire and stored form stays [`nethouse_api::Lease`]; conversion happens at the edges.

use std::net::IpAddr;
use std::sync::Arc;

use nethouse_api::{Attachment, Lease, LeaseIp, LeaseKind, Owner};
use rustc_hash::FxHashSet;

pub type Sym = Arc<str>;

/// Hands out one shared copy of each distinct string.
#[derive(Default)]
pub struct Interner(FxHashSet<Sym>);

impl Interner {
    pub fn sym(&mut self, s: &str) -> Sym {
        if let Some(found) = self.0.get(s) {
            return found.clone();
        }
        let sym: Sym = s.into();
        self.0.insert(sym.clone());
        sym
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerRec {
    pub cluster: Sym,
    pub namespace: Sym,
    pub pod: Box<str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttRec {
    pub container_id: Box<str>,
    pub ifname: Sym,
    pub node: Sym,
}

impl AttRec {
    pub fn new(a: &Attachment, i: &mut Interner) -> AttRec {
        AttRec {
            container_id: a.container_id.as_str().into(),
            ifname: i.sym(&a.ifname),
            node: i.sym(&a.node),
        }
    }

    pub fn same_as(&self, a: &Attachment) -> bool {
        *self.container_id == *a.container_id && *self.ifname == *a.ifname && *self.node == *a.node
    }

    pub fn is(&self, container_id: &str, ifname: &str) -> bool {
        *self.container_id == *container_id && *self.ifname == *ifname
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpRec {
    pub ip: IpAddr,
    pub subnet: Sym,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRec {
    pub kind: LeaseKind,
    pub owner: Option<OwnerRec>,
    pub zone: Sym,
    pub ips: Box<[IpRec]>,
    pub attachment: Option<AttRec>,
    pub created_unix_ms: u64,
    pub updated_unix_ms: u64,
}

impl LeaseRec {
    pub fn from_api(l: &Lease, i: &mut Interner) -> LeaseRec {
        LeaseRec {
            kind: l.kind,
            owner: l.owner.as_ref().map(|o| OwnerRec {
                cluster: i.sym(&o.cluster),
                namespace: i.sym(&o.namespace),
                pod: o.pod.as_str().into(),
            }),
            zone: i.sym(&l.zone),
            ips: l
                .ips
                .iter()
                .map(|x| IpRec {
                    ip: x.ip,
                    subnet: i.sym(&x.subnet),
                })
                .collect(),
            attachment: l.attachment.as_ref().map(|a| AttRec::new(a, i)),
            created_unix_ms: l.created_unix_ms,
            updated_unix_ms: l.updated_unix_ms,
        }
    }

    pub fn to_api(&self) -> Lease {
        Lease {
            kind: self.kind,
            owner: self.owner.as_ref().map(|o| Owner {
                cluster: o.cluster.to_string(),
                namespace: o.namespace.to_string(),
                pod: o.pod.to_string(),
            }),
            zone: self.zone.to_string(),
            ips: self
                .ips
                .iter()
                .map(|x| LeaseIp {
                    ip: x.ip,
                    subnet: x.subnet.to_string(),
                })
                .collect(),
            attachment: self.attachment.as_ref().map(|a| Attachment {
                container_id: a.container_id.to_string(),
                ifname: a.ifname.to_string(),
                node: a.node.to_string(),
            }),
            created_unix_ms: self.created_unix_ms,
            updated_unix_ms: self.updated_unix_ms,
        }
    }

    /// A fixed lease whose pod runs nowhere.
    pub fn is_retained(&self) -> bool {
        self.kind == LeaseKind::Fixed && self.attachment.is_none()
    }

    pub fn node(&self) -> Option<&str> {
        self.attachment.as_ref().map(|a| &*a.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_sharing() {
        let lease = Lease {
            kind: LeaseKind::Fixed,
            owner: Some(Owner {
                cluster: "k".into(),
                namespace: "db".into(),
                pod: "redis-0".into(),
            }),
            zone: "z1".into(),
            ips: vec![LeaseIp {
                ip: "10.0.0.2".parse().unwrap(),
                subnet: "s".into(),
            }],
            attachment: Some(Attachment {
                container_id: "c".into(),
                ifname: "eth0".into(),
                node: "n1".into(),
            }),
            created_unix_ms: 1,
            updated_unix_ms: 2,
        };
        let mut i = Interner::default();
        let a = LeaseRec::from_api(&lease, &mut i);
        let b = LeaseRec::from_api(&lease, &mut i);
        assert_eq!(a.to_api(), lease);
        assert!(Arc::ptr_eq(&a.zone, &b.zone), "zone strings are shared");
        assert!(
            a.attachment
                .as_ref()
                .unwrap()
                .same_as(lease.attachment.as_ref().unwrap())
        );
    }
}
