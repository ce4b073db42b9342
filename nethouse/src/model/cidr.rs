//! IPv4/IPv6 networks as (base, prefix) with u128 offsets, so the allocator works on plain
//! integers whatever the family and an IPv6 /64 never has to be enumerated.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// A network in canonical form: host bits of `base` are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    base: IpAddr,
    prefix: u8,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(family: Family, v: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(v as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

impl Cidr {
    pub fn new(base: IpAddr, prefix: u8) -> Result<Cidr, String> {
        let family = Family::of(&base);
        if prefix > family.bits() {
            return Err(format!(
                "prefix length /{prefix} is longer than {} bits",
                family.bits()
            ));
        }
        let cidr = Cidr { base, prefix };
        let host_bits = to_u128(base) & cidr.host_mask();
        if host_bits != 0 {
            let canonical = from_u128(family, to_u128(base) & !cidr.host_mask());
            return Err(format!(
                "{base}/{prefix} has host bits set; did you mean {canonical}/{prefix}?"
            ));
        }
        Ok(cidr)
    }

    pub fn family(&self) -> Family {
        Family::of(&self.base)
    }

    pub fn base(&self) -> IpAddr {
        self.base
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn host_bits(&self) -> u8 {
        self.family().bits() - self.prefix
    }

    fn host_mask(&self) -> u128 {
        match self.host_bits() {
            128 => u128::MAX,
            n => (1u128 << n) - 1,
        }
    }

    /// Number of addresses, saturating at `u128::MAX` for `::/0`.
    pub fn size(&self) -> u128 {
        match self.host_bits() {
            128 => u128::MAX,
            n => 1u128 << n,
        }
    }

    /// The address at `offset` from the base, if inside the network.
    pub fn nth(&self, offset: u128) -> Option<IpAddr> {
        if offset > self.host_mask() {
            return None;
        }
        Some(from_u128(self.family(), to_u128(self.base) + offset))
    }

    /// Offset of `ip` inside the network.
    pub fn offset_of(&self, ip: IpAddr) -> Option<u128> {
        if Family::of(&ip) != self.family() {
            return None;
        }
        let v = to_u128(ip);
        let b = to_u128(self.base);
        (v & !self.host_mask() == b).then(|| v - b)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.offset_of(ip).is_some()
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.family() == other.family() && (self.contains(other.base) || other.contains(self.base))
    }

    /// The first range of [`NOT_FOR_PODS`] this network overlaps, with what it is.
    pub fn not_for_pods(&self) -> Option<(Cidr, &'static str)> {
        NOT_FOR_PODS.iter().find_map(|&(text, what)| {
            let range: Cidr = text.parse().ok()?;
            self.overlaps(&range).then_some((range, what))
        })
    }
}

/// Ranges whose addresses cannot be a pod's unicast address: a pod given one would have an
/// interface the kernel refuses or a peer that never answers. (IPv4 0.0.0.0/8 and 240.0.0.0/4
/// are left out on purpose: Linux assigns both, and some clusters use 240/4 for pods.)
const NOT_FOR_PODS: &[(&str, &str)] = &[
    ("127.0.0.0/8", "IPv4 loopback"),
    (
        "224.0.0.0/4",
        "IPv4 multicast (224.0.0.0/24 is link-local multicast)",
    ),
    ("::/128", "the IPv6 unspecified address"),
    ("::1/128", "IPv6 loopback"),
    ("::ffff:0:0/96", "IPv4-mapped IPv6"),
    (
        "ff00::/8",
        "IPv6 multicast (ff02::/16 is link-local multicast)",
    ),
];

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (expected ADDRESS/PREFIX)"))?;
        let base: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("{prefix:?} is not a prefix length"))?;
        Cidr::new(base, prefix)
    }
}

/// Parses `ADDR/PREFIX` where the address may have host bits set (an interface address).
pub fn parse_interface_address(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX"))?;
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| format!("{prefix:?} is not a prefix length"))?;
    if prefix > Family::of(&ip).bits() {
        return Err(format!("prefix /{prefix} too long"));
    }
    Ok((ip, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_canonical_form() {
        let c: Cidr = "10.9.0.0/24".parse().unwrap();
        assert_eq!(c.size(), 256);
        assert_eq!(c.to_string(), "10.9.0.0/24");
        let e = "10.9.0.1/24".parse::<Cidr>().unwrap_err();
        assert!(e.contains("did you mean 10.9.0.0/24"), "{e}");
        assert!("10.9.0.0/33".parse::<Cidr>().is_err());
        assert!("10.9.0.0".parse::<Cidr>().is_err());
        assert!("banana/8".parse::<Cidr>().is_err());
        let v6: Cidr = "fd00:1::/64".parse().unwrap();
        assert_eq!(v6.size(), 1u128 << 64);
        assert_eq!(v6.family(), Family::V6);
        let all: Cidr = "::/0".parse().unwrap();
        assert_eq!(all.size(), u128::MAX);
    }

    #[test]
    fn offsets_round_trip() {
        let c: Cidr = "10.9.0.0/24".parse().unwrap();
        assert_eq!(c.nth(7), Some("10.9.0.7".parse().unwrap()));
        assert_eq!(c.nth(256), None);
        assert_eq!(c.offset_of("10.9.0.255".parse().unwrap()), Some(255));
        assert_eq!(c.offset_of("10.9.1.0".parse().unwrap()), None);
        assert_eq!(c.offset_of("fd00::1".parse().unwrap()), None);
        let v6: Cidr = "fd00:1::/64".parse().unwrap();
        let ip: IpAddr = "fd00:1::ffff:1".parse().unwrap();
        assert_eq!(v6.nth(v6.offset_of(ip).unwrap()), Some(ip));
    }

    #[test]
    fn ranges_that_cannot_hold_pods() {
        for (cidr, what) in [
            ("127.0.0.0/16", "loopback"),
            ("224.0.0.0/24", "link-local multicast"),
            ("239.1.0.0/16", "multicast"),
            ("::1/128", "loopback"),
            ("::/32", "unspecified"),
            ("::ffff:10.9.0.0/120", "IPv4-mapped"),
            ("ff02::/64", "link-local multicast"),
            ("ff05::/64", "multicast"),
        ] {
            let c: Cidr = cidr.parse().unwrap();
            let (_, got) = c
                .not_for_pods()
                .unwrap_or_else(|| panic!("{cidr} accepted"));
            assert!(got.contains(what), "{cidr}: {got}");
        }
        for cidr in [
            "10.9.0.0/16",
            "100.64.0.0/10",
            "240.0.0.0/8",
            "fd00::/64",
            "2001:db8::/64",
        ] {
            let c: Cidr = cidr.parse().unwrap();
            assert_eq!(c.not_for_pods(), None, "{cidr}");
        }
    }

    #[test]
    fn overlap() {
        let a: Cidr = "10.0.0.0/16".parse().unwrap();
        let b: Cidr = "10.0.5.0/24".parse().unwrap();
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        let d: Cidr = "fd00::/8".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert!(!a.overlaps(&d));
    }
}
