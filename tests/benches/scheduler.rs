//! `cargo bench -p nethouse-e2e --bench scheduler` — the real kube-scheduler's throughput for
//! 500 fixed pods with the NetHouse extender (filter + prioritize over HTTP, node names only)
//! against the same scheduler without it, in the same harness and run.
//!
//! The pods are created first, while no node exists; then 50 nodes in two zones register at
//! once and the scheduler places the whole backlog. The clock runs from the nodes' registration
//! to the last pod bound, so pod creation (the apiserver, kubectl) is not what is measured.

use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use nethouse::server::running::start_local;
use nethouse_e2e::agent::node;
use nethouse_e2e::bench_table::{header, row};
use nethouse_e2e::cluster::{Cluster, ClusterOptions};
use nethouse_e2e::ports::free_port;
use nethouse_e2e::stack::{apply_crd, extender, kube_client, scheduler_config};

const PODS: usize = 500;
const NODES: usize = 50;

fn pods_manifest() -> String {
    (0..PODS)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p{i}\n  namespace: default\n  annotations: {{nethouse.io/fixed-ip: \"true\"}}\n\
                 spec:\n  containers: [{{name: c, image: busybox, resources: {{requests: {{cpu: 10m}}}}}}]\n---\n"
            )
        })
        .collect()
}

/// Seconds from the nodes' registration to the last of the pods bound. `qps`: the scheduler's
/// API client rate (`None`: upstream's default, 50/s, which is what binds pods at that rate).
fn run(with_extender: bool, qps: Option<u32>) -> Duration {
    let rt = nethouse_e2e::stack::runtime();
    let _enter = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let (nethouse, nh) = rt
        .block_on(start_local(
            dir.path().join("nethouse"),
            Duration::from_secs(60),
            &[("z1", "10.100.0.0/16"), ("z2", "10.101.0.0/16")],
        ))
        .unwrap();
    let port = free_port().unwrap();
    let mut opts = ClusterOptions {
        scheduler_qps: qps,
        ..ClusterOptions::default()
    };
    let plain = dir.path().join("plain.yaml");
    std::fs::write(
        &plain,
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n",
    )
    .unwrap();
    opts.scheduler_config = Some(plain);
    if with_extender {
        let cfg = scheduler_config(dir.path(), port).unwrap();
        opts.scheduler_config = Some(cfg);
    }
    let mut cluster = Cluster::start(opts).expect("control plane");
    apply_crd(&mut cluster).unwrap();
    let kube = rt.block_on(kube_client(&cluster.kubeconfig)).unwrap();
    let _extender = with_extender.then(|| {
        rt.block_on(extender(kube.clone(), &nh, "bench", port))
            .unwrap()
    });
    cluster
        .kubectl_stdin(&["apply", "-f", "-"], Some(&pods_manifest()))
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(kube.clone(), "default");
    let bound = || {
        rt.block_on(pods.list_metadata(&ListParams::default().fields("spec.nodeName!=")))
            .map(|l| l.items.len())
            .unwrap_or(0)
    };
    assert_eq!(bound(), 0, "no node yet");

    let t0 = Instant::now();
    let names: Vec<String> = (0..NODES)
        .map(|i| format!("{}-n{i}", if i % 2 == 0 { "z1" } else { "z2" }))
        .collect();
    rt.block_on(join_all(
        names.iter().map(|n| node::register(&kube, n, &n[..2])),
    ))
    .into_iter()
    .collect::<anyhow::Result<Vec<()>>>()
    .unwrap();
    let beats: Vec<_> = names
        .iter()
        .map(|n| rt.spawn(node::heartbeat(kube.clone(), n.clone())))
        .collect();
    while bound() < PODS {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "scheduling stalled"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = t0.elapsed();
    for b in beats {
        b.abort();
    }
    drop(cluster);
    rt.block_on(nethouse.shutdown(Duration::from_secs(1)));
    took
}

fn main() {
    nethouse_e2e::binaries::ensure().expect("binaries");
    let rate = |d: Duration| PODS as f64 / d.as_secs_f64();
    println!("## kube-scheduler throughput, {PODS} fixed pods onto {NODES} nodes (median of 3)\n");
    header(&[
        "scheduler API rate".into(),
        "scheduler".into(),
        "backlog placed in".into(),
        "pods/s".into(),
    ]);
    let mut ratios = Vec::new();
    for (label, qps) in [
        ("default (50 qps)", None),
        ("lifted (2000 qps)", Some(2000)),
    ] {
        // Alternate the two so drift on a shared machine hits both alike.
        let mut without = Vec::new();
        let mut with = Vec::new();
        for _ in 0..3 {
            without.push(run(false, qps));
            with.push(run(true, qps));
        }
        without.sort();
        with.sort();
        let (w0, w1) = (without[1], with[1]);
        for (scheduler, took) in [
            ("without the extender", w0),
            ("with the NetHouse extender", w1),
        ] {
            row(&[
                label.into(),
                scheduler.into(),
                format!("{:.2} s", took.as_secs_f64()),
                format!("{:.0}", rate(took)),
            ]);
        }
        ratios.push((label, rate(w1) / rate(w0)));
    }
    println!();
    for (label, r) in ratios {
        println!("with / without throughput, {label}: {r:.2}× (target ≥ 0.9×)");
    }
}
