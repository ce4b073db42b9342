//! The store's key scheme, in one place. Every record NetHouse keeps is one key under one of
//! four prefixes; the IPAM writes them, start-up reads them back, the server's readiness probe
//! and the test stores name them. Built and parsed only here, the layout cannot drift apart
//! between the code that writes a key and the code that reads it.
//!
//! | key | value |
//! |---|---|
//! | `l/{owner key}` | a lease; the owner key is `f/{cluster}/{namespace}/{pod}` or `e/{container}/{ifname}` ([`OwnerKey`]) |
//! | `i/{subnet}/{ip}` | an address that was ever used: leased to an owner, or released at a time |
//! | `s/{subnet}` | a subnet (JSON, for operators' tools) |
//! | `m/subnets` | empty; every subnet change rewrites it, so subnet changes serialize |

use std::net::IpAddr;

use crate::model::lease::OwnerKey;

/// Prefix of every lease key.
pub const LEASES: &str = "l/";
/// Prefix of every address key.
pub const ADDRESSES: &str = "i/";
/// Prefix of every subnet key.
pub const SUBNETS: &str = "s/";
/// The key every subnet change rewrites: two changes racing from different replicas conflict on
/// it, so the overlap check is always made against the latest set of subnets.
pub const SUBNETS_META: &str = "m/subnets";

pub fn lease(owner: &OwnerKey) -> String {
    format!("{LEASES}{}", owner.as_str())
}

pub fn address(subnet: &str, ip: IpAddr) -> String {
    format!("{ADDRESSES}{subnet}/{ip}")
}

/// The prefix of every address key of one subnet.
pub fn addresses_of(subnet: &str) -> String {
    format!("{ADDRESSES}{subnet}/")
}

pub fn subnet(name: &str) -> String {
    format!("{SUBNETS}{name}")
}

/// A key of the scheme, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key<'a> {
    /// The owner key as stored (see [`OwnerKey::from_stored`]).
    Lease(&'a str),
    Address {
        subnet: &'a str,
        ip: IpAddr,
    },
    Subnet(&'a str),
    SubnetsMeta,
}

/// Why a stored key is not one of the scheme.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no known prefix (l/, i/, s/, m/subnets)")]
    UnknownPrefix,
    #[error("nothing after the prefix")]
    NoName,
    #[error("no subnet in the address key")]
    NoSubnet,
    #[error("no IP address at the end of the address key")]
    NoAddress,
}

pub fn parse(key: &str) -> Result<Key<'_>, KeyError> {
    let named = |rest: &'_ str| {
        if rest.is_empty() {
            Err(KeyError::NoName)
        } else {
            Ok(())
        }
    };
    if let Some(owner) = key.strip_prefix(LEASES) {
        named(owner)?;
        Ok(Key::Lease(owner))
    } else if let Some(rest) = key.strip_prefix(ADDRESSES) {
        let (subnet, ip) = rest.split_once('/').ok_or(KeyError::NoSubnet)?;
        named(subnet).map_err(|_| KeyError::NoSubnet)?;
        let ip = ip.parse().map_err(|_| KeyError::NoAddress)?;
        Ok(Key::Address { subnet, ip })
    } else if let Some(name) = key.strip_prefix(SUBNETS) {
        named(name)?;
        Ok(Key::Subnet(name))
    } else if key == SUBNETS_META {
        Ok(Key::SubnetsMeta)
    } else {
        Err(KeyError::UnknownPrefix)
    }
}

#[cfg(test)]
mod tests {
    use nethouse_api::Owner;

    use super::*;

    #[test]
    fn every_built_key_parses_back() {
        let owner = OwnerKey::fixed(&Owner {
            cluster: "k".into(),
            namespace: "db".into(),
            pod: "redis-0".into(),
        });
        let v6: IpAddr = "fd00:9::2".parse().unwrap();
        let ephemeral = OwnerKey::ephemeral("c1", "eth0");
        let cases: Vec<(String, &str, Key)> = vec![
            (
                lease(&owner),
                "l/f/k/db/redis-0",
                Key::Lease("f/k/db/redis-0"),
            ),
            (lease(&ephemeral), "l/e/c1/eth0", Key::Lease("e/c1/eth0")),
            (
                address("10.9.0.0-24", "10.9.0.2".parse().unwrap()),
                "i/10.9.0.0-24/10.9.0.2",
                Key::Address {
                    subnet: "10.9.0.0-24",
                    ip: "10.9.0.2".parse().unwrap(),
                },
            ),
            (
                address("fd00-9---64", v6),
                "i/fd00-9---64/fd00:9::2",
                Key::Address {
                    subnet: "fd00-9---64",
                    ip: v6,
                },
            ),
            (subnet("rack-a"), "s/rack-a", Key::Subnet("rack-a")),
            (SUBNETS_META.into(), "m/subnets", Key::SubnetsMeta),
        ];
        for (built, text, key) in cases {
            assert_eq!(built, text);
            assert_eq!(parse(&built), Ok(key), "{built}");
        }
        assert!(address("s", v6).starts_with(&addresses_of("s")));
        assert!(!address("s2", v6).starts_with(&addresses_of("s")));
    }

    #[test]
    fn foreign_keys_say_what_is_wrong() {
        let cases = [
            ("x/1", KeyError::UnknownPrefix),
            ("m/other", KeyError::UnknownPrefix),
            ("", KeyError::UnknownPrefix),
            ("l/", KeyError::NoName),
            ("s/", KeyError::NoName),
            ("i/10.9.0.2", KeyError::NoSubnet),
            ("i//10.9.0.2", KeyError::NoSubnet),
            ("i/s/not-an-ip", KeyError::NoAddress),
            ("i/s/", KeyError::NoAddress),
        ];
        for (key, want) in cases {
            assert_eq!(parse(key), Err(want), "{key:?}");
        }
    }
}
