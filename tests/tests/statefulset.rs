//! End to end on the real control plane: a StatefulSet of fixed pods keeps its IPs through
//! pod deletion (the real StatefulSet controller recreates each pod; the node agent's CNI ADD
//! gets the same IP) and through a node failure with a force-deleted pod; a Deployment's
//! ordinary pods get ordinary IPs that are released when they go.
//!
//! This test pins the zone with a nodeSelector, so it proves IP keeping on its own;
//! `extender.rs` proves zone placement by the scheduler extender.

use std::time::Duration;

use nethouse::server::running::start_local;
use nethouse_e2e::cluster::{Cluster, ClusterOptions};
use nethouse_e2e::stack::{
    agent, fixed_statefulset, kube_client, running_pods, wait_node_not_ready, wait_running,
};

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

#[test]
fn statefulset_pods_keep_their_ips_through_deletion_and_node_failure() {
    let rt = nethouse_e2e::stack::runtime();
    let _enter = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let (nethouse, nh) = rt
        .block_on(start_local(
            dir.path().join("nethouse"),
            Duration::from_secs(600),
            &[("z1", "10.210.0.0/24"), ("z2", "10.211.0.0/24")],
        ))
        .unwrap();
    let mut cluster = Cluster::start(ClusterOptions::default()).expect("control plane");
    let kube = rt.block_on(kube_client(&cluster.kubeconfig)).unwrap();
    let mut agent = agent(kube, &nethouse.url(), "e2e", "se").unwrap();
    for (node, zone) in [
        ("z1-a", "z1"),
        ("z1-b", "z1"),
        ("z2-a", "z2"),
        ("z2-b", "z2"),
    ] {
        rt.block_on(agent.add_node(node, zone)).unwrap();
    }

    cluster
        .kubectl_stdin(
            &["apply", "-f", "-"],
            Some(&fixed_statefulset("redis", 3, Some("z1"), false)),
        )
        .unwrap();
    let first = wait_running(&mut cluster, "app=redis", 3, None).unwrap();
    for (pod, row) in &first {
        assert!(
            row.ip.starts_with("10.210.0."),
            "{pod} got {}, not from zone z1's subnet",
            row.ip
        );
    }

    // Delete each pod: the StatefulSet controller recreates it, CNI ADD gives the same IP.
    for pod in ["redis-0", "redis-1", "redis-2"] {
        cluster
            .kubectl(&["delete", "pod", pod, "--wait=false"])
            .unwrap();
        let now = wait_running(&mut cluster, "app=redis", 3, Some((pod, &first[pod].uid))).unwrap();
        assert_eq!(
            now[pod].ip, first[pod].ip,
            "{pod} came back with another IP"
        );
    }

    // The node of redis-0 dies; once the control plane sees it NotReady an operator
    // force-deletes the pod; it comes back on the other node of zone z1 with the same IP.
    let before = running_pods(&cluster, "app=redis")["redis-0"].clone();
    agent.kill(&before.node).unwrap();
    wait_node_not_ready(&mut cluster, &before.node).unwrap();
    cluster
        .kubectl(&["delete", "pod", "redis-0", "--force", "--grace-period=0"])
        .unwrap();
    let after = wait_running(&mut cluster, "app=redis", 3, Some(("redis-0", &before.uid))).unwrap()
        ["redis-0"]
        .clone();
    assert_ne!(after.node, before.node);
    assert!(
        after.node.starts_with("z1-"),
        "redis-0 left its zone: {}",
        after.node
    );
    assert_eq!(after.ip, before.ip, "same IP after the node failure");
    let lease = rt
        .block_on(nh.lease_by_ip(after.ip.parse().unwrap()))
        .unwrap();
    assert_eq!(
        lease.attachment.unwrap().node,
        after.node,
        "NetHouse moved the attachment"
    );

    // Ordinary pods: IPs from their zone, released when the Deployment goes.
    cluster
        .kubectl_stdin(&["apply", "-f", "-"], Some(DEPLOY))
        .unwrap();
    let web = wait_running(&mut cluster, "app=web", 2, None).unwrap();
    let web_ips: Vec<String> = web.values().map(|r| r.ip.clone()).collect();
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
        !left.contains(&format!("nhse{}", std::process::id() % 1000)),
        "network namespaces left behind: {left}"
    );
}
