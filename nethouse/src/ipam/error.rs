//! What an IPAM operation can fail with. One enum, variants named after what failed, so the
//! server maps each to its HTTP status and stable code (`server::errors`) and callers can match.

use crate::model::FieldError;
use crate::store::StoreError;

use super::keys::KeyError;

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
    /// A removal split into several transactions (more address records than one transaction
    /// of the store takes) failed after it may have deleted some of them: the subnet stays
    /// draining, and removing it again finishes the job.
    #[error(
        "removing subnet {name:?} stopped after deleting {deleted} of its {records} address \
         records ({cause}); it stays draining (no new leases): remove it again to finish"
    )]
    SubnetRemovalIncomplete {
        name: String,
        deleted: usize,
        records: usize,
        #[source]
        cause: Box<IpamError>,
    },
    #[error("{what} not found")]
    NotFound { what: String },
    /// Every attempt at the change of `key` lost a race; `lost` is the key the last one lost
    /// on (an address another replica took, or `key` itself).
    #[error(
        "gave up after repeated conflicting updates of {key} (the last attempt lost on {lost}); try again"
    )]
    Contention { key: String, lost: String },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("stored record {key} is unreadable: {message}")]
    Corrupt { key: String, message: String },
    #[error("stored key {key:?} is not one of NetHouse's: {source}")]
    UnreadableKey {
        key: String,
        #[source]
        source: KeyError,
    },
}

impl IpamError {
    pub(super) fn unreadable_key(key: &str, source: KeyError) -> IpamError {
        IpamError::UnreadableKey {
            key: key.to_string(),
            source,
        }
    }
}
