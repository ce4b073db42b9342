//! The files Whereabouts reads on a node, as its install writes them: the network's conflist
//! (the main plugin with `whereabouts` as IPAM and the zone's range), the plugin's own
//! configuration file (where its datastore is: the Kubernetes API, through a kubeconfig) and
//! that kubeconfig. Pure text, so the formats are unit-tested.

use std::net::Ipv4Addr;

use anyhow::Context;
use serde_json::json;

use crate::realnode::fabric::Zone;

/// Where the plugin looks for its configuration file by default, and where its DaemonSet puts
/// that file and the kubeconfig: beside the conflists, so only `/etc/cni/net.d` is needed.
pub const DIR: &str = "/etc/cni/net.d/whereabouts.d";
/// The kubeconfig's CA file, in [`DIR`].
pub const CA_FILE: &str = "/etc/cni/net.d/whereabouts.d/ca.crt";
pub const KUBECONFIG: &str = "/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig";
pub const CONF_FILE: &str = "/etc/cni/net.d/whereabouts.d/whereabouts.conf";
/// The conflist containerd loads (the only one on the node).
pub const CONFLIST: &str = "/etc/cni/net.d/10-whereabouts.conflist";
/// The plugin's log, errors only: its default is every debug line on containerd's stderr.
const LOG_FILE: &str = "/var/log/whereabouts.log";
/// The name kube-apiserver's certificate has: nodes dial the fabric's address, which it lacks
/// (as the nodes' kubelets do).
const APISERVER_NAME: &str = "kubernetes";

/// The network of `zone`'s nodes: a macvlan (mode bridge) on `master` like the shipped
/// NetHouse template, Whereabouts handing out the zone's subnet minus its gateway and node
/// addresses (as NetHouse's subnets exclude them), default route via the zone's gateway.
pub fn conflist(zone: &Zone, master: &str) -> anyhow::Result<String> {
    let gateway = zone.gateway().to_string();
    let exclude = exclude_cidrs(&zone.reserved())?;
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "whereabouts",
        "plugins": [{
            "type": "macvlan",
            "master": master,
            "mode": "bridge",
            "ipam": {
                "type": "whereabouts",
                "range": zone.cidr(),
                "exclude": exclude,
                "gateway": gateway,
                "routes": [{"dst": "0.0.0.0/0", "gw": gateway}],
                "log_file": LOG_FILE,
                "log_level": "error",
            },
        }],
    });
    Ok(serde_json::to_string_pretty(&conf)?)
}

/// The plugin's configuration file: its datastore is the Kubernetes API, as its DaemonSet
/// writes it (the reconciler's schedule it also writes is read by the reconciler only).
pub fn plugin_conf() -> String {
    let conf = json!({
        "datastore": "kubernetes",
        "kubernetes": {"kubeconfig": KUBECONFIG},
    });
    conf.to_string()
}

/// A kubeconfig for the plugin: the ServiceAccount's token, namespace `namespace` (where
/// Whereabouts keeps its pools and its lock).
pub fn kubeconfig(server: &str, token: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {server}\n\
         \x20   certificate-authority: {CA_FILE}\n    tls-server-name: {APISERVER_NAME}\n\
         users:\n- name: whereabouts\n  user:\n    token: {token:?}\n\
         contexts:\n- name: whereabouts\n  context:\n    cluster: local\n    user: whereabouts\n\
         \x20   namespace: {namespace}\ncurrent-context: whereabouts\n"
    )
}

/// `a.b.c.d-e.f.g.h` (what `Zone::reserved` gives) as the fewest CIDRs covering exactly that
/// range: Whereabouts' `exclude` takes CIDRs only.
pub fn exclude_cidrs(range: &str) -> anyhow::Result<Vec<String>> {
    let (first, last) = range
        .split_once('-')
        .with_context(|| format!("{range:?} is not FIRST-LAST"))?;
    let parse = |s: &str| {
        s.trim()
            .parse::<Ipv4Addr>()
            .with_context(|| format!("{s:?} in {range:?}"))
    };
    let (mut at, last) = (u32::from(parse(first)?), u32::from(parse(last)?));
    anyhow::ensure!(at <= last, "{range:?} ends before it starts");
    let mut out = Vec::new();
    loop {
        // The largest block aligned at `at` that does not pass `last`.
        let mut bits = at.trailing_zeros();
        while bits > 0 && u64::from(at) + (1u64 << bits) - 1 > u64::from(last) {
            bits -= 1;
        }
        out.push(format!("{}/{}", Ipv4Addr::from(at), 32 - bits));
        let next = u64::from(at) + (1u64 << bits);
        if next > u64::from(last) {
            return Ok(out);
        }
        at = u32::try_from(next).context("past the address space")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_range_becomes_the_fewest_exact_cidrs() {
        let cases: &[(&str, &[&str])] = &[
            (
                "10.61.1.1-10.61.1.49",
                &[
                    "10.61.1.1/32",
                    "10.61.1.2/31",
                    "10.61.1.4/30",
                    "10.61.1.8/29",
                    "10.61.1.16/28",
                    "10.61.1.32/28",
                    "10.61.1.48/31",
                ],
            ),
            ("10.0.0.0-10.0.0.255", &["10.0.0.0/24"]),
            ("10.0.0.7-10.0.0.7", &["10.0.0.7/32"]),
            ("0.0.0.0-255.255.255.255", &["0.0.0.0/0"]),
            ("255.255.255.254-255.255.255.255", &["255.255.255.254/31"]),
        ];
        for (range, want) in cases {
            assert_eq!(exclude_cidrs(range).unwrap(), *want, "{range}");
        }
        for bad in ["10.0.0.9-10.0.0.1", "10.0.0.1", "x-10.0.0.1", "10.0.0.1-"] {
            assert!(exclude_cidrs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conflist_has_the_zone_range_and_route() {
        let zone = Zone {
            name: "z2".into(),
            index: 2,
        };
        let v: serde_json::Value = serde_json::from_str(&conflist(&zone, "eth0").unwrap()).unwrap();
        let p = &v["plugins"][0];
        assert_eq!(
            (p["type"].as_str(), p["master"].as_str()),
            (Some("macvlan"), Some("eth0"))
        );
        let ipam = &p["ipam"];
        assert_eq!(ipam["type"], "whereabouts");
        assert_eq!(ipam["range"], "10.61.2.0/24");
        assert_eq!(ipam["gateway"], "10.61.2.1");
        assert_eq!(ipam["routes"][0]["gw"], "10.61.2.1");
        assert_eq!(ipam["exclude"].as_array().map(Vec::len), Some(7));
        let conf: serde_json::Value = serde_json::from_str(&plugin_conf()).unwrap();
        assert_eq!(conf["kubernetes"]["kubeconfig"], KUBECONFIG);
        let kc = kubeconfig("https://10.61.0.1:6443", "t.o.k", "kube-system");
        assert!(kc.contains("token: \"t.o.k\"") && kc.contains("namespace: kube-system"));
    }
}
