//! Lease identity (owner keys), the stored records, and validation of the requests that create
//! or end leases.

use nethouse_api::{AllocateRequest, Attachment, AttachmentRef, DetachRequest, LeaseKind, Owner};
use serde::{Deserialize, Serialize};

use super::{FieldError, validate_name};

/// Who owns a lease; its store key is `ipam::keys::lease` of this. A fixed lease is keyed by the
/// pod identity so a recreated pod finds it; an ephemeral one by its attachment so DEL finds it
/// without any pod identity.
/// Shared (`Arc`) because the same key sits in several indexes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerKey(std::sync::Arc<str>);

impl OwnerKey {
    pub fn fixed(owner: &Owner) -> OwnerKey {
        OwnerKey(format!("f/{}/{}/{}", owner.cluster, owner.namespace, owner.pod).into())
    }

    pub fn ephemeral(container_id: &str, ifname: &str) -> OwnerKey {
        OwnerKey(format!("e/{container_id}/{ifname}").into())
    }

    pub fn from_stored(s: &str) -> OwnerKey {
        OwnerKey(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the store keeps per address of a subnet. An address without a record has never been
/// used; a released address keeps its record so its cooldown survives restarts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum IpRecord {
    Leased { owner: String },
    Released { at_ms: u64 },
}

/// The same record read without copying (start-up reads every one of them).
#[derive(Deserialize, Debug, PartialEq, Eq)]
pub enum IpRecordRef<'a> {
    Leased {
        #[allow(dead_code)]
        owner: &'a str,
    },
    Released {
        at_ms: u64,
    },
}

pub fn validate_owner(field: &str, owner: &Owner) -> Result<(), FieldError> {
    validate_name(&format!("{field}.cluster"), &owner.cluster, 63)?;
    validate_name(&format!("{field}.namespace"), &owner.namespace, 63)?;
    validate_name(&format!("{field}.pod"), &owner.pod, 253)
}

/// CNI rules: container ID `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`; ifname 1-15 bytes, not `.`/`..`,
/// no `/`, `:` or whitespace.
pub fn validate_attachment_ref(
    field: &str,
    container_id: &str,
    ifname: &str,
) -> Result<(), FieldError> {
    let cid_ok = nethouse_api::cni_names::valid_container_id(container_id);
    if !cid_ok {
        return Err(FieldError::new(
            format!("{field}container_id"),
            format!(
                "{container_id:?} must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ (at most 256 characters)"
            ),
        ));
    }
    let if_ok = nethouse_api::cni_names::valid_ifname(ifname);
    if !if_ok {
        return Err(FieldError::new(
            format!("{field}ifname"),
            format!("{ifname:?} must be 1-15 bytes, not '.' or '..', without '/', ':' or spaces"),
        ));
    }
    Ok(())
}

pub fn validate_attachment(a: &Attachment) -> Result<(), FieldError> {
    validate_attachment_ref("attachment.", &a.container_id, &a.ifname)?;
    validate_name("attachment.node", &a.node, 253)
}

/// An allocation request that passed validation; its owner key is decided here, once.
#[derive(Clone, Debug)]
pub struct ValidAllocate {
    pub zone: String,
    pub kind: LeaseKind,
    pub owner: Option<Owner>,
    pub attachment: Attachment,
    pub key: OwnerKey,
}

impl ValidAllocate {
    pub fn from_request(req: AllocateRequest) -> Result<ValidAllocate, FieldError> {
        validate_name("zone", &req.zone, 63)?;
        validate_attachment(&req.attachment)?;
        if let Some(o) = &req.owner {
            validate_owner("owner", o)?;
        }
        let key = match (req.kind, &req.owner) {
            (LeaseKind::Fixed, Some(o)) => OwnerKey::fixed(o),
            (LeaseKind::Fixed, None) => {
                return Err(FieldError::new("owner", "is required for a fixed lease"));
            }
            (LeaseKind::Ephemeral, _) => {
                OwnerKey::ephemeral(&req.attachment.container_id, &req.attachment.ifname)
            }
        };
        Ok(ValidAllocate {
            zone: req.zone,
            kind: req.kind,
            owner: req.owner,
            attachment: req.attachment,
            key,
        })
    }
}

#[derive(Clone, Debug)]
pub struct ValidDetach {
    pub container_id: String,
    pub ifname: String,
    pub owner: Option<Owner>,
}

impl ValidDetach {
    pub fn from_request(req: DetachRequest) -> Result<ValidDetach, FieldError> {
        validate_attachment_ref("", &req.container_id, &req.ifname)?;
        if let Some(o) = &req.owner {
            validate_owner("owner", o)?;
        }
        Ok(ValidDetach {
            container_id: req.container_id,
            ifname: req.ifname,
            owner: req.owner,
        })
    }

    /// Keys where this attachment's lease may be: the fixed lease of the named pod first.
    pub fn candidate_keys(&self) -> Vec<OwnerKey> {
        let mut keys = Vec::with_capacity(2);
        if let Some(o) = &self.owner {
            keys.push(OwnerKey::fixed(o));
        }
        keys.push(OwnerKey::ephemeral(&self.container_id, &self.ifname));
        keys
    }

    pub fn matches(&self, a: &Attachment) -> bool {
        a.container_id == self.container_id && a.ifname == self.ifname
    }
}

pub fn validate_valid_attachments(list: &[AttachmentRef]) -> Result<(), FieldError> {
    for (i, a) in list.iter().enumerate() {
        validate_attachment_ref(
            &format!("valid_attachments[{i}]."),
            &a.container_id,
            &a.ifname,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att() -> Attachment {
        Attachment {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            node: "n1".into(),
        }
    }

    fn owner() -> Owner {
        Owner {
            cluster: "k".into(),
            namespace: "db".into(),
            pod: "redis-0".into(),
        }
    }

    #[test]
    fn fixed_key_is_the_pod_name_not_the_container() {
        let req = |cid: &str| AllocateRequest {
            zone: "z".into(),
            kind: LeaseKind::Fixed,
            owner: Some(owner()),
            attachment: Attachment {
                container_id: cid.into(),
                ..att()
            },
        };
        let a = ValidAllocate::from_request(req("c1")).unwrap();
        let b = ValidAllocate::from_request(req("c2")).unwrap();
        assert_eq!(a.key, b.key);
        assert_eq!(a.key.as_str(), "f/k/db/redis-0");
    }

    #[test]
    fn ephemeral_key_is_the_attachment() {
        let req = AllocateRequest {
            zone: "z".into(),
            kind: LeaseKind::Ephemeral,
            owner: Some(owner()),
            attachment: att(),
        };
        assert_eq!(
            ValidAllocate::from_request(req).unwrap().key.as_str(),
            "e/c1/eth0"
        );
    }

    #[test]
    fn bad_requests_name_the_field() {
        let base = AllocateRequest {
            zone: "z".into(),
            kind: LeaseKind::Fixed,
            owner: Some(owner()),
            attachment: att(),
        };
        let cases: Vec<(&str, AllocateRequest)> = vec![
            (
                "owner",
                AllocateRequest {
                    owner: None,
                    ..base.clone()
                },
            ),
            (
                "zone",
                AllocateRequest {
                    zone: "a b".into(),
                    ..base.clone()
                },
            ),
            (
                "attachment.container_id",
                AllocateRequest {
                    attachment: Attachment {
                        container_id: "-x".into(),
                        ..att()
                    },
                    ..base.clone()
                },
            ),
            (
                "attachment.ifname",
                AllocateRequest {
                    attachment: Attachment {
                        ifname: "a/b".into(),
                        ..att()
                    },
                    ..base.clone()
                },
            ),
            (
                "attachment.ifname",
                AllocateRequest {
                    attachment: Attachment {
                        ifname: "0123456789abcdef".into(),
                        ..att()
                    },
                    ..base.clone()
                },
            ),
            (
                "attachment.node",
                AllocateRequest {
                    attachment: Attachment {
                        node: "".into(),
                        ..att()
                    },
                    ..base.clone()
                },
            ),
            (
                "owner.pod",
                AllocateRequest {
                    owner: Some(Owner {
                        pod: "a/b".into(),
                        ..owner()
                    }),
                    ..base.clone()
                },
            ),
        ];
        for (field, req) in cases {
            let e = ValidAllocate::from_request(req).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }
}
