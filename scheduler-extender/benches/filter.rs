//! `cargo bench -p nethouse-scheduler-extender --bench filter` — the filter verb at 100, 1,000
//! and 5,000 nodes in both nodeCacheCapable modes, for a fixed pod (decided) and an ordinary pod
//! (passed through), against the floor: parsing the same body into JSON and writing it back.
//! In-process, per call; the HTTP round trip on loopback adds ~0.1 ms.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use nethouse_scheduler_extender::decide::LocationInfo;
use nethouse_scheduler_extender::filter::filter;
use nethouse_scheduler_extender::index::Index;

// The workspace's one set of table helpers, in the e2e crate (which depends on this one).
#[allow(dead_code)]
#[path = "../../tests/src/bench_table.rs"]
mod table;
use table::{header, pct, row, us};

fn node_json(i: usize) -> String {
    let zone = if i.is_multiple_of(2) { "z1" } else { "z2" };
    format!(
        r#"{{"metadata":{{"name":"node-{i}","uid":"4f1c2a9e-{i:08}","resourceVersion":"{i}","labels":{{"kubernetes.io/hostname":"node-{i}","kubernetes.io/os":"linux","kubernetes.io/arch":"amd64","topology.kubernetes.io/zone":"dc1-{zone}","nethouse.io/network-zone":"{zone}"}},"annotations":{{"node.alpha.kubernetes.io/ttl":"0"}}}},"spec":{{"podCIDR":"10.244.{}.0/24"}},"status":{{"capacity":{{"cpu":"32","memory":"131072Mi","pods":"110","ephemeral-storage":"100Gi"}},"allocatable":{{"cpu":"31","memory":"130000Mi","pods":"110"}},"conditions":[{{"type":"MemoryPressure","status":"False"}},{{"type":"DiskPressure","status":"False"}},{{"type":"PIDPressure","status":"False"}},{{"type":"Ready","status":"True","reason":"KubeletReady"}}],"addresses":[{{"type":"InternalIP","address":"10.0.{}.{}"}},{{"type":"Hostname","address":"node-{i}"}}],"nodeInfo":{{"kubeletVersion":"v1.35.8","containerRuntimeVersion":"containerd://2.1.0","osImage":"Debian GNU/Linux 12","architecture":"amd64","operatingSystem":"linux"}}}}}}"#,
        i % 256,
        i / 256,
        i % 256
    )
}

fn pod(fixed: bool) -> String {
    let ann = if fixed {
        r#","annotations":{"nethouse.io/fixed-ip":"true"}"#
    } else {
        ""
    };
    format!(
        r#"{{"metadata":{{"name":"redis-0","namespace":"db"{ann}}},"spec":{{"containers":[{{"name":"redis","image":"redis:7"}}]}},"status":{{"phase":"Pending"}}}}"#
    )
}

fn body(n: usize, names: bool, fixed: bool) -> Vec<u8> {
    if names {
        let list: Vec<String> = (0..n).map(|i| format!("\"node-{i}\"")).collect();
        format!(
            r#"{{"Pod":{},"Nodes":null,"NodeNames":[{}]}}"#,
            pod(fixed),
            list.join(",")
        )
        .into_bytes()
    } else {
        let list: Vec<String> = (0..n).map(node_json).collect();
        format!(
            r#"{{"Pod":{},"Nodes":{{"metadata":{{}},"items":[{}]}},"NodeNames":null}}"#,
            pod(fixed),
            list.join(",")
        )
        .into_bytes()
    }
}

fn index(n: usize) -> RwLock<Index> {
    let mut i = Index::default();
    for k in 0..n {
        i.apply_node(
            &format!("node-{k}"),
            Some(if k.is_multiple_of(2) { "z1" } else { "z2" }),
        );
    }
    i.apply_location(
        "db/redis-0".into(),
        LocationInfo {
            ips: vec!["10.9.0.7".into()],
            zone: "z1".into(),
            node: Some("node-0".into()),
            deleting: false,
            running: true,
        },
    );
    i.set_synced(true);
    RwLock::new(i)
}

fn measure(iters: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..iters / 10 + 1 {
        f();
    }
    let mut v: Vec<Duration> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    v.sort();
    (pct(&v, 0.5), pct(&v, 0.99))
}

fn main() {
    println!("## Extender filter vs parse-and-echo of the same body\n");
    header(
        &[
            "nodes",
            "mode",
            "pod",
            "filter p50",
            "filter p99",
            "parse+echo p50",
            "parse+echo p99",
            "ratio p50",
        ]
        .map(String::from),
    );
    for n in [100usize, 1_000, 5_000] {
        let idx = index(n);
        let iters = if n >= 5_000 { 200 } else { 1_000 };
        for names in [true, false] {
            for fixed in [true, false] {
                let b = body(n, names, fixed);
                let (fp50, fp99) = measure(iters, || {
                    std::hint::black_box(filter(&idx, &b).unwrap());
                });
                let (ep50, ep99) = measure(iters, || {
                    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
                    std::hint::black_box(serde_json::to_string(&v).unwrap());
                });
                row(&[
                    n.to_string(),
                    (if names { "NodeNames" } else { "Nodes" }).into(),
                    (if fixed { "fixed" } else { "ordinary" }).into(),
                    us(fp50),
                    us(fp99),
                    us(ep50),
                    us(ep99),
                    format!("{:.2}×", fp50.as_secs_f64() / ep50.as_secs_f64()),
                ]);
            }
        }
    }
}
