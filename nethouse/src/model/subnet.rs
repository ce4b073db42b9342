//! A subnet of a network zone, validated from its [`SubnetSpec`]: the reserved offsets (network,
//! broadcast, gateway, exclusions) are computed once here as merged ranges.

use std::net::IpAddr;

use nethouse_api::{Dns, Route, SubnetSpec};

use super::cidr::{Cidr, Family};
use super::{FieldError, netconf, validate_name};

/// Upper bound on a cooldown; a typo like `cooldown_seconds: 86400000` should be refused.
pub const MAX_COOLDOWN_SECONDS: u64 = 30 * 24 * 3600;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub name: String,
    pub zone: String,
    pub cidr: Cidr,
    pub gateway: Option<IpAddr>,
    /// Exclusions in canonical text form, as shown back to operators.
    pub exclude: Vec<String>,
    pub routes: Vec<Route>,
    pub dns: Dns,
    /// `None`: the server's default applies.
    pub cooldown_seconds: Option<u64>,
    /// Sorted, merged, inclusive ranges of offsets that are never handed out.
    reserved: Vec<(u128, u128)>,
}

/// Which rules a spec is held to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rules {
    /// A new subnet, at the API: every rule.
    New,
    /// A subnet read back from the store: the rules allocation rests on. Rules added since it
    /// was stored (names that are dot-segments, ranges that cannot hold pods, bounds on routes
    /// and DNS) are not applied: refusing it would stop NetHouse from starting at all.
    Stored,
}

impl Subnet {
    /// A new subnet, as asked for at the API.
    pub fn from_spec(spec: &SubnetSpec) -> Result<Subnet, FieldError> {
        Subnet::build(spec, Rules::New)
    }

    /// A subnet as the store holds it.
    pub fn from_stored(spec: &SubnetSpec) -> Result<Subnet, FieldError> {
        Subnet::build(spec, Rules::Stored)
    }

    fn build(spec: &SubnetSpec, rules: Rules) -> Result<Subnet, FieldError> {
        let new = rules == Rules::New;
        if new {
            validate_name("zone", &spec.zone, 63)?;
        }
        let cidr: Cidr = spec
            .cidr
            .trim()
            .parse()
            .map_err(|e: String| FieldError::new("cidr", e))?;
        let family = cidr.family();
        if (family == Family::V4 && cidr.prefix() < 8)
            || (family == Family::V6 && cidr.prefix() < 32)
        {
            return Err(FieldError::new(
                "cidr",
                format!("{cidr} is too large for one subnet (at most /8 for IPv4, /32 for IPv6)"),
            ));
        }
        if new && let Some((range, what)) = cidr.not_for_pods() {
            return Err(FieldError::new(
                "cidr",
                format!("{cidr} overlaps {range}, {what}: pod addresses must be unicast"),
            ));
        }
        let name = match &spec.name {
            Some(n) => n.clone(),
            None => cidr.to_string().replace('/', "-"),
        };
        if new {
            validate_name("name", &name, 63)?;
        }

        let last = cidr.size() - 1;
        let mut reserved: Vec<(u128, u128)> = Vec::new();
        // Network and broadcast addresses are not host addresses, except on point-to-point
        // /31 and /32 (RFC 3021). In IPv6 offset 0 is the subnet-router anycast address.
        match family {
            Family::V4 if cidr.prefix() <= 30 => {
                reserved.push((0, 0));
                reserved.push((last, last));
            }
            Family::V6 if cidr.prefix() <= 126 => reserved.push((0, 0)),
            _ => {}
        }

        let gateway = match spec.gateway.as_deref().map(str::trim) {
            Some("none") => None,
            Some(text) => {
                let gw: IpAddr = text.parse().map_err(|_| {
                    FieldError::new("gateway", format!("{text:?} is not an IP address"))
                })?;
                let off = cidr
                    .offset_of(gw)
                    .ok_or_else(|| FieldError::new("gateway", format!("{gw} is outside {cidr}")))?;
                if reserved.iter().any(|&(a, b)| a <= off && off <= b) {
                    return Err(FieldError::new(
                        "gateway",
                        format!("{gw} is the network or broadcast address of {cidr}"),
                    ));
                }
                Some(gw)
            }
            None if last >= 3 => cidr.nth(1),
            None => None,
        };
        if let Some(gw) = gateway {
            let off = cidr.offset_of(gw).unwrap_or_default();
            reserved.push((off, off));
        }

        let mut exclude = Vec::with_capacity(spec.exclude.len());
        for (i, text) in spec.exclude.iter().enumerate() {
            let field = format!("exclude[{i}]");
            let (a, b) =
                parse_exclusion(&cidr, text.trim()).map_err(|m| FieldError::new(&field, m))?;
            reserved.push((a, b));
            exclude.push(text.trim().to_string());
        }
        let reserved = merge(reserved);

        let (routes, dns) = if new {
            (
                netconf::routes(&spec.routes, family)?,
                netconf::dns(&spec.dns)?,
            )
        } else {
            (spec.routes.clone(), spec.dns.clone())
        };
        if let Some(c) = spec.cooldown_seconds
            && c > MAX_COOLDOWN_SECONDS
        {
            return Err(FieldError::new(
                "cooldown_seconds",
                format!("{c} is longer than the maximum {MAX_COOLDOWN_SECONDS} (30 days)"),
            ));
        }

        let subnet = Subnet {
            name,
            zone: spec.zone.clone(),
            cidr,
            gateway,
            exclude,
            routes,
            dns,
            cooldown_seconds: spec.cooldown_seconds,
            reserved,
        };
        if subnet.capacity() == 0 {
            return Err(FieldError::new(
                "exclude",
                format!("no address of {cidr} is left to hand out"),
            ));
        }
        Ok(subnet)
    }

    /// The spec this subnet was built from, in canonical form; what the store keeps.
    pub fn to_spec(&self) -> SubnetSpec {
        SubnetSpec {
            name: Some(self.name.clone()),
            zone: self.zone.clone(),
            cidr: self.cidr.to_string(),
            gateway: Some(match self.gateway {
                Some(g) => g.to_string(),
                None => "none".into(),
            }),
            exclude: self.exclude.clone(),
            routes: self.routes.clone(),
            dns: self.dns.clone(),
            cooldown_seconds: self.cooldown_seconds,
        }
    }

    pub fn family(&self) -> Family {
        self.cidr.family()
    }

    pub fn reserved(&self) -> &[(u128, u128)] {
        &self.reserved
    }

    pub fn is_reserved(&self, offset: u128) -> bool {
        let i = self.reserved.partition_point(|&(_, b)| b < offset);
        self.reserved.get(i).is_some_and(|&(a, _)| a <= offset)
    }

    /// Addresses that can ever be handed out.
    pub fn capacity(&self) -> u128 {
        let reserved: u128 = self.reserved.iter().map(|&(a, b)| b - a + 1).sum();
        self.cidr.size().saturating_sub(reserved)
    }
}

fn parse_exclusion(cidr: &Cidr, text: &str) -> Result<(u128, u128), String> {
    let offset = |s: &str| -> Result<u128, String> {
        let ip: IpAddr = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address"))?;
        cidr.offset_of(ip)
            .ok_or_else(|| format!("{ip} is outside {cidr}"))
    };
    if let Some((a, b)) = text.split_once('-') {
        let (a, b) = (offset(a)?, offset(b)?);
        if a > b {
            return Err(format!("range {text:?} ends before it starts"));
        }
        Ok((a, b))
    } else if text.contains('/') {
        let inner: Cidr = text.parse()?;
        let a = cidr
            .offset_of(inner.base())
            .filter(|_| inner.prefix() >= cidr.prefix())
            .ok_or_else(|| format!("{inner} is not inside {cidr}"))?;
        Ok((a, a + (inner.size() - 1)))
    } else {
        let a = offset(text)?;
        Ok((a, a))
    }
}

fn merge(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cidr: &str) -> SubnetSpec {
        SubnetSpec {
            zone: "z1".into(),
            cidr: cidr.into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults() {
        let s = Subnet::from_spec(&spec("10.9.0.0/24")).unwrap();
        assert_eq!(s.name, "10.9.0.0-24");
        assert_eq!(s.gateway, Some("10.9.0.1".parse().unwrap()));
        // network, gateway, broadcast
        assert_eq!(s.capacity(), 253);
        assert!(s.is_reserved(0) && s.is_reserved(1) && s.is_reserved(255));
        assert!(!s.is_reserved(2));
    }

    #[test]
    fn exclusions_and_no_gateway() {
        let mut sp = spec("10.9.0.0/24");
        sp.gateway = Some("none".into());
        sp.exclude = vec![
            "10.9.0.10-10.9.0.19".into(),
            "10.9.0.128/25".into(),
            "10.9.0.5".into(),
        ];
        let s = Subnet::from_spec(&sp).unwrap();
        assert_eq!(s.gateway, None);
        // 256 - network - (10 + 128 incl. broadcast) - 1
        assert_eq!(s.capacity(), 256 - 1 - 10 - 128 - 1);
        assert!(s.is_reserved(15) && s.is_reserved(5) && s.is_reserved(200));
    }

    #[test]
    fn ipv6_64_is_not_enumerated() {
        let s = Subnet::from_spec(&spec("fd00:9::/64")).unwrap();
        assert_eq!(s.capacity(), (1u128 << 64) - 2);
    }

    #[test]
    fn point_to_point_has_no_reserved_addresses() {
        let s = Subnet::from_spec(&spec("10.9.0.0/31")).unwrap();
        assert_eq!(s.gateway, None);
        assert_eq!(s.capacity(), 2);
    }

    #[test]
    fn errors_name_the_field() {
        type Case = (&'static str, fn(&mut SubnetSpec), &'static str);
        let cases: &[Case] = &[
            ("cidr", |s| s.cidr = "10.9.0.1/24".into(), "host bits"),
            ("cidr", |s| s.cidr = "nope".into(), "not a CIDR"),
            ("cidr", |s| s.cidr = "0.0.0.0/4".into(), "too large"),
            (
                "gateway",
                |s| s.gateway = Some("10.8.0.1".into()),
                "outside",
            ),
            (
                "gateway",
                |s| s.gateway = Some("10.9.0.255".into()),
                "broadcast",
            ),
            ("gateway", |s| s.gateway = Some("x".into()), "not an IP"),
            (
                "exclude[0]",
                |s| s.exclude = vec!["10.9.1.1".into()],
                "outside",
            ),
            (
                "exclude[0]",
                |s| s.exclude = vec!["10.9.0.9-10.9.0.1".into()],
                "ends before",
            ),
            (
                "exclude",
                |s| s.exclude = vec!["10.9.0.0/24".into()],
                "no address",
            ),
            (
                "routes[0].dst",
                |s| {
                    s.routes = vec![Route {
                        dst: "fd00::/8".into(),
                        gw: None,
                    }]
                },
                "IPv4",
            ),
            (
                "routes[0].gw",
                |s| {
                    s.routes = vec![Route {
                        dst: "0.0.0.0/0".into(),
                        gw: Some("q".into()),
                    }]
                },
                "not an IP",
            ),
            (
                "dns.nameservers[0]",
                |s| s.dns.nameservers = vec!["dns".into()],
                "not an IP",
            ),
            ("zone", |s| s.zone = "".into(), "empty"),
            ("name", |s| s.name = Some("a/b".into()), "contains"),
            ("name", |s| s.name = Some(".".into()), "URL path segment"),
            ("name", |s| s.name = Some("..".into()), "URL path segment"),
            ("cidr", |s| s.cidr = "224.0.0.0/24".into(), "multicast"),
            ("cidr", |s| s.cidr = "127.0.0.0/24".into(), "loopback"),
            (
                "cidr",
                |s| s.cidr = "::ffff:10.9.0.0/120".into(),
                "IPv4-mapped",
            ),
            ("cidr", |s| s.cidr = "ff02::/64".into(), "multicast"),
            (
                "dns.search[0]",
                |s| s.dns.search = vec!["a\nb".into()],
                "contains",
            ),
            (
                "cooldown_seconds",
                |s| s.cooldown_seconds = Some(u64::MAX),
                "maximum",
            ),
        ];
        for (field, mutate, needle) in cases {
            let mut sp = spec("10.9.0.0/24");
            mutate(&mut sp);
            let e = Subnet::from_spec(&sp).unwrap_err();
            assert_eq!(e.field, *field, "{e}");
            assert!(e.message.contains(needle), "{field}: {e}");
        }
    }

    /// A store written by an earlier version may hold a subnet today's rules refuse; it is still
    /// read back (NetHouse must start to serve its leases), with the fields as stored.
    #[test]
    fn stored_subnets_load_under_rules_added_since() {
        let mut sp = spec("224.0.0.0/24");
        sp.name = Some("..".into());
        sp.dns.domain = Some("a\nb".into());
        assert!(Subnet::from_spec(&sp).is_err());
        let s = Subnet::from_stored(&sp).unwrap();
        assert_eq!(
            (s.name.as_str(), s.dns.domain.as_deref()),
            ("..", Some("a\nb"))
        );
    }

    #[test]
    fn spec_round_trip() {
        let mut sp = spec("10.9.0.0/24");
        sp.exclude = vec!["10.9.0.7".into()];
        sp.cooldown_seconds = Some(30);
        let s = Subnet::from_spec(&sp).unwrap();
        assert_eq!(Subnet::from_spec(&s.to_spec()).unwrap(), s);
    }
}
