//! End to end on the real control plane: a StatefulSet of fixed pods keeps its IPs through
//! pod deletion (the real StatefulSet controller recreates each pod; the node agent's CNI ADD
//! gets the same IP) and through a node failure with a force-deleted pod; a Deployment's
//! ordinary pods get ordinary IPs that are released when they go.
//!
//! Zone placement is not enforced yet (the scheduler extender is a later issue): the
//! StatefulSet pins its zone with a nodeSelector on `nethouse.io/network-zone`.

use std::collections::HashMap;
use std::time::Duration;

use nethouse::server::running::{ServerOptions, start};
use nethouse_api::{Client, ClientConfig, SubnetSpec};
use nethouse_e2e::agent::{Agent, AgentConfig};
use nethouse_e2e::binaries::workspace_bin;
use nethouse_e2e::cluster::{Cluster, ClusterOptions};

const STS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: redis, namespace: default}
spec:
  serviceName: redis
  replicas: 3
  selector: {matchLabels: {app: redis}}
  template:
    metadata:
      labels: {app: redis}
      annotations: {nethouse.io/fixed-ip: "true"}
    spec:
      nodeSelector: {nethouse.io/network-zone: z1}
      terminationGracePeriodSeconds: 5
      containers: [{name: redis, image: redis:7}]
"#;

const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {nethouse.io/network-zone: z2}
      terminationGracePeriodSeconds: 5
      containers: [{name: web, image: nginx}]
"#;

/// pod name -> (uid, node, ip) of Running pods with an IP, from `kubectl get pods`.
fn running(c: &Cluster, selector: &str) -> HashMap<String, (String, String, String)> {
    let out = c
        .kubectl(&[
            "get", "pods", "-l", selector, "-o",
            r#"jsonpath={range .items[*]}{.metadata.name} {.metadata.uid} {.spec.nodeName} {.status.phase} {.status.podIP} {.metadata.deletionTimestamp}{"\n"}{end}"#,
        ])
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

#[test]
fn statefulset_pods_keep_their_ips_through_deletion_and_node_failure() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let nh_dir = tempfile::tempdir().unwrap();
    let mut opts = ServerOptions::local(nh_dir.path().join("data"));
    opts.default_cooldown = Duration::from_secs(600);
    let nethouse = rt.block_on(start(opts)).unwrap();
    let nh = Client::new(ClientConfig::new(nethouse.url())).unwrap();
    for (zone, cidr) in [("z1", "10.210.0.0/24"), ("z2", "10.211.0.0/24")] {
        rt.block_on(nh.add_subnet(&SubnetSpec {
            zone: zone.into(),
            cidr: cidr.into(),
            ..Default::default()
        }))
        .unwrap();
    }

    let mut cluster = Cluster::start(ClusterOptions::default()).expect("control plane");
    let cni = workspace_bin("nethouse-cni").unwrap();
    let kube = rt
        .block_on(async {
            let kc = kube::config::Kubeconfig::read_from(&cluster.kubeconfig)?;
            let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
            anyhow::Ok(kube::Client::try_from(cfg)?)
        })
        .unwrap();
    let prefix = format!("nhe{}", std::process::id() % 1000);
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
    let _guard = rt.enter();
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
    let first = cluster
        .wait_for("3 redis pods running", Duration::from_secs(120), |c| {
            let r = running(c, "app=redis");
            (r.len() == 3).then_some(r)
        })
        .unwrap();
    for (pod, (_, _, ip)) in &first {
        assert!(
            ip.starts_with("10.210.0."),
            "{pod} got {ip}, not from zone z1's subnet"
        );
    }

    // Delete each pod: the StatefulSet controller recreates it, CNI ADD gives the same IP.
    for pod in ["redis-0", "redis-1", "redis-2"] {
        let (old_uid, _, ip) = first[pod].clone();
        cluster
            .kubectl(&["delete", "pod", pod, "--wait=false"])
            .unwrap();
        let (_, _, new_ip) = cluster
            .wait_for(&format!("{pod} recreated"), Duration::from_secs(90), |c| {
                running(c, "app=redis")
                    .get(pod)
                    .filter(|(uid, _, _)| *uid != old_uid)
                    .cloned()
            })
            .unwrap();
        assert_eq!(new_ip, ip, "{pod} came back with another IP");
    }

    // The node of redis-0 dies; once the control plane sees it NotReady an operator
    // force-deletes the pod; it comes back on the other node of zone z1 with the same IP.
    let before = running(&cluster, "app=redis");
    let (old_uid, dead, ip) = before["redis-0"].clone();
    agent.kill(&dead).unwrap();
    cluster
        .wait_for(&format!("{dead} NotReady"), Duration::from_secs(90), |c| {
            let s = c
                .kubectl(&[
                    "get",
                    "node",
                    &dead,
                    "-o",
                    r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
                ])
                .ok()?;
            (s.trim() == "Unknown").then_some(())
        })
        .unwrap();
    cluster
        .kubectl(&["delete", "pod", "redis-0", "--force", "--grace-period=0"])
        .unwrap();
    let (_, node, new_ip) = cluster
        .wait_for("redis-0 on a live node", Duration::from_secs(90), |c| {
            running(c, "app=redis")
                .get("redis-0")
                .filter(|(uid, _, _)| *uid != old_uid)
                .cloned()
        })
        .unwrap();
    assert_ne!(node, dead);
    assert!(node.starts_with("z1-"), "redis-0 left its zone: {node}");
    assert_eq!(new_ip, ip, "same IP after the node failure");
    let lease = rt.block_on(nh.lease_by_ip(ip.parse().unwrap())).unwrap();
    assert_eq!(
        lease.attachment.unwrap().node,
        node,
        "NetHouse moved the attachment"
    );

    // Ordinary pods: IPs from their zone, released when the Deployment goes.
    cluster
        .kubectl_stdin(&["apply", "-f", "-"], Some(DEPLOY))
        .unwrap();
    let web = cluster
        .wait_for("2 web pods running", Duration::from_secs(90), |c| {
            let r = running(c, "app=web");
            (r.len() == 2).then_some(r)
        })
        .unwrap();
    let web_ips: Vec<String> = web.values().map(|(_, _, ip)| ip.clone()).collect();
    for ip in &web_ips {
        assert!(ip.starts_with("10.211.0."), "{ip}");
        let l = rt.block_on(nh.lease_by_ip(ip.parse().unwrap())).unwrap();
        assert_eq!(l.kind, nethouse_api::LeaseKind::Ephemeral);
    }
    cluster.kubectl(&["delete", "deployment", "web"]).unwrap();
    cluster
        .wait_for("web leases released", Duration::from_secs(90), |_| {
            web_ips
                .iter()
                .all(|ip| rt.block_on(nh.lease_by_ip(ip.parse().unwrap())).is_err())
                .then_some(())
        })
        .unwrap();

    agent.shutdown();
    drop(cluster);
    rt.block_on(nethouse.shutdown(Duration::from_secs(2)));
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(
        !left.contains(&prefix),
        "network namespaces left behind: {left}"
    );
}
