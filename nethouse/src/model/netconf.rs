//! The routes and DNS settings of a subnet, validated as the CNI result that carries them to
//! every pod requires: routes are CIDRs of the subnet's family with an IP gateway of the same
//! family; nameservers are IPs; domain and search entries are DNS names; options are resolver
//! options. Counts are bounded, and nothing may hold a control character or whitespace, which
//! would end up in a pod's resolv.conf or route table.

use std::net::IpAddr;

use nethouse_api::{Dns, Route};

use super::FieldError;
use super::cidr::{Cidr, Family};

/// Routes of one subnet; a pod's route table needs a handful.
pub const MAX_ROUTES: usize = 128;
/// Nameservers; resolv.conf uses the first 3, so more than this is a mistake.
pub const MAX_NAMESERVERS: usize = 8;
/// Search domains; Kubernetes allows a pod 32.
pub const MAX_SEARCH: usize = 32;
/// Resolver options (`ndots:5`, `edns0`, ...).
pub const MAX_OPTIONS: usize = 32;
/// A DNS name in text form (RFC 1035 2.3.4, without a trailing dot).
pub const MAX_DNS_NAME: usize = 253;
/// One resolver option, name and value.
pub const MAX_OPTION: usize = 64;

fn at_most(field: &str, len: usize, max: usize, what: &str) -> Result<(), FieldError> {
    if len > max {
        return Err(FieldError::new(
            field,
            format!("at most {max} {what}, got {len}"),
        ));
    }
    Ok(())
}

/// A value quoted for a message, cut short: a refused value can be megabytes long.
fn shown(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((i, _)) => format!("{:?}...", &text[..i]),
        None => format!("{text:?}"),
    }
}

fn ip(field: &str, text: &str) -> Result<IpAddr, FieldError> {
    text.trim()
        .parse()
        .map_err(|_| FieldError::new(field, format!("{} is not an IP address", shown(text))))
}

/// The routes in canonical form.
pub fn routes(routes: &[Route], family: Family) -> Result<Vec<Route>, FieldError> {
    at_most("routes", routes.len(), MAX_ROUTES, "routes")?;
    let mut out = Vec::with_capacity(routes.len());
    for (i, r) in routes.iter().enumerate() {
        let field = format!("routes[{i}].dst");
        let text = r.dst.trim();
        // The longest CIDR text is ~50 characters; a longer value is not echoed whole.
        if text.len() > 64 {
            return Err(FieldError::new(
                field,
                format!("{} is not a CIDR", shown(text)),
            ));
        }
        let dst: Cidr = text
            .parse()
            .map_err(|e: String| FieldError::new(&field, e))?;
        if dst.family() != family {
            return Err(FieldError::new(
                field,
                format!("{dst} is not {} like the subnet", family.as_str()),
            ));
        }
        let gw = match &r.gw {
            Some(g) => {
                let field = format!("routes[{i}].gw");
                let gw = ip(&field, g)?;
                if Family::of(&gw) != family {
                    return Err(FieldError::new(
                        field,
                        format!("{gw} is not {}", family.as_str()),
                    ));
                }
                Some(gw.to_string())
            }
            None => None,
        };
        out.push(Route {
            dst: dst.to_string(),
            gw,
        });
    }
    Ok(out)
}

/// The DNS settings with nameservers in canonical form.
pub fn dns(dns: &Dns) -> Result<Dns, FieldError> {
    let f = "dns.nameservers";
    at_most(f, dns.nameservers.len(), MAX_NAMESERVERS, "nameservers")?;
    let mut nameservers = Vec::with_capacity(dns.nameservers.len());
    for (i, ns) in dns.nameservers.iter().enumerate() {
        nameservers.push(ip(&format!("{f}[{i}]"), ns)?.to_string());
    }
    if let Some(d) = &dns.domain {
        dns_name("dns.domain", d)?;
    }
    at_most("dns.search", dns.search.len(), MAX_SEARCH, "search domains")?;
    for (i, s) in dns.search.iter().enumerate() {
        dns_name(&format!("dns.search[{i}]"), s)?;
    }
    at_most("dns.options", dns.options.len(), MAX_OPTIONS, "options")?;
    for (i, o) in dns.options.iter().enumerate() {
        option(&format!("dns.options[{i}]"), o)?;
    }
    Ok(Dns {
        nameservers,
        ..dns.clone()
    })
}

/// A DNS name: dot-separated labels of 1 to 63 letters, digits, '-' or '_', at most 253
/// characters, an optional final dot.
fn dns_name(field: &str, text: &str) -> Result<(), FieldError> {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() || name.len() > MAX_DNS_NAME {
        return Err(FieldError::new(
            field,
            format!(
                "must be a DNS name of 1 to {MAX_DNS_NAME} characters, got {}",
                name.len()
            ),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(FieldError::new(
            field,
            format!(
                "{} contains {c:?}; a DNS name has letters, digits, '-', '_' and dots",
                shown(text)
            ),
        ));
    }
    if name.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err(FieldError::new(
            field,
            format!(
                "{} has an empty label or one longer than 63 characters",
                shown(text)
            ),
        ));
    }
    Ok(())
}

/// A resolver option: `NAME` or `NAME:VALUE` of letters, digits, '-', '_' and '.'.
fn option(field: &str, text: &str) -> Result<(), FieldError> {
    if text.is_empty() || text.len() > MAX_OPTION {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {MAX_OPTION} characters, got {}", text.len()),
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(FieldError::new(
            field,
            format!(
                "{} contains {c:?}; a resolver option is NAME or NAME:VALUE",
                shown(text)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, gw: Option<&str>) -> Route {
        Route {
            dst: dst.into(),
            gw: gw.map(Into::into),
        }
    }

    #[test]
    fn routes_are_canonical_and_of_the_family() {
        let got = routes(&[route(" 0.0.0.0/0", Some("10.9.0.1 "))], Family::V4).unwrap();
        assert_eq!(got, vec![route("0.0.0.0/0", Some("10.9.0.1"))]);
        let many = vec![route("10.0.0.0/8", None); MAX_ROUTES + 1];
        let cases: Vec<(Vec<Route>, &str, &str)> = vec![
            (many, "routes", "at most 128 routes, got 129"),
            (vec![route("fd00::/8", None)], "routes[0].dst", "not IPv4"),
            (
                vec![route("10.0.0.1/8", None)],
                "routes[0].dst",
                "host bits",
            ),
            (
                vec![route("10.0.0.0/8", Some("fd00::1"))],
                "routes[0].gw",
                "not IPv4",
            ),
            (
                vec![route("10.0.0.0/8", Some("10.0.0.1\nnameserver 1.1.1.1"))],
                "routes[0].gw",
                "not an IP address",
            ),
        ];
        for (rs, field, needle) in cases {
            let e = routes(&rs, Family::V4).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.message.contains(needle), "{e}");
        }
    }

    #[test]
    fn dns_is_what_a_resolver_can_take() {
        let good = Dns {
            nameservers: vec![" 10.9.0.10".into(), "fd00::53".into()],
            domain: Some("cluster.local.".into()),
            search: vec!["svc.cluster.local".into(), "_tcp.example".into()],
            options: vec!["ndots:5".into(), "edns0".into()],
        };
        assert_eq!(
            dns(&good).unwrap().nameservers,
            vec!["10.9.0.10", "fd00::53"]
        );
        let huge = "a".repeat(1 << 20);
        type Case = (fn(&mut Dns), &'static str, &'static str);
        let cases: Vec<Case> = vec![
            (
                |d| d.nameservers = vec!["dns".into()],
                "dns.nameservers[0]",
                "not an IP",
            ),
            (
                |d| d.nameservers = vec!["10.0.0.1".into(); 9],
                "dns.nameservers",
                "at most 8 nameservers, got 9",
            ),
            (
                |d| d.domain = Some("example.com\nnameserver 6.6.6.6".into()),
                "dns.domain",
                "contains '\\n'",
            ),
            (|d| d.domain = Some(String::new()), "dns.domain", "1 to 253"),
            (
                |d| d.search = vec!["a..b".into()],
                "dns.search[0]",
                "empty label",
            ),
            (
                |d| d.search = vec![format!("{}.com", "x".repeat(64))],
                "dns.search[0]",
                "longer than 63",
            ),
            (
                |d| d.search = vec!["x".into(); 33],
                "dns.search",
                "at most 32 search domains",
            ),
            (
                |d| d.options = vec!["ndots 5".into()],
                "dns.options[0]",
                "contains ' '",
            ),
            (
                |d| d.options = vec!["o".into(); 33],
                "dns.options",
                "at most 32 options",
            ),
        ];
        for (mutate, field, needle) in cases {
            let mut d = good.clone();
            mutate(&mut d);
            let e = dns(&d).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.message.contains(needle), "{field}: {e}");
        }
        let mut d = good.clone();
        d.search = vec![huge];
        let e = dns(&d).unwrap_err();
        assert!(e.message.contains("got 1048576"), "{e}");
        assert!(e.message.len() < 200, "the value is not echoed whole");
    }
}
