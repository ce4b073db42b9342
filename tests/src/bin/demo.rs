//! `make demo`: the whole stack on one machine. A real control plane (upstream binaries), a
//! real `nethouse serve`, four simulated nodes in two zones running pods through Debian's
//! bridge plugin with nethouse-cni as IPAM, and a StatefulSet whose pods keep their IPs
//! through a pod deletion and a node failure. Prints pod -> node -> zone -> IP tables and tears
//! everything down.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nethouse_e2e::binaries::workspace_bin;
use nethouse_e2e::cluster::{Cluster, ClusterOptions};
use nethouse_e2e::stack::{
    PodRow, agent, fixed_statefulset, kube_client, wait_node_not_ready, wait_running,
};

const NODES: &[(&str, &str)] = &[
    ("z1-a", "z1"),
    ("z1-b", "z1"),
    ("z2-a", "z2"),
    ("z2-b", "z2"),
];

struct Nethouse(Child);

impl Drop for Nethouse {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn step(text: &str) {
    println!("\n\x1b[1m== {text}\x1b[0m");
}

fn zone_of(node: &str) -> &str {
    NODES
        .iter()
        .find(|(n, _)| *n == node)
        .map(|(_, z)| *z)
        .unwrap_or("?")
}

fn table(before: &BTreeMap<String, PodRow>, after: &BTreeMap<String, PodRow>) {
    println!(
        "{:<10} {:<24} {:<24} {:<16} {:<16} SAME IP",
        "POD", "NODE (ZONE) BEFORE", "NODE (ZONE) AFTER", "IP BEFORE", "IP AFTER"
    );
    for (pod, b) in before {
        let (n2, ip2) = after
            .get(pod)
            .map(|a| (a.node.as_str(), a.ip.as_str()))
            .unwrap_or(("-", "-"));
        println!(
            "{pod:<10} {:<24} {:<24} {:<16} {ip2:<16} {}",
            format!("{} ({})", b.node, zone_of(&b.node)),
            format!("{n2} ({})", zone_of(n2)),
            b.ip,
            if b.ip == ip2 { "yes" } else { "NO" }
        );
    }
}

/// `nethouse serve` as a process, and a way to run the `nethouse` CLI against it.
fn start_nethouse(dir: &std::path::Path) -> anyhow::Result<(Nethouse, String)> {
    let ready = dir.join("nethouse.addr");
    let child = Command::new(workspace_bin("nethouse")?)
        .args([
            "serve",
            "--insecure-no-auth",
            "--listen",
            "127.0.0.1:0",
            "--default-cooldown",
            "10m",
        ])
        .arg("--data-dir")
        .arg(dir.join("nethouse"))
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("nethouse.log"))?)
        .spawn()
        .context("starting nethouse serve")?;
    let process = Nethouse(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.exists() {
        if Instant::now() > deadline {
            bail!("nethouse serve did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((
        process,
        format!("http://{}", std::fs::read_to_string(&ready)?.trim()),
    ))
}

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let rt = nethouse_e2e::stack::runtime();
    let _enter = rt.enter();
    let work = tempfile::Builder::new()
        .prefix("nethouse-demo-")
        .tempdir()?;

    step("NetHouse: `nethouse serve` with one subnet per zone");
    let (_nethouse, url) = start_nethouse(work.path())?;
    let nethouse_bin = workspace_bin("nethouse")?;
    let cli = |args: &[&str]| -> anyhow::Result<String> {
        let out = Command::new(&nethouse_bin)
            .env("NETHOUSE_SERVER", &url)
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "nethouse {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    cli(&[
        "subnet",
        "add",
        "--zone",
        "z1",
        "--cidr",
        "10.210.0.0/24",
        "-o",
        "json",
    ])?;
    cli(&[
        "subnet",
        "add",
        "--zone",
        "z2",
        "--cidr",
        "10.211.0.0/24",
        "-o",
        "json",
    ])?;
    print!("{}", cli(&["subnet", "list"])?);

    step(
        "Control plane: etcd + kube-apiserver + kube-controller-manager + kube-scheduler (v1.35.8)",
    );
    let mut cluster = Cluster::start(ClusterOptions::default())?;
    println!("apiserver {} ready", cluster.server);

    step("Nodes: 2 zones x 2 nodes, pods wired by Debian's bridge plugin + nethouse-cni");
    let kube = rt.block_on(kube_client(&cluster.kubeconfig))?;
    let mut agent = agent(kube, &url, "demo", "dm")?;
    for (node, zone) in NODES {
        rt.block_on(agent.add_node(node, zone))?;
    }
    print!(
        "{}",
        cluster.kubectl(&["get", "nodes", "-L", "nethouse.io/network-zone"])?
    );
    println!(
        "note: this demo pins zone z1 with a nodeSelector; the scheduler extender (see the README\n      \
         and tests/tests/extender.rs) enforces zones without one."
    );

    step("A 3-replica StatefulSet with nethouse.io/fixed-ip: \"true\"");
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&fixed_statefulset("redis", 3, Some("z1"), false)),
    )?;
    let first = wait_running(&mut cluster, "app=redis", 3, None)?;
    print!("{}", cluster.kubectl(&["get", "pods", "-o", "wide"])?);

    step("Delete pod redis-1: the StatefulSet controller recreates it");
    cluster.kubectl(&["delete", "pod", "redis-1", "--wait=false"])?;
    let after_delete = wait_running(
        &mut cluster,
        "app=redis",
        3,
        Some(("redis-1", &first["redis-1"].uid)),
    )?;
    table(&first, &after_delete);

    let dead = after_delete["redis-0"].node.clone();
    step(&format!(
        "Node {dead} (redis-0's host) dies: heartbeats stop, no CNI DEL ever runs"
    ));
    agent.kill(&dead)?;
    wait_node_not_ready(&mut cluster, &dead)?;
    print!(
        "{}",
        cluster.kubectl(&["get", "nodes", "-L", "nethouse.io/network-zone"])?
    );
    println!("operator: kubectl delete pod redis-0 --force --grace-period=0");
    cluster.kubectl(&["delete", "pod", "redis-0", "--force", "--grace-period=0"])?;
    let after_failure = wait_running(
        &mut cluster,
        "app=redis",
        3,
        Some(("redis-0", &after_delete["redis-0"].uid)),
    )?;

    step("Before -> after (pod deletion, then node failure)");
    table(&first, &after_failure);
    for (pod, row) in &after_failure {
        if row.node == dead {
            println!(
                "({pod} is still bound to the dead node {dead}: it keeps its IP there until it is evicted or force-deleted)"
            );
        }
    }
    println!();
    print!("{}", cli(&["lease", "list"])?);

    let same = first
        .iter()
        .all(|(p, r)| after_failure.get(p).is_some_and(|a| a.ip == r.ip));
    let zones_kept = after_failure.values().all(|r| zone_of(&r.node) == "z1");
    step("Tear down");
    agent.shutdown();
    drop(cluster);
    println!(
        "done in {:.0}s: every pod kept its IP: {}, stayed in its zone: {}",
        started.elapsed().as_secs_f64(),
        if same { "yes" } else { "NO" },
        if zones_kept { "yes" } else { "NO" }
    );
    if !(same && zones_kept) {
        bail!("the demo's promise did not hold");
    }
    Ok(())
}
