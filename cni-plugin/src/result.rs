//! The IPAM result, printed in the version the config asked for: `ips[].version` for versions
//! below 1.0.0, absent from 1.0.0 on; no `interfaces` (an IPAM plugin does not create any).

use nethouse_api::{AllocateResponse, Dns};
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Serialize)]
struct Route<'a> {
    dst: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    gw: Option<&'a str>,
}

fn pre_1_0(version: &str) -> bool {
    matches!(version, "0.3.0" | "0.3.1" | "0.4.0")
}

pub fn render(version: &str, resp: &AllocateResponse) -> Value {
    let mut ips = Vec::new();
    let mut routes = Vec::new();
    let mut dns = Dns::default();
    for cfg in &resp.ips {
        let mut ip = json!({ "address": cfg.address });
        if let Some(gw) = cfg.gateway {
            ip["gateway"] = json!(gw.to_string());
        }
        if pre_1_0(version) {
            ip["version"] = json!(if cfg.address.contains(':') { "6" } else { "4" });
        }
        ips.push(ip);
        for r in &cfg.routes {
            routes.push(Route {
                dst: &r.dst,
                gw: r.gw.as_deref(),
            });
        }
        // Nameservers of every subnet, in order, without repeats.
        for ns in &cfg.dns.nameservers {
            if !dns.nameservers.contains(ns) {
                dns.nameservers.push(ns.clone());
            }
        }
        if dns.domain.is_none() {
            dns.domain.clone_from(&cfg.dns.domain);
        }
        for s in &cfg.dns.search {
            if !dns.search.contains(s) {
                dns.search.push(s.clone());
            }
        }
        for o in &cfg.dns.options {
            if !dns.options.contains(o) {
                dns.options.push(o.clone());
            }
        }
    }
    let mut out = json!({ "cniVersion": version, "ips": ips });
    if !routes.is_empty() {
        out["routes"] = json!(routes);
    }
    if !dns.is_empty() {
        out["dns"] = json!(dns);
    }
    out
}

/// The addresses (`10.9.0.7/24` form) of a previous result, for CHECK.
pub fn prev_addresses(prev: &Value) -> Vec<String> {
    prev.get("ips")
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| {
                    ip.get("address")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nethouse_api::{IpConfig, Lease, LeaseKind, Route as ApiRoute};

    fn resp() -> AllocateResponse {
        AllocateResponse {
            lease: Lease {
                kind: LeaseKind::Ephemeral,
                owner: None,
                zone: "z".into(),
                ips: vec![],
                attachment: None,
                created_unix_ms: 0,
                updated_unix_ms: 0,
            },
            ips: vec![
                IpConfig {
                    address: "10.9.0.7/24".into(),
                    gateway: Some("10.9.0.1".parse().unwrap()),
                    routes: vec![ApiRoute {
                        dst: "0.0.0.0/0".into(),
                        gw: None,
                    }],
                    dns: Dns {
                        nameservers: vec!["10.9.0.10".into()],
                        ..Default::default()
                    },
                    subnet: "s4".into(),
                },
                IpConfig {
                    address: "fd00::7/64".into(),
                    gateway: None,
                    routes: vec![],
                    dns: Dns {
                        nameservers: vec!["10.9.0.10".into()],
                        ..Default::default()
                    },
                    subnet: "s6".into(),
                },
            ],
        }
    }

    #[test]
    fn shape_per_version() {
        let v1 = render("1.0.0", &resp());
        assert_eq!(
            v1,
            json!({"cniVersion":"1.0.0",
                "ips":[{"address":"10.9.0.7/24","gateway":"10.9.0.1"},{"address":"fd00::7/64"}],
                "routes":[{"dst":"0.0.0.0/0"}],
                "dns":{"nameservers":["10.9.0.10"]}})
        );
        let old = render("0.4.0", &resp());
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["ips"][1]["version"], "6");
        assert!(old.get("interfaces").is_none());
        assert_eq!(prev_addresses(&v1), vec!["10.9.0.7/24", "fd00::7/64"]);
    }
}
