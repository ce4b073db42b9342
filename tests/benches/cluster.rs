//! `cargo bench -p nethouse-e2e --bench cluster` — control-plane start-to-ready time (warm
//! binary cache) and pod create -> Running-with-IP latency through the node agent (Debian's
//! bridge + nethouse-cni + a real NetHouse) for 100 pods.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nethouse::server::running::start_local;
use nethouse_e2e::bench_table::{header, pct, row, whole_ms};
use nethouse_e2e::cluster::{Cluster, ClusterOptions};
use nethouse_e2e::stack::{agent, apply_crd, kube_client, orphan_locations};

const PODS: usize = 100;

fn main() {
    nethouse_e2e::binaries::ensure().expect("binaries");
    println!("## Control plane and pod start-up\n");
    let mut starts = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let c = Cluster::start(ClusterOptions::default()).expect("control plane");
        starts.push(t.elapsed());
        drop(c);
    }
    starts.sort();
    header(&["measure".into(), "value".into()]);
    row(&[
        "control plane start → ready for pods (median of 3, warm binary cache)".into(),
        whole_ms(starts[1]),
    ]);

    let rt = nethouse_e2e::stack::runtime();
    let _enter = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let (nethouse, _nh) = rt
        .block_on(start_local(
            dir.path().join("nethouse"),
            Duration::ZERO,
            &[("z1", "10.220.0.0/24")],
        ))
        .unwrap();
    let mut cluster = Cluster::start(ClusterOptions::default()).unwrap();
    let kube = rt.block_on(kube_client(&cluster.kubeconfig)).unwrap();
    let mut agent = agent(kube, &nethouse.url(), "bench", "bk").unwrap();
    for n in ["n1", "n2", "n3", "n4"] {
        rt.block_on(agent.add_node(n, "z1")).unwrap();
    }
    let manifest: String = (0..PODS)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p{i}\n  labels: {{app: bench}}\n  annotations: {{nethouse.io/fixed-ip: \"true\"}}\nspec:\n  containers: [{{name: c, image: busybox}}]\n---\n"
            )
        })
        .collect();
    let t0 = Instant::now();
    cluster
        .kubectl_stdin(&["apply", "-f", "-"], Some(&manifest))
        .unwrap();
    let created = t0.elapsed();
    let mut seen: HashMap<String, Duration> = HashMap::new();
    cluster
        .wait_for("100 pods running", Duration::from_secs(300), |c| {
            let out = c
                .kubectl(&["get", "pods", "-l", "app=bench", "-o", r#"jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.status.podIP}{"\n"}{end}"#])
                .ok()?;
            let now = t0.elapsed();
            for l in out.lines() {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() == 3 && f[1] == "Running" {
                    seen.entry(f[0].to_string()).or_insert(now);
                }
            }
            (seen.len() == PODS).then_some(())
        })
        .unwrap();
    let mut lat: Vec<Duration> = seen.values().copied().collect();
    lat.sort();
    row(&[
        format!("`kubectl apply` of {PODS} pods took"),
        whole_ms(created),
    ]);
    row(&[
        format!("pod create → Running with IP, p50 ({PODS} pods, 4 nodes)"),
        whole_ms(pct(&lat, 0.5)),
    ]);
    row(&[
        "pod create → Running with IP, p99".into(),
        whole_ms(pct(&lat, 0.99)),
    ]);
    row(&[
        format!("all {PODS} running after"),
        whole_ms(pct(&lat, 1.0)),
    ]);
    agent.shutdown();

    // Location deletion -> IP released, for 100 Locations whose pods are gone.
    let nh = nethouse_api::Client::new(nethouse_api::ClientConfig::new(nethouse.url())).unwrap();
    rt.block_on(nh.add_subnet(&nethouse_api::SubnetSpec {
        zone: "z9".into(),
        cidr: "10.221.0.0/24".into(),
        ..Default::default()
    }))
    .unwrap();
    apply_crd(&mut cluster).unwrap();
    rt.block_on(orphan_locations(&nh, &cluster, "z9", "bench", "gone", PODS))
        .unwrap();
    let kube = rt.block_on(kube_client(&cluster.kubeconfig)).unwrap();
    let controller =
        nethouse_e2e::stack::location_controller(kube, &nh, "bench", Duration::from_secs(3600));
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    cluster
        .kubectl(&["delete", "loc", "--all", "--wait=false"])
        .unwrap();
    let mut released: HashMap<String, Duration> = HashMap::new();
    while released.len() < PODS && t0.elapsed() < Duration::from_secs(120) {
        let held = rt
            .block_on(nh.list_all_leases(&nethouse_api::LeaseFilter {
                zone: Some("z9".into()),
                ..Default::default()
            }))
            .unwrap();
        let now = t0.elapsed();
        let still: std::collections::HashSet<String> = held
            .iter()
            .filter_map(|l| l.owner.as_ref().map(|o| o.pod.clone()))
            .collect();
        for i in 0..PODS {
            let name = format!("gone-{i}");
            if !still.contains(&name) {
                released.entry(name).or_insert(now);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rel: Vec<Duration> = released.values().copied().collect();
    rel.sort();
    row(&[
        format!("Location deleted → IP released in NetHouse, p50 ({PODS} deleted at once)"),
        whole_ms(pct(&rel, 0.5)),
    ]);
    row(&[
        "Location deleted → IP released, p99".into(),
        whole_ms(pct(&rel, 0.99)),
    ]);
    controller.abort();
    drop(cluster);
    rt.block_on(nethouse.shutdown(Duration::from_secs(1)));
}
