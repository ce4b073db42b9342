//! Real nodes (root): 2 zones × 2 nodes, each a kubelet + containerd in its own namespaces,
//! the shipped macvlan conflist with nethouse-cni as IPAM invoked by containerd's CRI plugin.
//! A fixed pod gets an address of its zone, keeps it when recreated on the other node of the
//! zone, and is reached there over the zone's L2 from a pod on the first node; the three DELs
//! kubelet and containerd send for one sandbox change the lease once (the late ones, from
//! kubelet's garbage collection, leave the pod's new attachment alone); an ordinary pod's lease
//! ends when the pod is deleted. z2-b's conflist lacks the pod-annotations capability: a fixed
//! pod there gets no address (never an ordinary one); users see the plugin's message in the
//! pod's `FailedCreatePodSandBox` event, NetHouse counts it and holds no lease for it, and the
//! pod deletes cleanly. Timings are printed (`--nocapture`).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use nethouse_api::{BlockingClient, ClientConfig, LeaseKind, Owner, RefusalReason};
use nethouse_e2e::cluster::Cluster;
use nethouse_e2e::realnode::{RealNodes, RealStack, images};

const CLUSTER: &str = "e2e";
/// The node whose conflist lacks the pod-annotations capability; no other pod runs there.
const NO_ANNOTATIONS_NODE: &str = "z2-b";
const REFUSED: &str = r#"nethouse_cni_refused_total{reason="pod_annotations_missing"}"#;

/// A pod pinned to `node`: `fixed` asks for a fixed IP; `command` runs in busybox.
fn pod(name: &str, node: &str, fixed: bool, restart: &str, command: &str) -> String {
    let annotations = if fixed {
        "  annotations: {nethouse.io/fixed-ip: \"true\"}\n"
    } else {
        ""
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n{annotations}\
         spec:\n  nodeSelector: {{kubernetes.io/hostname: {node}}}\n  restartPolicy: {restart}\n\
         \x20 automountServiceAccountToken: false\n  enableServiceLinks: false\n  terminationGracePeriodSeconds: 2\n\
         \x20 containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", {command:?}]\n",
        image = images::BUSYBOX,
    )
}

/// A container that exits at once on SIGTERM (a shell as PID 1 ignores it otherwise).
const SLEEP: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

/// (phase, pod IP, node) once the pod's phase is one of `phases`.
fn wait_phase(
    c: &mut Cluster,
    name: &str,
    phases: &[&str],
    timeout: Duration,
) -> anyhow::Result<(String, String, String)> {
    c.wait_for(&format!("pod {name} in {phases:?}"), timeout, |c| {
        let out = c
            .kubectl(&[
                "get",
                "pod",
                name,
                "-o",
                "jsonpath={.status.phase} {.status.podIP} {.spec.nodeName}",
            ])
            .ok()?;
        let f: Vec<&str> = out.split_whitespace().collect();
        (f.len() == 3 && phases.contains(&f[0]))
            .then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
    })
}

fn create(c: &Cluster, manifest: &str) -> anyhow::Result<Instant> {
    c.kubectl_stdin(&["create", "-f", "-"], Some(manifest))?;
    Ok(Instant::now())
}

/// The times (ms since the epoch) of the DELs nethouse-cni ran for `pod` on `node`.
fn dels(nodes: &RealNodes, node: &str, pod: &str) -> anyhow::Result<Vec<u64>> {
    Ok(nodes
        .get(node)?
        .cni_calls()
        .iter()
        .filter(|c| c["command"] == "DEL" && c["pod"] == pod)
        .filter_map(|c| c["ts_ms"].as_u64())
        .collect())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[test]
fn fixed_pod_keeps_its_ip_on_real_nodes_of_its_zone() {
    let t_test = Instant::now();
    let mut s = RealStack::start_with(
        &["z1", "z2"],
        &[
            ("z1-a", "z1"),
            ("z1-b", "z1"),
            ("z2-a", "z2"),
            ("z2-b", "z2"),
        ],
        CLUSTER,
        Duration::from_secs(600),
        &[NO_ANNOTATIONS_NODE],
    )
    .expect("fabric, NetHouse, control plane and 4 real nodes");
    for n in &s.nodes.nodes {
        println!(
            "node {} ({}, {}): namespaces, containerd with images, kubelet in {:.1} s",
            n.name,
            n.zone,
            n.ip,
            n.started_in.as_secs_f64()
        );
    }
    let t = s.timings;
    println!(
        "control plane {:.1} s; 4 nodes started {:.1} s, all Ready {:.1} s after their start",
        t.control_plane.as_secs_f64(),
        t.nodes_started.as_secs_f64(),
        t.nodes_ready.as_secs_f64()
    );
    // Panics while the stack is alive, so that its logs are kept.
    if let Err(e) = scenario(&mut s) {
        panic!("{e:#}");
    }
    println!(
        "whole test before teardown {:.1} s",
        t_test.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    drop(s.nodes);
    let nodes_stopped = t.elapsed();
    drop(s.cluster);
    println!(
        "teardown: nodes {:.1} s, with the control plane {:.1} s",
        nodes_stopped.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
}

fn scenario(s: &mut RealStack) -> anyhow::Result<()> {
    let z1 = s.fabric.zone("z1")?.clone();
    let nh = s.nh.clone();
    let lease_of = |s: &RealStack, ip: IpAddr| s.rt.block_on(nh.lease_by_ip(ip));

    // A fixed pod on z1-a gets an address of z1's pool.
    let t = create(&s.cluster, &pod("db-0", "z1-a", true, "Always", SLEEP))?;
    let (_, ip, node) = wait_phase(
        &mut s.cluster,
        "db-0",
        &["Running"],
        Duration::from_secs(60),
    )?;
    println!("fixed pod Running in {:.1} s", t.elapsed().as_secs_f64());
    anyhow::ensure!(node == "z1-a", "db-0 ran on {node}");
    let fixed_ip: Ipv4Addr = ip.parse()?;
    anyhow::ensure!(
        fixed_ip.octets()[..3] == z1.gateway().octets()[..3] && fixed_ip.octets()[3] >= 50,
        "db-0 got {fixed_ip}, not from z1's pool"
    );
    let lease = lease_of(s, IpAddr::V4(fixed_ip))?;
    anyhow::ensure!(
        lease.kind == LeaseKind::Fixed
            && lease.owner.as_ref().is_some_and(|o| o.pod == "db-0")
            && lease.attachment.as_ref().is_some_and(|a| a.node == "z1-a"),
        "db-0's lease: {lease:?}"
    );

    // Deleted: the first DEL (kubelet stopping the sandbox) detaches the lease, which is kept.
    let (t, deleted_ms) = (Instant::now(), now_ms());
    s.cluster.kubectl(&["delete", "pod", "db-0"])?;
    println!("fixed pod deleted in {:.1} s", t.elapsed().as_secs_f64());
    let lease = lease_of(s, IpAddr::V4(fixed_ip))?;
    anyhow::ensure!(
        dels(&s.nodes, "z1-a", "default/db-0")?.len() == 1 && lease.attachment.is_none(),
        "after the pod is gone: DELs {:?}, lease {lease:?}",
        dels(&s.nodes, "z1-a", "default/db-0")?
    );

    // The same name on the other node of z1: the same address.
    let t = create(&s.cluster, &pod("db-0", "z1-b", true, "Always", SLEEP))?;
    let (_, ip, node) = wait_phase(
        &mut s.cluster,
        "db-0",
        &["Running"],
        Duration::from_secs(60),
    )?;
    println!(
        "fixed pod Running again on the other node in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    anyhow::ensure!(node == "z1-b", "db-0 ran on {node}");
    anyhow::ensure!(
        ip == fixed_ip.to_string(),
        "db-0 came back with {ip}, not {fixed_ip}"
    );
    let reattached = lease_of(s, IpAddr::V4(fixed_ip))?;

    // A pod on z1-a reaches it on z1-b over the zone's L2 segment: no router, TTL intact.
    let t = create(
        &s.cluster,
        &pod(
            "ping",
            "z1-a",
            false,
            "Never",
            &format!("ping -c 3 -W 2 {fixed_ip}"),
        ),
    )?;
    let (phase, _, _) = wait_phase(
        &mut s.cluster,
        "ping",
        &["Succeeded", "Failed"],
        Duration::from_secs(60),
    )?;
    println!("ping pod finished in {:.1} s", t.elapsed().as_secs_f64());
    let log = s
        .cluster
        .kubectl(&["logs", "ping"])
        .unwrap_or_else(|e| format!("(no logs: {e:#})"));
    anyhow::ensure!(
        phase == "Succeeded",
        "ping from z1-a to {fixed_ip} on z1-b: {phase}\n{log}"
    );
    anyhow::ensure!(log.contains("ttl=64"), "not one L2 hop:\n{log}");

    // An ordinary pod: an ordinary lease, ended when the pod is deleted.
    let t = create(&s.cluster, &pod("web", "z2-a", false, "Always", SLEEP))?;
    let (_, ip, _) = wait_phase(&mut s.cluster, "web", &["Running"], Duration::from_secs(60))?;
    println!("ordinary pod Running in {:.1} s", t.elapsed().as_secs_f64());
    let web_ip: IpAddr = ip.parse()?;
    let lease = lease_of(s, web_ip)?;
    anyhow::ensure!(
        lease.kind == LeaseKind::Ephemeral && lease.zone == "z2",
        "web's lease: {lease:?}"
    );
    s.cluster.kubectl(&["delete", "pod", "web", "ping"])?;
    let lease = lease_of(s, web_ip);
    anyhow::ensure!(lease.is_err(), "web is gone, its lease is not: {lease:?}");

    refused_without_pod_annotations(s)?;

    // kubelet's sandbox garbage collection (every minute) stops and removes the old sandbox of
    // db-0 on z1-a: two more DELs, three in all. They find the lease attached to the new
    // sandbox on z1-b and change nothing: one state change for one pod's three DELs.
    let at = s.cluster.wait_for(
        "the old sandbox's three DELs",
        Duration::from_secs(120),
        |_| {
            let at = dels(&s.nodes, "z1-a", "default/db-0").ok()?;
            (at.len() >= 3).then_some(at)
        },
    )?;
    let at: Vec<String> = at
        .iter()
        .map(|ms| format!("+{:.1} s", ms.saturating_sub(deleted_ms) as f64 / 1000.0))
        .collect();
    println!(
        "DELs of db-0's first sandbox at {} after its delete",
        at.join(", ")
    );
    anyhow::ensure!(at.len() == 3, "DELs of one sandbox: {at:?}");
    let lease = lease_of(s, IpAddr::V4(fixed_ip))?;
    anyhow::ensure!(
        lease == reattached,
        "the old sandbox's late DELs changed the lease:\nbefore {reattached:?}\nafter  {lease:?}"
    );
    Ok(())
}

/// One series of NetHouse's `/metrics`; 0 when absent.
fn metric(s: &RealStack, series: &str) -> anyhow::Result<f64> {
    let client = BlockingClient::new(ClientConfig::new(s.nethouse.url()))?;
    let (status, body) = client.get("/metrics")?;
    anyhow::ensure!(status.is_success(), "GET /metrics: {status}");
    Ok(String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0))
}

/// A fixed pod on the node whose conflist lacks the pod-annotations capability: containerd
/// passes the plugin no annotations, so it cannot tell the pod is fixed and gives it no
/// address. What users see is the plugin's message in the pod's events; NetHouse counted every
/// refused ADD and holds no lease for the pod; the pod deletes cleanly (DEL works without
/// annotations).
fn refused_without_pod_annotations(s: &mut RealStack) -> anyhow::Result<()> {
    let (name, node) = ("lost-0", NO_ANNOTATIONS_NODE);
    let pod_key = format!("default/{name}");
    let message = nethouse_cni::refusal::message(RefusalReason::PodAnnotationsMissing);
    let before = metric(s, REFUSED)?;
    let t = create(&s.cluster, &pod(name, node, true, "Always", SLEEP))?;
    let selector =
        format!("involvedObject.kind=Pod,involvedObject.name={name},reason=FailedCreatePodSandBox");
    let event = s.cluster.wait_for(
        "the refused pod's FailedCreatePodSandBox event",
        Duration::from_secs(60),
        |c| {
            let out = c
                .kubectl(&[
                    "get",
                    "events",
                    "--field-selector",
                    &selector,
                    "-o",
                    "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
                ])
                .ok()?;
            out.lines()
                .find(|m| m.contains(&message))
                .map(str::to_string)
        },
    )?;
    println!(
        "fixed pod on a node without the capability refused in {:.1} s: {event}",
        t.elapsed().as_secs_f64()
    );
    let status = s.cluster.kubectl(&[
        "get",
        "pod",
        name,
        "-o",
        "jsonpath={.status.phase} {.status.podIP}",
    ])?;
    anyhow::ensure!(
        status.trim() == "Pending",
        "{name} without annotations: {status:?}, not Pending without an IP"
    );
    let adds: Vec<_> = s
        .nodes
        .get(node)?
        .cni_calls()
        .into_iter()
        .filter(|c| c["command"] == "ADD" && c["pod"] == pod_key.as_str())
        .collect();
    anyhow::ensure!(
        !adds.is_empty()
            && adds
                .iter()
                .all(|c| c["code"] == 7 && c["msg"] == message.as_str()),
        "the plugin's ADDs of {name}: {adds:?}"
    );
    let counted = metric(s, REFUSED)? - before;
    // Each ADD is logged after its report: NetHouse has counted at least those logged.
    anyhow::ensure!(
        counted >= adds.len() as f64,
        "NetHouse counted {counted} refusals for {} refused ADDs",
        adds.len()
    );
    let owner = Owner {
        cluster: CLUSTER.into(),
        namespace: "default".into(),
        pod: name.into(),
    };
    let lease = s.rt.block_on(s.nh.lease_by_owner(&owner));
    anyhow::ensure!(lease.is_err(), "a refused pod has a lease: {lease:?}");
    let on_node =
        s.rt.block_on(s.nh.list_all_leases(&nethouse_api::LeaseFilter {
            node: Some(node.into()),
            ..Default::default()
        }))?;
    anyhow::ensure!(on_node.is_empty(), "leases on {node}: {on_node:?}");

    s.cluster.kubectl(&["delete", "pod", name])?;
    let dels: Vec<_> = s
        .nodes
        .get(node)?
        .cni_calls()
        .into_iter()
        .filter(|c| c["command"] == "DEL" && c["pod"] == pod_key.as_str())
        .collect();
    anyhow::ensure!(
        !dels.is_empty() && dels.iter().all(|c| c["result"] == "ok"),
        "the plugin's DELs of {name}: {dels:?}"
    );
    println!(
        "{} refused ADDs, {counted} counted by NetHouse, {} DELs ok",
        adds.len(),
        dels.len()
    );
    Ok(())
}
