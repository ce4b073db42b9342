//! Fuzzing the plugin's input boundary (stdin config, CNI_ARGS and the other CNI_* variables)
//! in-process: whatever comes in, the plugin never panics, and every failure is a spec error —
//! JSON on stdout with an integer `code`, a `msg` and a `cniVersion` — with a non-zero exit.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};

/// A NetHouse URL where nothing listens: verbs that get as far as the network fail fast.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[ -~]{0,12}".prop_map(Value::from),
        Just(json!("true")),
        Just(json!("1.0.0")),
        Just(json!("0.3.1")),
        Just(json!("nethouse-cni")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z./-]{0,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid config with some of its keys replaced by arbitrary values.
fn mutated_config(url: String) -> impl Strategy<Value = String> {
    let keys = prop::sample::subsequence(
        vec![
            "/cniVersion",
            "/name",
            "/ipam",
            "/ipam/servers",
            "/ipam/zone",
            "/ipam/node",
            "/ipam/timeoutSeconds",
            "/ipam/type",
            "/runtimeConfig",
            "/runtimeConfig/io.kubernetes.cri.pod-annotations",
            "/args/cni/labels",
            "/prevResult",
            "/prevResult/ips",
            "/cni.dev/valid-attachments",
        ],
        0..4,
    );
    (keys, prop::collection::vec(json_value(), 4)).prop_map(move |(keys, values)| {
        let mut c = json!({
            "cniVersion": "1.1.0", "name": "n", "type": "bridge",
            "ipam": {"type": "nethouse-cni", "servers": [url.clone()], "zone": "z1", "node": "n1", "timeoutSeconds": 2},
            "runtimeConfig": {"io.kubernetes.cri.pod-annotations": {"nethouse.io/fixed-ip": "true"}},
            "args": {"cni": {"labels": [{"key": "nethouse.io/fixed-ip", "value": "true"}]}},
            "prevResult": {"cniVersion": "1.1.0", "ips": [{"address": "10.1.0.5/24"}]},
            "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]
        });
        for (key, value) in keys.iter().zip(values) {
            let (parent, leaf) = key.rsplit_once('/').unwrap();
            let slot = if parent.is_empty() { Some(&mut c) } else { c.pointer_mut(parent) };
            if let Some(Value::Object(m)) = slot {
                m.insert(leaf.replace("~1", "/"), value);
            }
        }
        c.to_string()
    })
}

fn stdin() -> impl Strategy<Value = Vec<u8>> {
    let url = dead_url();
    prop_oneof![
        3 => mutated_config(url).prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..200),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
    ]
}

fn env() -> impl Strategy<Value = BTreeMap<String, String>> {
    (
        prop_oneof![
            Just("ADD".to_string()),
            Just("DEL".to_string()),
            Just("CHECK".to_string()),
            Just("STATUS".to_string()),
            Just("GC".to_string()),
            Just("VERSION".to_string()),
            "[A-Z]{0,6}",
        ],
        prop_oneof![Just("c1".to_string()), "[ -~]{0,12}"],
        prop_oneof![Just("eth0".to_string()), "[ -~]{0,18}"],
        prop_oneof![Just("/var/run/netns/x".to_string()), Just(String::new())],
        prop_oneof![
            Just("IgnoreUnknown=1;K8S_POD_NAMESPACE=db;K8S_POD_NAME=redis-0".to_string()),
            "[A-Za-z0-9_=;]{0,40}",
            "[ -~]{0,40}",
        ],
    )
        .prop_map(|(cmd, cid, ifname, netns, args)| {
            [
                ("CNI_COMMAND", cmd),
                ("CNI_CONTAINERID", cid),
                ("CNI_IFNAME", ifname),
                ("CNI_NETNS", netns),
                ("CNI_ARGS", args),
                ("CNI_PATH", "/usr/lib/cni".to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 768, ..ProptestConfig::default() })]
    #[test]
    fn every_input_gets_a_result_or_a_spec_error(env in env(), stdin in stdin()) {
        let out = nethouse_cni::run(&env, &stdin);
        if out.exit_code == 0 {
            prop_assert!(
                out.stdout.is_empty() || serde_json::from_str::<Value>(&out.stdout).is_ok(),
                "success output is not JSON: {}", out.stdout
            );
        } else {
            prop_assert_eq!(out.exit_code, 1);
            let v: Value = serde_json::from_str(&out.stdout).map_err(|e| TestCaseError::fail(format!("{e}: {}", out.stdout)))?;
            prop_assert!(v["code"].as_u64().is_some(), "no integer code: {}", v);
            prop_assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "no msg: {}", v);
            prop_assert!(v["cniVersion"].as_str().is_some(), "no cniVersion: {}", v);
            prop_assert!(v.as_object().unwrap().keys().all(|k| ["cniVersion", "code", "msg", "details"].contains(&k.as_str())), "extra keys: {}", v);
        }
    }
}
