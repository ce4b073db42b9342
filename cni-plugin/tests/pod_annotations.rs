//! A conflist entry without the pod-annotations capability: the runtime then sends no
//! `runtimeConfig`, and the plugin cannot tell a fixed pod from an ordinary one. The real
//! `nethouse-cni` binary against a real NetHouse: such a pod gets CNI error 7 naming the fix,
//! NetHouse counts it (`nethouse_cni_refused_total`), no lease is made, DEL still works, and
//! the same pod with its annotations gets its fixed address. Without NetHouse the answer is the
//! same error 7, never an ordinary address.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Cni, Nethouse, conf, subnet, without_pod_annotations};
use nethouse_api::{LeaseKind, Owner, codes};
use serde_json::{Value, json};

const REFUSED: &str = r#"nethouse_cni_refused_total{reason="pod_annotations_missing"}"#;

/// The message a user reads in the pod's `FailedCreatePodSandBox` event.
const MESSAGE: &str = r#"no pod annotations reached nethouse-cni, so it cannot tell whether the pod asks for a fixed IP (nethouse.io/fixed-ip) and gives it no address: the main plugin's entry in plugins[] of the node's CNI conflist needs "capabilities": {"io.kubernetes.cri.pod-annotations": true}"#;

fn owner(pod: &str) -> Owner {
    Owner {
        cluster: "test".into(),
        namespace: "db".into(),
        pod: pod.into(),
    }
}

fn logged(conf: &Value, log: &Path) -> Value {
    let mut c = conf.clone();
    c["ipam"]["logFile"] = json!(log);
    c
}

/// The plugin's log lines of `command`.
fn log_lines(log: &Path, command: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["command"] == command)
        .collect()
}

#[test]
fn a_pod_without_annotations_gets_no_address_and_nethouse_counts_it() {
    let nh = Nethouse::start(Duration::from_secs(60));
    nh.add_subnet(subnet("z1", "10.94.0.0/24"));
    let log = nh.dir.path().join("cni.log");
    let with = logged(&conf("1.1.0", &nh.url, "z1", "n1", Some(true)), &log);
    let without = without_pod_annotations(with.clone());
    assert_eq!(nh.metric(REFUSED), 0.0, "the series exists from the start");

    // A fixed pod on a node whose conflist lacks the capability: error 7, no address.
    let out = Cni::new("ADD", "sb1")
        .pod("db", "redis-0")
        .run(&without.to_string());
    let e = out.err(7);
    assert_eq!(e["msg"], MESSAGE, "{e}");
    assert_eq!(
        e["details"],
        r#"NetHouse counted it in nethouse_cni_refused_total{reason="pod_annotations_missing"}"#
    );
    assert!(e.get("ips").is_none(), "{e}");
    assert_eq!(nh.metric(REFUSED), 1.0);
    let client = nh.client();
    let leases = nh
        .rt
        .block_on(client.list_all_leases(&Default::default()))
        .unwrap();
    assert!(leases.is_empty(), "no lease for a refused pod: {leases:?}");
    let line = &log_lines(&log, "ADD")[0];
    assert_eq!(
        (&line["code"], &line["msg"], &line["pod"]),
        (&json!(7), &json!(MESSAGE), &json!("db/redis-0")),
        "{line}"
    );
    assert_eq!(line["details"], e["details"], "{line}");

    // The runtime tears the failed sandbox down: DEL, with the same config, succeeds (twice).
    for _ in 0..2 {
        Cni::new("DEL", "sb1")
            .pod("db", "redis-0")
            .run(&without.to_string())
            .ok();
    }

    // The capability declared: the same pod gets its fixed address.
    let ip = Cni::new("ADD", "sb2")
        .pod("db", "redis-0")
        .run(&with.to_string())
        .ip();
    let lease = nh
        .rt
        .block_on(client.lease_by_owner(&owner("redis-0")))
        .unwrap();
    assert_eq!(lease.kind, LeaseKind::Fixed);
    assert_eq!(lease.ips[0].ip.to_string(), ip);
    // A DEL without annotations (the capability removed since) still detaches it by the pod
    // name in CNI_ARGS, and the address stays the pod's.
    Cni::new("DEL", "sb2")
        .pod("db", "redis-0")
        .run(&without.to_string())
        .ok();
    let lease = nh
        .rt
        .block_on(client.lease_by_owner(&owner("redis-0")))
        .unwrap();
    assert!(lease.attachment.is_none(), "{lease:?}");
    assert_eq!(lease.ips[0].ip.to_string(), ip);

    // A call that names no pod (not from Kubernetes) is ordinary, as before.
    let other = Cni::new("ADD", "plain1").run(&without.to_string()).ip();
    let lease = nh
        .rt
        .block_on(client.lease_by_ip(other.parse().unwrap()))
        .unwrap();
    assert_eq!(lease.kind, LeaseKind::Ephemeral);
    Cni::new("DEL", "plain1").run(&without.to_string()).ok();
    assert_eq!(nh.metric(REFUSED), 1.0, "only the refused ADD counted");
}

#[test]
fn without_nethouse_the_answer_is_still_error_7() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("cni.log");
    let without = without_pod_annotations(logged(&conf("1.0.0", &url, "z1", "n1", None), &log));
    let out = Cni::new("ADD", "sb1")
        .pod("db", "redis-0")
        .run(&without.to_string());
    let e = out.err(7);
    assert_eq!(e["msg"], MESSAGE);
    let details = e["details"].as_str().unwrap_or_default();
    assert!(
        details.starts_with("NetHouse could not count it: ") && details.contains("unreachable"),
        "{e}"
    );
    let line = &log_lines(&log, "ADD")[0];
    assert_eq!(
        (&line["code"], &line["details"]),
        (&json!(7), &e["details"])
    );
}

#[test]
fn a_credential_of_another_node_is_not_counted() {
    // The plugin runs with a token bound to node n1 but says it is n2: NetHouse refuses to
    // count it (403), and the plugin still answers error 7 with the reason in its details.
    let nh = Nethouse::start_with_auth(Duration::from_secs(60), "node:n1 n1-token-0123456789\n");
    let token = nh.dir.path().join("token");
    std::fs::write(&token, "n1-token-0123456789\n").unwrap();
    let mut c = without_pod_annotations(conf("1.0.0", &nh.url, "z1", "n2", None));
    c["ipam"]["tokenFile"] = json!(token);
    let e = Cni::new("ADD", "sb1")
        .pod("db", "redis-0")
        .run(&c.to_string())
        .err(7);
    assert_eq!(e["msg"], MESSAGE);
    let details = e["details"].as_str().unwrap_or_default();
    assert!(
        details.contains(codes::FORBIDDEN) && details.contains(r#"bound to node "n1""#),
        "{e}"
    );
    assert_eq!(nh.metric(REFUSED), 0.0);
}
