//! The scheduler extender on the real scheduler, configured with the KubeSchedulerConfiguration
//! users apply (`manifests/scheduler/`): fixed pods go anywhere with room at first, their
//! Locations are written, and from then on a recreated pod only lands in its Location's zone —
//! after its node died it comes back on the other node of that zone with the same IP, never in
//! the other zone; with no node of its zone left it stays Pending and FailedScheduling says why.

use std::collections::HashMap;
use std::time::Duration;

use nethouse::server::running::{ServerOptions, start};
use nethouse_api::{Client, ClientConfig, SubnetSpec};
use nethouse_e2e::agent::{Agent, AgentConfig};
use nethouse_e2e::binaries::workspace_bin;
use nethouse_e2e::cluster::{Cluster, ClusterOptions};
use nethouse_e2e::ports::free_port;

const STS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: redis, namespace: default}
spec:
  serviceName: redis
  replicas: 3
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: redis}}
  template:
    metadata:
      labels: {app: redis}
      annotations: {nethouse.io/fixed-ip: "true"}
    spec:
      terminationGracePeriodSeconds: 5
      containers: [{name: redis, image: redis:7}]
"#;

fn zone_of(node: &str) -> &str {
    &node[..2]
}

/// pod -> (uid, node, ip) of Running pods.
fn running(c: &Cluster) -> HashMap<String, (String, String, String)> {
    let out = c
        .kubectl(&["get", "pods", "-l", "app=redis", "-o", r#"jsonpath={range .items[*]}{.metadata.name} {.metadata.uid} {.spec.nodeName} {.status.phase} {.status.podIP}{"\n"}{end}"#])
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 5 && f[3] == "Running").then(|| {
                (
                    f[0].to_string(),
                    (f[1].to_string(), f[2].to_string(), f[4].to_string()),
                )
            })
        })
        .collect()
}

fn wait_not_ready(c: &mut Cluster, node: &str) {
    c.wait_for(&format!("{node} NotReady"), Duration::from_secs(90), |c| {
        let s = c
            .kubectl(&[
                "get",
                "node",
                node,
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
            ])
            .ok()?;
        (s.trim() == "Unknown").then_some(())
    })
    .unwrap();
}

#[test]
fn fixed_pods_stay_in_their_zone() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let nh_dir = tempfile::tempdir().unwrap();
    let mut opts = ServerOptions::local(nh_dir.path().join("data"));
    opts.default_cooldown = Duration::from_secs(600);
    let nethouse = rt.block_on(start(opts)).unwrap();
    let nh = Client::new(ClientConfig::new(nethouse.url())).unwrap();
    for (zone, cidr) in [("z1", "10.230.0.0/24"), ("z2", "10.231.0.0/24")] {
        rt.block_on(nh.add_subnet(&SubnetSpec {
            zone: zone.into(),
            cidr: cidr.into(),
            ..Default::default()
        }))
        .unwrap();
    }

    // The scheduler gets the users' configuration, pointed at this test's extender.
    let port = free_port().unwrap();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/scheduler/kube-scheduler-config.yaml"
    ))
    .unwrap();
    let cfg = nh_dir.path().join("scheduler.yaml");
    std::fs::write(
        &cfg,
        shipped.replace("http://127.0.0.1:8888", &format!("http://127.0.0.1:{port}")),
    )
    .unwrap();
    let mut cluster = Cluster::start(ClusterOptions {
        scheduler_config: Some(cfg),
        ..ClusterOptions::default()
    })
    .expect("control plane");
    cluster
        .kubectl(&[
            "apply",
            "-k",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests"),
            "--server-side",
        ])
        .unwrap();
    cluster
        .wait_for("the Location CRD", Duration::from_secs(30), |c| {
            c.kubectl(&["get", "loc"]).ok()
        })
        .unwrap();

    let kube = rt
        .block_on(async {
            let kc = kube::config::Kubeconfig::read_from(&cluster.kubeconfig)?;
            let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
            anyhow::Ok(kube::Client::try_from(cfg)?)
        })
        .unwrap();
    let extender = rt
        .block_on(nethouse_scheduler_extender::start(
            kube.clone(),
            nh.clone(),
            nethouse_scheduler_extender::Options {
                listen: format!("127.0.0.1:{port}").parse().unwrap(),
                cluster: "e2e".into(),
                zones_refresh: Duration::from_secs(1),
            },
        ))
        .unwrap();
    let cni = workspace_bin("nethouse-cni").unwrap();
    let prefix = format!("nhx{}", std::process::id() % 1000);
    let mut agent = Agent::new(
        kube,
        AgentConfig {
            nethouse_urls: vec![nethouse.url()],
            nethouse_token_file: None,
            cni_path: format!("/usr/lib/cni:{}", cni.parent().unwrap().display()),
            cluster: "e2e".into(),
            prefix: prefix.clone(),
        },
    );
    for (node, zone) in [
        ("z1-a", "z1"),
        ("z1-b", "z1"),
        ("z2-a", "z2"),
        ("z2-b", "z2"),
    ] {
        rt.block_on(agent.add_node(node, zone)).unwrap();
    }

    cluster
        .kubectl_stdin(&["apply", "-f", "-"], Some(STS))
        .unwrap();
    let pods = cluster
        .wait_for("3 redis pods running", Duration::from_secs(120), |c| {
            let r = running(c);
            (r.len() == 3).then_some(r)
        })
        .unwrap();
    // Every running fixed pod gets its Location: IP, zone, node.
    let locations = cluster
        .wait_for("3 Locations", Duration::from_secs(60), |c| {
            let out = c.kubectl(&["get", "loc", "-o", r#"jsonpath={range .items[*]}{.metadata.name} {.spec.ips[0]} {.spec.zone} {.status.node}{"\n"}{end}"#]).ok()?;
            (out.lines().filter(|l| l.split_whitespace().count() == 4).count() == 3).then_some(out)
        })
        .unwrap();
    for (pod, (_, node, ip)) in &pods {
        let line = format!("{pod} {ip} {} {node}", zone_of(node));
        assert!(
            locations.contains(&line),
            "missing `{line}` in\n{locations}"
        );
    }

    // redis-0's node dies; the pod is force-deleted and must come back in its zone.
    let (uid, dead, ip) = pods["redis-0"].clone();
    let zone = zone_of(&dead).to_string();
    let sibling = if dead.ends_with('a') {
        dead.replace("-a", "-b")
    } else {
        dead.replace("-b", "-a")
    };
    agent.kill(&dead).unwrap();
    wait_not_ready(&mut cluster, &dead);
    cluster
        .kubectl(&["delete", "pod", "redis-0", "--force", "--grace-period=0"])
        .unwrap();
    let (uid2, node, new_ip) = cluster
        .wait_for("redis-0 back", Duration::from_secs(90), |c| {
            running(c)
                .get("redis-0")
                .filter(|(u, _, _)| *u != uid)
                .cloned()
        })
        .unwrap();
    assert_eq!(
        node, sibling,
        "redis-0 must come back on the other node of zone {zone}"
    );
    assert_eq!(new_ip, ip, "same IP");

    // Its zone loses its last node: the pod stays Pending and the scheduler says why.
    agent.kill(&sibling).unwrap();
    wait_not_ready(&mut cluster, &sibling);
    cluster
        .kubectl(&["delete", "pod", "redis-0", "--force", "--grace-period=0"])
        .unwrap();
    let message = cluster
        .wait_for(
            "FailedScheduling naming the zone",
            Duration::from_secs(90),
            |c| {
                let ev = c
                    .kubectl(&[
                        "get",
                        "events",
                        "--field-selector",
                        "reason=FailedScheduling,involvedObject.name=redis-0",
                        "-o",
                        "jsonpath={.items[*].message}",
                    ])
                    .ok()?;
                ev.contains(&format!("holds IP {ip} in zone {zone}"))
                    .then_some(ev)
            },
        )
        .unwrap();
    assert!(message.contains("default/redis-0"), "{message}");
    let phase = cluster
        .kubectl(&[
            "get",
            "pod",
            "redis-0",
            "-o",
            "jsonpath={.status.phase} {.metadata.uid}",
        ])
        .unwrap();
    assert!(
        phase.starts_with("Pending") && !phase.contains(&uid2),
        "{phase}"
    );

    drop(extender);
    agent.shutdown();
    drop(cluster);
    rt.block_on(nethouse.shutdown(Duration::from_secs(2)));
}
