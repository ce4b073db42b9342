//! `make demo`: the whole stack on one machine. A real control plane (upstream binaries) whose
//! kube-scheduler calls `nethouse-scheduler-extender`, a real `nethouse serve`, the
//! `nethouse-location-controller`, four simulated nodes in two zones running pods through
//! Debian's bridge plugin with nethouse-cni as IPAM, and a StatefulSet whose pods keep their IPs
//! and zones through a pod deletion and a node failure, keep them through a scale-down and
//! scale-up inside the retention, and give them back when the StatefulSet is deleted. Prints
//! pod -> node -> zone -> IP tables and tears everything down.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nethouse_e2e::binaries::workspace_bin;
use nethouse_e2e::cluster::{Cluster, ClusterOptions};
use nethouse_e2e::ports::free_port;
use nethouse_e2e::stack::{
    PodRow, agent, apply_crd, fixed_statefulset, kube_client, scheduler_config,
    wait_node_not_ready, wait_running,
};

// The one way to spawn `nethouse serve`, shared with NetHouse's own tests and bench (a test
// file of that crate, so included rather than depended on).
#[allow(dead_code)]
#[path = "../../../nethouse/tests/common/serve_process.rs"]
mod serve_process;
use serve_process::Serve;

const NODES: &[(&str, &str)] = &[
    ("z1-a", "z1"),
    ("z1-b", "z1"),
    ("z2-a", "z2"),
    ("z2-b", "z2"),
];

/// A child process stopped with SIGTERM when dropped.
struct Proc(Child);

impl Drop for Proc {
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

/// `nethouse serve` as a process; returns it and its URL.
fn start_nethouse(dir: &std::path::Path) -> anyhow::Result<(Proc, String)> {
    let served = Serve::new(workspace_bin("nethouse")?, dir.join("nethouse.addr"))
        .args([
            "--insecure-no-auth",
            "--listen",
            "127.0.0.1:0",
            "--default-cooldown",
            "10m",
        ])
        .arg("--data-dir")
        .arg(dir.join("nethouse"))
        .log(dir.join("nethouse.log"))
        .within(Duration::from_secs(20))
        .spawn()?;
    Ok((Proc(served.child), format!("http://{}", served.addr)))
}

/// A workspace binary as a process, logging to `dir/NAME.log`.
fn spawn(dir: &std::path::Path, name: &str, args: &[String]) -> anyhow::Result<Proc> {
    let child = Command::new(workspace_bin(name)?)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log")))?)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(Proc(child))
}

fn same_ips(a: &BTreeMap<String, PodRow>, b: &BTreeMap<String, PodRow>) -> bool {
    a.iter()
        .all(|(p, r)| b.get(p).is_some_and(|x| x.ip == r.ip))
}

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let rt = nethouse_e2e::stack::runtime();
    let _enter = rt.enter();
    let work = tempfile::Builder::new()
        .prefix("nethouse-demo-")
        .tempdir()?;
    let dir = work.path();

    step("NetHouse: `nethouse serve` with one subnet per zone");
    let (_nethouse, url) = start_nethouse(dir)?;
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
    for (zone, cidr) in [("z1", "10.210.0.0/24"), ("z2", "10.211.0.0/24")] {
        cli(&[
            "subnet", "add", "--zone", zone, "--cidr", cidr, "-o", "json",
        ])?;
    }
    print!("{}", cli(&["subnet", "list"])?);

    step(
        "Control plane: etcd + kube-apiserver + kube-controller-manager + kube-scheduler (v1.35.8) with the NetHouse extender",
    );
    let port = free_port()?;
    let sched_cfg = scheduler_config(dir, port)?;
    let mut cluster = Cluster::start(ClusterOptions {
        scheduler_config: Some(sched_cfg),
        ..ClusterOptions::default()
    })?;
    apply_crd(&mut cluster)?;
    println!("apiserver {} ready; Location CRD applied", cluster.server);
    let kubeconfig = cluster.kubeconfig.display().to_string();
    let _extender = spawn(
        dir,
        "nethouse-scheduler-extender",
        &[
            format!("--listen=127.0.0.1:{port}"),
            format!("--kubeconfig={kubeconfig}"),
            format!("--nethouse={url}"),
            "--cluster=demo".into(),
            "--zones-refresh-seconds=1".into(),
        ],
    )?;
    let _controller = spawn(
        dir,
        "nethouse-location-controller",
        &[
            format!("--kubeconfig={kubeconfig}"),
            format!("--nethouse={url}"),
            "--cluster=demo".into(),
            "--leader-lease-namespace=default".into(),
            "--identity=demo".into(),
            format!("--health-listen=127.0.0.1:{}", free_port()?),
        ],
    )?;
    println!(
        "nethouse-scheduler-extender on 127.0.0.1:{port}, nethouse-location-controller running"
    );

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

    step(
        "A 3-replica StatefulSet with nethouse.io/fixed-ip: \"true\" (no nodeSelector: the extender places it)",
    );
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&fixed_statefulset("redis", 3, None, false)),
    )?;
    let first = wait_running(&mut cluster, "app=redis", 3, None)?;
    print!("{}", cluster.kubectl(&["get", "pods", "-o", "wide"])?);
    let locs = cluster.wait_for("3 Locations", Duration::from_secs(60), |c| {
        let out = c.kubectl(&["get", "loc"]).ok()?;
        (out.matches("Running").count() == 3).then_some(out)
    })?;
    println!("the extender wrote a Location per pod:\n{locs}");

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
    let zones_kept = after_failure
        .iter()
        .all(|(p, r)| zone_of(&r.node) == zone_of(&first[p].node));
    println!("\n{dead} comes back.");
    agent.revive(&dead)?;

    step(
        "Scale 3 -> 1 with nethouse.io/ip-retention: 10m: redis-1 and redis-2 go to the recycle bin",
    );
    cluster.kubectl(&[
        "annotate",
        "statefulset",
        "redis",
        "nethouse.io/ip-retention=10m",
    ])?;
    cluster.kubectl(&["scale", "statefulset", "redis", "--replicas=1"])?;
    let bin = cluster.wait_for("2 Retained Locations", Duration::from_secs(90), |c| {
        let out = c.kubectl(&["get", "loc"]).ok()?;
        (out.matches("Retained").count() == 2).then_some(out)
    })?;
    print!("{bin}");
    print!("{}", cli(&["lease", "list"])?);

    step("Scale 1 -> 3 inside the retention: the same IPs come back");
    cluster.kubectl(&["scale", "statefulset", "redis", "--replicas=3"])?;
    let after_scale = wait_running(&mut cluster, "app=redis", 3, None)?;
    table(&after_failure, &after_scale);

    step("Delete the StatefulSet with retention 0s: every IP goes back to the pool");
    cluster.kubectl(&[
        "annotate",
        "--overwrite",
        "statefulset",
        "redis",
        "nethouse.io/ip-retention=0s",
    ])?;
    cluster.kubectl(&["delete", "statefulset", "redis", "--wait=false"])?;
    let released = cluster.wait_for("the IPs released", Duration::from_secs(180), |c| {
        let locs = c.kubectl(&["get", "loc", "-o", "name"]).ok()?;
        let leases = cli(&["lease", "list", "-o", "json"]).ok()?;
        (locs.trim().is_empty() && !leases.contains("redis-")).then_some(())
    });
    print!("{}", cli(&["subnet", "list"])?);
    println!("(the released addresses cool down for 10 minutes before anyone else gets them)");

    let same = same_ips(&first, &after_failure) && same_ips(&first, &after_scale);
    step("Tear down");
    agent.shutdown();
    drop(cluster);
    println!(
        "done in {:.0}s: every pod kept its IP: {}, stayed in its zone: {}, IPs released at the end: {}",
        started.elapsed().as_secs_f64(),
        if same { "yes" } else { "NO" },
        if zones_kept { "yes" } else { "NO" },
        if released.is_ok() { "yes" } else { "NO" },
    );
    if !(same && zones_kept && released.is_ok()) {
        bail!(
            "the demo's promise did not hold (logs in {})",
            dir.display()
        );
    }
    Ok(())
}
