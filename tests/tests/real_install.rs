//! The shipped manifests, applied as users apply them, on real nodes (root): 2 zones × 2 nodes
//! (kubelet + containerd + kube-proxy each), CoreDNS, and `kubectl apply -k tests/overlays/real`
//! (the base with its images retargeted to ones built here, the macvlan template and a local
//! volume), the Secrets as `manifests/secrets-example.yaml` makes them, subnets with
//! `nethouse subnet add`. Every workload of the base becomes Ready as real pods: NetHouse's
//! StatefulSet, the nethouse-cni DaemonSet (whose init container put the plugin, the conflist and
//! the credentials on every node), the extender, the second scheduler, the controller's two
//! replicas. Then a StatefulSet of fixed pods placed by that scheduler keeps IP and zone through
//! each pod deleted, reachable at that IP from a client pod of its zone. Timings are printed
//! (`--nocapture`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nethouse_e2e::cluster::Cluster;
use nethouse_e2e::realnode::images;
use nethouse_e2e::realnode::install::{InstallStack, secrets, subnets, workloads};

const NS: &str = secrets::NAMESPACE;
/// Where the overlay's PersistentVolume is (its node's own /var/lib).
const PV_NODE: &str = "z1-a";
const PV_PATH: &str = "/var/lib/nethouse-data";

#[test]
fn shipped_manifests_run_on_real_nodes_and_fixed_pods_keep_ip_and_zone() {
    let t_test = Instant::now();
    let mut s = InstallStack::start(
        &["z1", "z2"],
        &[
            ("z1-a", "z1"),
            ("z1-b", "z1"),
            ("z2-a", "z2"),
            ("z2-b", "z2"),
        ],
    )
    .expect("images, fabric, control plane, 4 real nodes, CoreDNS");
    let t = s.timings;
    println!(
        "images {:.1} s; control plane {:.1} s; 4 nodes registered {:.1} s after their start; \
         Services routed {:.1} s later",
        t.images.as_secs_f64(),
        t.control_plane.as_secs_f64(),
        t.nodes_registered.as_secs_f64(),
        t.services.as_secs_f64()
    );
    // Panics while the stack is alive, so that its logs are kept.
    if let Err(e) = install(&mut s).and_then(|()| fixed_pods(&mut s)) {
        s.nodes.keep_logs();
        panic!("{e:#}\n{}", workloads::describe(&s.cluster, NS));
    }
    println!(
        "whole test before teardown {:.1} s",
        t_test.elapsed().as_secs_f64()
    );
}

fn install(s: &mut InstallStack) -> anyhow::Result<()> {
    let nethouse_node = s.nodes.get(PV_NODE)?;
    std::fs::create_dir_all(nethouse_node.path(PV_PATH))?;
    let nethouse_ip = nethouse_node.ip;
    let overlay = concat!(env!("CARGO_MANIFEST_DIR"), "/overlays/real");
    let t = Instant::now();
    s.cluster.kubectl(&["apply", "-k", overlay])?;
    let creds = secrets::create(&s.cluster, &s.dir.path().join("secrets"), nethouse_ip)?;
    println!(
        "applied, Secrets created in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let took = workloads::wait_ready(
        &mut s.cluster,
        NS,
        &["daemonset/nethouse-cni"],
        Duration::from_secs(240),
    )?;
    println!(
        "nethouse-cni DaemonSet Ready on 4 nodes in {:.1} s",
        took.as_secs_f64()
    );
    for n in &s.nodes.nodes {
        for f in [
            "/opt/cni/bin/nethouse-cni",
            "/etc/cni/net.d/10-nethouse.conflist",
            "/etc/nethouse-cni/node.token",
            "/etc/nethouse-cni/ca.crt",
        ] {
            anyhow::ensure!(n.path(f).is_file(), "{f} missing on {}", n.name);
        }
        let conflist: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            n.path("/etc/cni/net.d/10-nethouse.conflist"),
        )?)?;
        let ipam = &conflist["plugins"][0]["ipam"];
        anyhow::ensure!(
            ipam["zone"] == n.zone.as_str() && ipam["node"] == n.name.as_str(),
            "{}'s conflist: {conflist}",
            n.name
        );
    }
    println!("plugin, conflist and credentials on every node");

    let took = workloads::wait_ready(
        &mut s.cluster,
        NS,
        &["statefulset/nethouse"],
        Duration::from_secs(120),
    )?;
    println!("NetHouse StatefulSet Ready in {:.1} s", took.as_secs_f64());
    subnets::add(
        &format!("https://{nethouse_ip}:7420"),
        &creds,
        &s.fabric.zones,
    )?;
    let t = Instant::now();
    workloads::wait_ready(
        &mut s.cluster,
        "kube-system",
        &["deployment/coredns"],
        Duration::from_secs(120),
    )?;
    let took = workloads::wait_ready(
        &mut s.cluster,
        NS,
        &[
            "daemonset/nethouse-cni",
            "statefulset/nethouse",
            "deployment/nethouse-scheduler-extender",
            "deployment/nethouse-scheduler",
            "deployment/nethouse-location-controller",
        ],
        Duration::from_secs(180),
    )?;
    println!(
        "after the subnets: CoreDNS Ready in {:.1} s, every workload of the base Ready in {:.1} s",
        (t.elapsed() - took).as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    // Ready without a crash on the way: a container restarted is a defect of the install.
    let restarts = s.cluster.kubectl(&[
        "get",
        "pods",
        "-A",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name}{range .status.initContainerStatuses[*]} {.restartCount}{end}{range .status.containerStatuses[*]} {.restartCount}{end}{"\n"}{end}"#,
    ])?;
    let restarted: Vec<&str> = restarts
        .lines()
        .filter(|l| l.split_whitespace().skip(1).any(|n| n != "0"))
        .collect();
    anyhow::ensure!(restarted.is_empty(), "containers restarted: {restarted:?}");
    Ok(())
}

/// A container that exits at once on SIGTERM (a shell as PID 1 ignores it otherwise).
const SLEEP: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

fn statefulset(replicas: usize) -> String {
    format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\n  namespace: default\n\
         spec:\n  serviceName: db\n  replicas: {replicas}\n  podManagementPolicy: Parallel\n\
         \x20 selector: {{matchLabels: {{app: db}}}}\n  template:\n    metadata:\n      labels: {{app: db}}\n\
         \x20     annotations: {{nethouse.io/fixed-ip: \"true\"}}\n    spec:\n      schedulerName: nethouse-scheduler\n\
         \x20     terminationGracePeriodSeconds: 2\n      automountServiceAccountToken: false\n      enableServiceLinks: false\n\
         \x20     containers:\n      - name: main\n        image: {image}\n        imagePullPolicy: Never\n\
         \x20       command: [\"sh\", \"-c\", {SLEEP:?}]\n",
        image = images::BUSYBOX,
    )
}

/// An ordinary pod of `zone` (default scheduler) to ping from.
fn client(zone: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: client-{zone}\n  namespace: default\n\
         spec:\n  nodeSelector: {{nethouse.io/network-zone: {zone}}}\n  terminationGracePeriodSeconds: 1\n\
         \x20 automountServiceAccountToken: false\n  enableServiceLinks: false\n\
         \x20 containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: Never\n\
         \x20   command: [\"sh\", \"-c\", {SLEEP:?}]\n",
        image = images::BUSYBOX,
    )
}

/// (uid, IP, node) of a Running pod.
fn running(c: &Cluster, pod: &str) -> Option<(String, String, String)> {
    let out = c
        .kubectl(&[
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.status.phase} {.metadata.uid} {.status.podIP} {.spec.nodeName}",
        ])
        .ok()?;
    let f: Vec<&str> = out.split_whitespace().collect();
    (f.len() == 4 && f[0] == "Running").then(|| (f[1].into(), f[2].into(), f[3].into()))
}

fn zone_of(s: &InstallStack, node: &str) -> anyhow::Result<String> {
    Ok(s.nodes.get(node)?.zone.clone())
}

fn ping(c: &Cluster, zone: &str, ip: &str) -> anyhow::Result<()> {
    c.kubectl(&[
        "exec",
        &format!("client-{zone}"),
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        ip,
    ])
    .map(|_| ())
}

fn fixed_pods(s: &mut InstallStack) -> anyhow::Result<()> {
    const REPLICAS: usize = 4;
    for zone in ["z1", "z2"] {
        s.cluster
            .kubectl_stdin(&["create", "-f", "-"], Some(&client(zone)))?;
    }
    let t = Instant::now();
    s.cluster
        .kubectl_stdin(&["create", "-f", "-"], Some(&statefulset(REPLICAS)))?;
    let names: Vec<String> = (0..REPLICAS).map(|i| format!("db-{i}")).collect();
    let mut first = BTreeMap::new();
    for name in &names {
        let (uid, ip, node) =
            s.cluster
                .wait_for(&format!("{name} Running"), Duration::from_secs(120), |c| {
                    running(c, name)
                })?;
        first.insert(name.clone(), (uid, ip, zone_of(s, &node)?));
    }
    println!(
        "{REPLICAS} fixed pods Running through nethouse-scheduler in {:.1} s: {:?}",
        t.elapsed().as_secs_f64(),
        first
            .iter()
            .map(|(n, (_, ip, z))| format!("{n} {ip} {z}"))
            .collect::<Vec<_>>()
    );
    for zone in ["z1", "z2"] {
        let pod = format!("client-{zone}");
        s.cluster
            .wait_for(&format!("{pod} Running"), Duration::from_secs(60), |c| {
                running(c, &pod)
            })?;
    }
    for (name, (_, ip, zone)) in &first {
        let loc = s.cluster.kubectl(&[
            "get",
            "loc",
            name,
            "-o",
            "jsonpath={.spec.ips[*]} {.spec.zone} {.status.node} {.status.phase}",
        ])?;
        println!("Location {name}: {loc}");
        ping(&s.cluster, zone, ip)?;
    }

    let mut took = Vec::new();
    for (name, (uid, ip, zone)) in &first {
        let t = Instant::now();
        s.cluster
            .kubectl(&["delete", "pod", name, "--wait=false"])?;
        let (_, ip2, node2) = s.cluster.wait_for(
            &format!("{name} recreated and Running"),
            Duration::from_secs(120),
            |c| running(c, name).filter(|(u, _, _)| u != uid),
        )?;
        let d = t.elapsed();
        let zone2 = zone_of(s, &node2)?;
        anyhow::ensure!(
            &ip2 == ip && &zone2 == zone,
            "{name} was {ip} in {zone}, came back as {ip2} on {node2} ({zone2})"
        );
        ping(&s.cluster, zone, ip)?;
        println!(
            "{name} deleted → Running again in {:.1} s: {ip2} on {node2} ({zone2}), reachable from client-{zone}",
            d.as_secs_f64()
        );
        took.push(d);
    }
    took.sort();
    println!(
        "pod deleted → Running with the same IP: min {:.1} s, max {:.1} s",
        took[0].as_secs_f64(),
        took[took.len() - 1].as_secs_f64()
    );
    Ok(())
}
