//! `make demo`: the whole stack on one machine. A real control plane (upstream binaries), a
//! real `nethouse serve`, four simulated nodes in two zones running pods through Debian's
//! bridge plugin with nethouse-cni as IPAM, and a StatefulSet whose pods keep their IPs
//! through a pod deletion and a node failure. Prints pod -> node -> zone -> IP tables and tears
//! everything down.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nethouse_e2e::agent::{Agent, AgentConfig};
use nethouse_e2e::binaries::workspace_bin;
use nethouse_e2e::cluster::{Cluster, ClusterOptions};

const NODES: &[(&str, &str)] = &[
    ("z1-a", "z1"),
    ("z1-b", "z1"),
    ("z2-a", "z2"),
    ("z2-b", "z2"),
];

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

type Row = (String, String, String); // node, uid, ip

fn pods(c: &Cluster) -> BTreeMap<String, Row> {
    let out = c
        .kubectl(&[
            "get", "pods", "-l", "app=redis", "-o",
            r#"jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.metadata.uid} {.status.phase} {.status.podIP}{"\n"}{end}"#,
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

fn zone_of(node: &str) -> &str {
    NODES
        .iter()
        .find(|(n, _)| *n == node)
        .map(|(_, z)| *z)
        .unwrap_or("?")
}

fn table(before: &BTreeMap<String, Row>, after: &BTreeMap<String, Row>) {
    println!(
        "{:<10} {:<24} {:<24} {:<16} {:<16} SAME IP",
        "POD", "NODE (ZONE) BEFORE", "NODE (ZONE) AFTER", "IP BEFORE", "IP AFTER"
    );
    for (pod, (node, _, ip)) in before {
        let (n2, ip2) = after
            .get(pod)
            .map(|(n, _, i)| (n.as_str(), i.as_str()))
            .unwrap_or(("-", "-"));
        println!(
            "{pod:<10} {:<24} {:<24} {ip:<16} {ip2:<16} {}",
            format!("{node} ({})", zone_of(node)),
            format!("{n2} ({})", zone_of(n2)),
            if ip == ip2 { "yes" } else { "NO" }
        );
    }
}

fn wait_running(
    c: &mut Cluster,
    n: usize,
    not_uid: Option<(&str, &str)>,
) -> anyhow::Result<BTreeMap<String, Row>> {
    c.wait_for("StatefulSet pods running", Duration::from_secs(180), |c| {
        let p = pods(c);
        let fresh = not_uid.is_none_or(|(pod, uid)| p.get(pod).is_some_and(|(_, u, _)| u != uid));
        (p.len() == n && fresh).then_some(p)
    })
}

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let _enter = rt.enter();
    let work = tempfile::Builder::new()
        .prefix("nethouse-demo-")
        .tempdir()?;

    step("NetHouse: `nethouse serve` with one subnet per zone");
    let nethouse_bin = workspace_bin("nethouse")?;
    let ready = work.path().join("nethouse.addr");
    let child = Command::new(&nethouse_bin)
        .args([
            "serve",
            "--insecure-no-auth",
            "--listen",
            "127.0.0.1:0",
            "--default-cooldown",
            "10m",
        ])
        .arg("--data-dir")
        .arg(work.path().join("nethouse"))
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.path().join("nethouse.log"))?)
        .spawn()
        .context("starting nethouse serve")?;
    let _nethouse = Nethouse(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.exists() {
        if Instant::now() > deadline {
            bail!("nethouse serve did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("http://{}", std::fs::read_to_string(&ready)?.trim());
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
    let cni = workspace_bin("nethouse-cni")?;
    let kube = rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(&cluster.kubeconfig)?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        anyhow::Ok(kube::Client::try_from(cfg)?)
    })?;
    let mut agent = Agent::new(
        kube,
        AgentConfig {
            nethouse_urls: vec![url.clone()],
            nethouse_token_file: None,
            cni_path: format!(
                "/usr/lib/cni:{}",
                cni.parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            cluster: "demo".into(),
            prefix: format!("nhd{}", std::process::id() % 1000),
        },
    );
    for (node, zone) in NODES {
        rt.block_on(agent.add_node(node, zone))?;
    }
    print!(
        "{}",
        cluster.kubectl(&["get", "nodes", "-L", "nethouse.io/network-zone"])?
    );
    println!(
        "note: the scheduler extender and location controller (manifests/) come with the next issue;\n      \
         until then the StatefulSet pins zone z1 with a nodeSelector."
    );

    step("A 3-replica StatefulSet with nethouse.io/fixed-ip: \"true\"");
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(STS))?;
    let first = wait_running(&mut cluster, 3, None)?;
    print!("{}", cluster.kubectl(&["get", "pods", "-o", "wide"])?);

    step("Delete pod redis-1: the StatefulSet controller recreates it");
    let uid1 = first["redis-1"].1.clone();
    cluster.kubectl(&["delete", "pod", "redis-1", "--wait=false"])?;
    let after_delete = wait_running(&mut cluster, 3, Some(("redis-1", &uid1)))?;
    table(&first, &after_delete);

    let (dead, uid0, _) = after_delete["redis-0"].clone();
    step(&format!(
        "Node {dead} (redis-0's host) dies: heartbeats stop, no CNI DEL ever runs"
    ));
    agent.kill(&dead)?;
    cluster.wait_for("the node to be NotReady", Duration::from_secs(120), |c| {
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
    })?;
    print!(
        "{}",
        cluster.kubectl(&["get", "nodes", "-L", "nethouse.io/network-zone"])?
    );
    println!("operator: kubectl delete pod redis-0 --force --grace-period=0");
    cluster.kubectl(&["delete", "pod", "redis-0", "--force", "--grace-period=0"])?;
    let after_failure = wait_running(&mut cluster, 3, Some(("redis-0", &uid0)))?;

    step("Before -> after (pod deletion, then node failure)");
    table(&first, &after_failure);
    for (pod, (node, _, _)) in &after_failure {
        if *node == dead {
            println!(
                "({pod} is still bound to the dead node {dead}: it keeps its IP there until it is evicted or force-deleted)"
            );
        }
    }
    println!();
    print!("{}", cli(&["lease", "list"])?);

    let same = first
        .iter()
        .all(|(p, (_, _, ip))| after_failure.get(p).is_some_and(|(_, _, ip2)| ip2 == ip));
    let zones_kept = after_failure.values().all(|(n, _, _)| zone_of(n) == "z1");
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
