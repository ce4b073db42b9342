//! The extender protocol with recorded payloads (the shape kube-scheduler sends, and the
//! lowercase shape of older senders), in both nodeCacheCapable modes, and fuzzed bodies.

use std::sync::RwLock;

use nethouse_scheduler_extender::decide::LocationInfo;
use nethouse_scheduler_extender::filter::{filter, prioritize};
use nethouse_scheduler_extender::index::Index;
use proptest::prelude::*;
use serde_json::{Value, json};

fn index() -> RwLock<Index> {
    let mut i = Index::default();
    i.apply_node("n1", Some("z1"));
    i.apply_node("n2", Some("z1"));
    i.apply_node("n3", Some("z2"));
    i.apply_node("n4", None);
    i.apply_location(
        "db/redis-0".into(),
        LocationInfo {
            ips: vec!["10.9.0.7".into()],
            zone: "z1".into(),
            node: Some("n2".into()),
            deleting: false,
            running: true,
        },
    );
    i.set_zones([("z1".to_string(), true), ("z2".to_string(), true)]);
    i.set_synced(true);
    RwLock::new(i)
}

fn payload(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/payloads/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn unresolvable() -> Value {
    json!({
        "n3": "pod db/redis-0 holds IP 10.9.0.7 in zone z1; the node is in zone z2",
        "n4": "the node has no nethouse.io/network-zone label, so no fixed IP can live there (pod db/redis-0)"
    })
}

#[test]
fn node_names_mode_in_both_casings() {
    for name in ["filter-names-pascal", "filter-names-lower"] {
        let (answer, decided) = filter(&index(), &payload(name)).unwrap();
        assert!(decided);
        let v: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(
            v,
            json!({"Nodes": null, "NodeNames": ["n1", "n2"], "FailedNodes": {}, "FailedAndUnresolvableNodes": unresolvable(), "Error": ""}),
            "{name}"
        );
    }
}

#[test]
fn full_nodes_mode_returns_the_kept_nodes_untouched() {
    for name in ["filter-nodes-pascal", "filter-nodes-lower"] {
        let body = payload(name);
        let (answer, _) = filter(&index(), &body).unwrap();
        let v: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(v["NodeNames"], Value::Null);
        assert_eq!(v["FailedAndUnresolvableNodes"], unresolvable(), "{name}");
        let input: Value = serde_json::from_slice(&body).unwrap();
        let input_items = input.get("Nodes").or_else(|| input.get("nodes")).unwrap()["items"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(
            v["Nodes"]["items"],
            json!(input_items[..2]),
            "{name}: kept nodes are the input's"
        );
    }
}

#[test]
fn ordinary_pods_pass_through_byte_for_byte() {
    let body = payload("filter-nodes-ordinary");
    let (answer, decided) = filter(&index(), &body).unwrap();
    assert!(!decided);
    let text = String::from_utf8(body).unwrap();
    let items_in = &text[text.find("\"items\":").unwrap()..text.rfind("]}").unwrap() + 1];
    assert!(
        answer.contains(items_in),
        "the raw node JSON is echoed unchanged"
    );
    let names =
        br#"{"Pod":{"metadata":{"name":"web-1","namespace":"web"}},"NodeNames":["n3","n4"]}"#;
    let (answer, _) = filter(&index(), names).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["NodeNames"],
        json!(["n3", "n4"])
    );
}

#[test]
fn a_location_being_deleted_or_a_new_pod_uses_zone_capacity() {
    let idx = index();
    idx.write().unwrap().delete_location("db/redis-0");
    idx.write()
        .unwrap()
        .set_zones([("z1".to_string(), false), ("z2".to_string(), true)]);
    let (answer, _) = filter(&idx, &payload("filter-names-pascal")).unwrap();
    let v: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(v["NodeNames"], json!(["n3"]));
    assert_eq!(
        v["FailedAndUnresolvableNodes"]["n1"],
        "zone z1 of the node has no free address for pod db/redis-0"
    );
}

#[test]
fn unknown_nodes_are_retryable_failures() {
    let body = br#"{"Pod":{"metadata":{"name":"redis-0","namespace":"db","annotations":{"nethouse.io/fixed-ip":"true"}}},"NodeNames":["n1","new-node"]}"#;
    let (answer, _) = filter(&index(), body).unwrap();
    let v: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        v["FailedNodes"]["new-node"],
        "the node is not in the extender's cache yet"
    );
    assert_eq!(v["NodeNames"], json!(["n1"]));
}

#[test]
fn both_null_means_no_node() {
    let body = br#"{"Pod":{"metadata":{"name":"redis-0","namespace":"db","annotations":{"nethouse.io/fixed-ip":"true"}}},"Nodes":null,"NodeNames":null}"#;
    let (answer, _) = filter(&index(), body).unwrap();
    let v: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        (v["Nodes"].clone(), v["NodeNames"].clone()),
        (Value::Null, Value::Null)
    );
}

#[test]
fn prioritize_prefers_the_last_node() {
    let answer = prioritize(&index(), &payload("filter-names-pascal")).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap(),
        json!([{"Host": "n1", "Score": 0}, {"Host": "n2", "Score": 10}, {"Host": "n3", "Score": 0}, {"Host": "n4", "Score": 0}])
    );
    let answer = prioritize(&index(), &payload("filter-nodes-lower")).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()[1],
        json!({"Host": "n2", "Score": 10})
    );
}

#[test]
fn malformed_bodies_are_errors_naming_the_part() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "body"),
        (b"not json", "body"),
        (b"[]", "body"),
        (br#"{"NodeNames":["n1"]}"#, "Pod: missing"),
        (br#"{"Pod":null}"#, "Pod: missing"),
        (br#"{"Pod":{"metadata":{}}}"#, "Pod.metadata.name"),
        (br#"{"Pod":{"metadata":{"name":"p"}},"NodeNames":"n1"}"#, "NodeNames"),
        (br#"{"Pod":{"metadata":{"name":"p","annotations":{"nethouse.io/fixed-ip":"true"}}},"Nodes":{"items":[{"metadata":{}}]}}"#, "metadata.name"),
        // The same key twice, in any case: refused, not decided by which one a map kept.
        (br#"{"Pod":{"metadata":{"name":"a"}},"pod":{"metadata":{"name":"b"}},"NodeNames":["n1"]}"#, r#"Pod: given twice (as "Pod" and "pod")"#),
        (br#"{"Pod":{"metadata":{"name":"a"}},"Pod":{"metadata":{"name":"b"}}}"#, "Pod: given twice"),
        (br#"{"Pod":{"metadata":{"name":"a"}},"NodeNames":["n1"],"nodenames":["n2"]}"#, "NodeNames: given twice"),
        (br#"{"Pod":{"metadata":{"name":"a"}},"Nodes":null,"NODES":{"items":[]}}"#, "Nodes: given twice"),
    ];
    for (body, needle) in cases {
        let e = filter(&index(), body).unwrap_err();
        assert!(
            e.0.contains(needle),
            "{:?}: {e}",
            String::from_utf8_lossy(body)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
    #[test]
    fn fuzzed_bodies_never_panic(body in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        "[ -~]{0,200}".prop_map(String::into_bytes),
        (0usize..400, any::<u8>()).prop_map(|(i, b)| {
            let mut p = payload("filter-nodes-pascal");
            let i = i % p.len();
            p[i] = b;
            p
        }),
    ]) {
        let idx = index();
        // Either an answer or a 400-style error: never a panic.
        let _ = filter(&idx, &body);
        let _ = prioritize(&idx, &body);
    }
}
