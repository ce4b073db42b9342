//! The real CNI chain in real network namespaces (needs root and Debian's
//! containernetworking-plugins): Debian's `bridge` and `macvlan` as main plugin execute
//! `nethouse-cni` as IPAM against a real NetHouse, and the interfaces get NetHouse's addresses.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Call, Cni, Nethouse, conf, subnet, without_pod_annotations};
use nethouse_api::{LeaseKind, RefusalReason, Route};
use serde_json::{Value, json};

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn require_root() {
    let uid = sh(&["id", "-u"]);
    assert_eq!(
        uid.trim(),
        "0",
        "these tests create network namespaces and need root"
    );
    assert!(
        std::path::Path::new("/usr/lib/cni/bridge").exists(),
        "install containernetworking-plugins"
    );
}

/// Deleted on drop, also when the test fails.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("nh{}{tag}", std::process::id() % 100_000);
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name]);
        Netns(name)
    }

    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }

    fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.0];
        all.extend_from_slice(args);
        sh(&all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

struct Link(String);

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

fn link_name(tag: &str) -> String {
    format!("nh{}{tag}", std::process::id() % 100_000)
}

fn main_plugin_call(
    binary: &str,
    command: &'static str,
    cid: &str,
    ns: &Netns,
    pod: (&str, &str),
    conf: &Value,
) -> Call {
    let call = Cni {
        netns: Box::leak(ns.path().into_boxed_str()),
        ..Cni::new(command, Box::leak(cid.to_string().into_boxed_str())).pod(pod.0, pod.1)
    };
    call.run_binary(binary, &conf.to_string())
}

fn address_in(ns: &Netns) -> String {
    let out = ns.exec(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("no IPv4 address on eth0: {out}"))
        .to_string()
}

#[test]
fn bridge_chain_fixed_and_ordinary_pods() {
    require_root();
    let nh = Nethouse::start(Duration::from_secs(3600));
    let mut s = subnet("z1", "10.98.0.0/24");
    s.routes = vec![Route {
        dst: "0.0.0.0/0".into(),
        gw: None,
    }];
    nh.add_subnet(s);
    let bridge = Link(link_name("br"));
    let with_bridge = |fixed: Option<bool>| {
        let mut c = conf("1.0.0", &nh.url, "z1", "n1", fixed);
        c["bridge"] = json!(bridge.0);
        c["isGateway"] = json!(true);
        c
    };
    let bridge_bin = "/usr/lib/cni/bridge";

    // A StatefulSet pod: its interface gets NetHouse's address and route, and it reaches its gateway.
    let ns1 = Netns::new("a");
    let add = main_plugin_call(
        bridge_bin,
        "ADD",
        "redis0-sb1",
        &ns1,
        ("db", "redis-0"),
        &with_bridge(Some(true)),
    );
    add.ok();
    let result = add.json();
    let ip = result["ips"][0]["address"].as_str().unwrap().to_string();
    assert!(
        ip.starts_with("10.98.0.") && ip.ends_with("/24"),
        "{result}"
    );
    assert_eq!(address_in(&ns1), ip);
    let routes = ns1.exec(&["ip", "-4", "route"]);
    assert!(
        routes.contains("default via 10.98.0.1 dev eth0"),
        "{routes}"
    );
    ns1.exec(&["ping", "-c", "1", "-W", "2", "10.98.0.1"]);
    let lease = nh
        .rt
        .block_on(
            nh.client()
                .lease_by_ip(ip.split('/').next().unwrap().parse().unwrap()),
        )
        .unwrap();
    assert_eq!(lease.attachment.unwrap().container_id, "redis0-sb1");

    // The pod is deleted (DEL) and recreated with a new sandbox: the same address.
    main_plugin_call(
        bridge_bin,
        "DEL",
        "redis0-sb1",
        &ns1,
        ("db", "redis-0"),
        &with_bridge(Some(true)),
    )
    .ok();
    drop(ns1);
    let ns2 = Netns::new("b");
    let again = main_plugin_call(
        bridge_bin,
        "ADD",
        "redis0-sb2",
        &ns2,
        ("db", "redis-0"),
        &with_bridge(Some(true)),
    );
    again.ok();
    assert_eq!(address_in(&ns2), ip, "same name, same IP");

    // CHECK through the main plugin passes while NetHouse holds the attachment.
    let mut check = with_bridge(Some(true));
    check["prevResult"] = again.json();
    main_plugin_call(
        bridge_bin,
        "CHECK",
        "redis0-sb2",
        &ns2,
        ("db", "redis-0"),
        &check,
    )
    .ok();

    // An ordinary pod: its address ends at DEL and is not reused inside the cooldown.
    let ns3 = Netns::new("c");
    let web = main_plugin_call(
        bridge_bin,
        "ADD",
        "web-sb1",
        &ns3,
        ("web", "nginx-1"),
        &with_bridge(None),
    );
    let web_ip = web.json()["ips"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(address_in(&ns3), web_ip);
    main_plugin_call(
        bridge_bin,
        "DEL",
        "web-sb1",
        &ns3,
        ("web", "nginx-1"),
        &with_bridge(None),
    )
    .ok();
    // DEL twice, and DEL without a netns, succeed.
    main_plugin_call(
        bridge_bin,
        "DEL",
        "web-sb1",
        &ns3,
        ("web", "nginx-1"),
        &with_bridge(None),
    )
    .ok();
    assert!(
        nh.rt
            .block_on(
                nh.client()
                    .lease_by_ip(web_ip.split('/').next().unwrap().parse().unwrap())
            )
            .is_err()
    );
    let ns4 = Netns::new("d");
    let next = main_plugin_call(
        bridge_bin,
        "ADD",
        "web-sb2",
        &ns4,
        ("web", "nginx-2"),
        &with_bridge(None),
    );
    assert_ne!(
        next.json()["ips"][0]["address"].as_str().unwrap(),
        web_ip,
        "cooling address not reused"
    );
    main_plugin_call(
        bridge_bin,
        "DEL",
        "web-sb2",
        &ns4,
        ("web", "nginx-2"),
        &with_bridge(None),
    )
    .ok();
    main_plugin_call(
        bridge_bin,
        "DEL",
        "redis0-sb2",
        &ns2,
        ("db", "redis-0"),
        &with_bridge(Some(true)),
    )
    .ok();
}

/// macvlan over a veth end as master: this machine's kernel has no `dummy` link type (the
/// issue suggested one), and a veth end serves the same purpose — an L2 device to hang on.
#[test]
fn macvlan_over_a_veth_master() {
    require_root();
    let nh = Nethouse::start(Duration::from_secs(60));
    nh.add_subnet(subnet("z1", "10.99.0.0/24"));
    let master = Link(link_name("ma"));
    let peer = link_name("mb");
    sh(&[
        "ip", "link", "add", &master.0, "type", "veth", "peer", "name", &peer,
    ]);
    sh(&["ip", "link", "set", &master.0, "up"]);
    sh(&["ip", "link", "set", &peer, "up"]);
    let mut c = conf("0.4.0", &nh.url, "z1", "n1", Some(true));
    c["type"] = json!("macvlan");
    c["master"] = json!(master.0);
    c["mode"] = json!("bridge");
    let macvlan = "/usr/lib/cni/macvlan";
    let ns1 = Netns::new("m1");
    let first = main_plugin_call(macvlan, "ADD", "zk0-sb1", &ns1, ("db", "zk-0"), &c);
    first.ok();
    let ip = first.json()["ips"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        first.json()["ips"][0]["version"],
        "4",
        "0.4.0 results carry ips[].version"
    );
    assert_eq!(address_in(&ns1), ip);
    // The node dies: no DEL; the pod is recreated elsewhere with a new sandbox.
    let ns2 = Netns::new("m2");
    let second = main_plugin_call(macvlan, "ADD", "zk0-sb2", &ns2, ("db", "zk-0"), &c);
    second.ok();
    assert_eq!(address_in(&ns2), ip);
    main_plugin_call(macvlan, "DEL", "zk0-sb2", &ns2, ("db", "zk-0"), &c).ok();
    main_plugin_call(macvlan, "DEL", "zk0-sb1", &ns1, ("db", "zk-0"), &c).ok();
}

/// A node whose conflist lacks the pod-annotations capability: the bridge plugin hands on
/// nethouse-cni's error 7 and its message, the pod's interface gets no address, NetHouse counts
/// the refusal and holds no lease; DEL works. With the capability the same pod gets its fixed
/// address.
#[test]
fn bridge_chain_without_the_pod_annotations_capability() {
    require_root();
    let nh = Nethouse::start(Duration::from_secs(60));
    nh.add_subnet(subnet("z1", "10.97.0.0/24"));
    let refused = r#"nethouse_cni_refused_total{reason="pod_annotations_missing"}"#;
    let bridge = Link(link_name("bn"));
    let mut with = conf("1.0.0", &nh.url, "z1", "n1", Some(true));
    with["bridge"] = json!(bridge.0);
    let without = without_pod_annotations(with.clone());
    let bridge_bin = "/usr/lib/cni/bridge";
    let pod = ("db", "redis-0");

    let ns1 = Netns::new("n1");
    let add = main_plugin_call(bridge_bin, "ADD", "redis0-nb1", &ns1, pod, &without);
    let e = add.err(7);
    assert_eq!(
        e["msg"],
        nethouse_cni::refusal::message(RefusalReason::PodAnnotationsMissing),
        "{add:?}"
    );
    let addresses = ns1.exec(&["ip", "-4", "-o", "addr", "show"]);
    assert!(!addresses.contains("10.97.0."), "{addresses}");
    assert_eq!(nh.metric(refused), 1.0);
    let leases = nh
        .rt
        .block_on(nh.client().list_all_leases(&Default::default()))
        .unwrap();
    assert!(leases.is_empty(), "{leases:?}");
    main_plugin_call(bridge_bin, "DEL", "redis0-nb1", &ns1, pod, &without).ok();
    drop(ns1);

    let ns2 = Netns::new("n2");
    let add = main_plugin_call(bridge_bin, "ADD", "redis0-nb2", &ns2, pod, &with);
    add.ok();
    let ip = add.json()["ips"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(address_in(&ns2), ip);
    let lease = nh
        .rt
        .block_on(
            nh.client()
                .lease_by_ip(ip.split('/').next().unwrap_or_default().parse().unwrap()),
        )
        .unwrap();
    assert_eq!(lease.kind, LeaseKind::Fixed);
    main_plugin_call(bridge_bin, "DEL", "redis0-nb2", &ns2, pod, &with).ok();
    assert_eq!(nh.metric(refused), 1.0);
}
