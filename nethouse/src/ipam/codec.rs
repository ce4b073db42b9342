//! Byte encodings of stored records. Leases and address records are many and read back whole
//! at start-up, so they use compact postcard behind a format byte; subnets are few and stay
//! JSON so an operator can read them with any key/value tool.

use nethouse_api::{Lease, SubnetSpec};
use serde::{Deserialize, Serialize};

use super::IpamError;
use crate::model::lease::{IpRecord, IpRecordRef};

const FORMAT_V1: u8 = 1;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StoredSubnet {
    pub spec: SubnetSpec,
    /// Set while the subnet is being removed: allocations skip it, and any allocation that
    /// raced the removal fails its revision check.
    #[serde(default)]
    pub draining: bool,
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> IpamError {
    IpamError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    }
}

fn encode_v1<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    // Serializing these plain structs into a Vec cannot fail.
    out.extend(postcard::to_allocvec(value).unwrap_or_default());
    out
}

/// The one place that knows the record framing: a format byte, then postcard.
fn decode_framed<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => postcard::from_bytes(rest).map_err(|e| e.to_string()),
        Some((v, _)) => Err(format!("unknown record format {v}")),
        None => Err("empty record".into()),
    }
}

fn decode_v1<'a, T: Deserialize<'a>>(key: &str, bytes: &'a [u8]) -> Result<T, IpamError> {
    decode_framed(bytes).map_err(|e| corrupt(key, e))
}

pub fn encode_lease(lease: &Lease) -> Vec<u8> {
    encode_v1(lease)
}

pub fn decode_lease(key: &str, bytes: &[u8]) -> Result<Lease, IpamError> {
    decode_v1(key, bytes)
}

pub fn encode_ip(rec: &IpRecord) -> Vec<u8> {
    encode_v1(rec)
}

pub fn decode_ip(key: &str, bytes: &[u8]) -> Result<IpRecord, IpamError> {
    decode_v1(key, bytes)
}

/// Borrowing decode for start-up; the error is the message only (the store names the key).
pub fn decode_ip_ref(bytes: &[u8]) -> Result<IpRecordRef<'_>, String> {
    decode_framed(bytes)
}

pub fn decode_lease_msg(bytes: &[u8]) -> Result<Lease, String> {
    decode_framed(bytes)
}

pub fn encode_subnet(s: &StoredSubnet) -> Vec<u8> {
    serde_json::to_vec(s).unwrap_or_default()
}

pub fn decode_subnet(key: &str, bytes: &[u8]) -> Result<StoredSubnet, IpamError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(key, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nethouse_api::{Attachment, LeaseIp, LeaseKind, Owner};

    #[test]
    fn lease_round_trip_and_bad_bytes() {
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
                node: "n".into(),
            }),
            created_unix_ms: 1,
            updated_unix_ms: 2,
        };
        let bytes = encode_lease(&lease);
        assert_eq!(decode_lease("k", &bytes).unwrap(), lease);
        assert!(matches!(
            decode_lease("k", &[]),
            Err(IpamError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_lease("k", &[9, 1]),
            Err(IpamError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_lease("k", &[1, 255]),
            Err(IpamError::Corrupt { .. })
        ));
        let rec = IpRecord::Released { at_ms: 5 };
        assert_eq!(decode_ip("k", &encode_ip(&rec)).unwrap(), rec);
    }
}
