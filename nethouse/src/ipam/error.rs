use nethouse_api::codes;

use crate::model::FieldError;
use crate::store::StoreError;

/// Every way an IPAM operation can fail; the HTTP layer maps each to one status and code.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("{0}")]
    Invalid(#[from] FieldError),
    #[error("unknown zone {zone:?}: no subnet serves it")]
    UnknownZone { zone: String },
    #[error("zone {zone:?} is exhausted: {detail}")]
    ZoneExhausted { zone: String, detail: String },
    #[error(
        "{owner} holds IP {ips} in zone {lease_zone:?}, but was asked for in zone {requested_zone:?}; the pod must run on a node of zone {lease_zone:?}"
    )]
    WrongZone {
        owner: String,
        ips: String,
        lease_zone: String,
        requested_zone: String,
    },
    #[error("subnet {name:?} already exists")]
    SubnetExists { name: String },
    #[error("subnet {name:?} ({cidr}) overlaps subnet {other:?} ({other_cidr})")]
    SubnetOverlap {
        name: String,
        cidr: String,
        other: String,
        other_cidr: String,
    },
    #[error("subnet {name:?} still has {leases} lease(s); release them first")]
    SubnetInUse { name: String, leases: usize },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("gave up after repeated conflicting updates of {key}; try again")]
    Contention { key: String },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("stored record {key} is unreadable: {message}")]
    Corrupt { key: String, message: String },
}

impl IpamError {
    /// (HTTP status, stable code, field) for the API.
    pub fn classify(&self) -> (u16, &'static str, Option<String>) {
        match self {
            IpamError::Invalid(e) => (400, codes::INVALID_FIELD, Some(e.field.clone())),
            IpamError::UnknownZone { .. } => (404, codes::UNKNOWN_ZONE, Some("zone".into())),
            IpamError::ZoneExhausted { .. } => (409, codes::ZONE_EXHAUSTED, None),
            IpamError::WrongZone { .. } => (409, codes::WRONG_ZONE, Some("zone".into())),
            IpamError::SubnetExists { .. } => (409, codes::SUBNET_EXISTS, Some("name".into())),
            IpamError::SubnetOverlap { .. } => (409, codes::SUBNET_OVERLAP, Some("cidr".into())),
            IpamError::SubnetInUse { .. } => (409, codes::SUBNET_IN_USE, None),
            IpamError::NotFound { .. } => (404, codes::NOT_FOUND, None),
            IpamError::Contention { .. } => (503, codes::CONFLICT, None),
            IpamError::Store(StoreError::Decode { .. }) => (500, codes::INTERNAL, None),
            IpamError::Store(_) => (503, codes::UNAVAILABLE, None),
            IpamError::Corrupt { .. } => (500, codes::INTERNAL, None),
        }
    }
}
