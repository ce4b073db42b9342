//! `make demo`: the whole stack on one machine, on real nodes. A real control plane (upstream
//! v1.35.8 binaries), four real nodes in two zones (each its own kubelet, containerd, runc and
//! kube-proxy; a zone is an L2 segment with its gateway), and NetHouse installed as users
//! install it: `kubectl apply -k` of the shipped base with its images built here. Then a
//! StatefulSet of fixed pods placed by the shipped second scheduler keeps its IPs and zones,
//! reachable from a client pod of its zone, through each pod's deletion, a node's death, a
//! scale-down and scale-up inside the retention, and gives them back when it is deleted.
//! Prints pod → node → zone → IP tables and tears everything down. Needs root.

use std::time::Instant;

use anyhow::bail;
use nethouse_e2e::realnode::install::pods::Rows;
use nethouse_e2e::realnode::install::story::{self, Step};
use nethouse_e2e::realnode::install::{InstallStack, base, secrets, workloads};

const REPLICAS: usize = 5;

fn step(text: &str) {
    println!("\n\x1b[1m== {text}\x1b[0m");
}

fn table(before: &Rows, after: &Rows) {
    println!(
        "{:<8} {:<16} {:<16} {:<14} {:<14} SAME IP, ZONE",
        "POD", "NODE BEFORE", "NODE AFTER", "IP BEFORE", "IP AFTER"
    );
    for (pod, a) in after {
        let (node, ip, same) = match before.get(pod) {
            Some(b) => (
                format!("{} ({})", b.node, b.zone),
                b.ip.as_str(),
                if b.ip == a.ip && b.zone == a.zone {
                    "yes"
                } else {
                    "NO"
                },
            ),
            None => ("-".into(), "-", "-"),
        };
        println!(
            "{pod:<8} {node:<16} {:<16} {ip:<14} {:<14} {same}",
            format!("{} ({})", a.node, a.zone),
            a.ip
        );
    }
}

fn show(s: &Step) {
    table(&s.before, &s.after);
    for n in &s.notes {
        println!("  {n}");
    }
    let took: Vec<String> = s
        .took
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64()))
        .collect();
    println!("  Running again after (s): {}", took.join(", "));
    println!(
        "  reached at its IP from a client pod of its zone: {}",
        if s.unreachable.is_empty() {
            "every pod".to_string()
        } else {
            format!("NO: {:?}", s.unreachable)
        }
    );
}

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    if !rustix::process::geteuid().is_root() {
        bail!(
            "the demo runs real nodes (network and mount namespaces, containerd): run it as root"
        );
    }
    step(
        "Real nodes: 2 zones x 2 nodes (kubelet + containerd + kube-proxy), control plane v1.35.8, CoreDNS",
    );
    let mut s = InstallStack::two_by_two()?;
    for z in &s.fabric.zones {
        println!(
            "zone {}: L2 segment {} (gateway {})",
            z.name,
            z.cidr(),
            z.gateway()
        );
    }
    print!(
        "{}",
        s.cluster.kubectl(&[
            "get",
            "nodes",
            "-o",
            "wide",
            "-L",
            "nethouse.io/network-zone"
        ])?
    );
    let result = run(&mut s);
    if result.is_err() {
        s.nodes.keep_logs();
        eprintln!("{}", workloads::describe(&s.cluster, secrets::NAMESPACE));
    }
    let (same_ip, same_zone, released) = result?;
    step("Tear down");
    drop(s);
    let yes = |b: bool| if b { "yes" } else { "NO" };
    println!(
        "done in {:.0}s: every pod kept its IP: {}, stayed in its zone: {}, IPs released at the end: {}",
        started.elapsed().as_secs_f64(),
        yes(same_ip),
        yes(same_zone),
        yes(released),
    );
    if !(same_ip && same_zone && released) {
        bail!("the demo's promise did not hold");
    }
    Ok(())
}

/// Whether every pod kept its IP, its zone, and whether the IPs were released at the end.
fn run(s: &mut InstallStack) -> anyhow::Result<(bool, bool, bool)> {
    step(
        "kubectl apply -k tests/overlays/real (the shipped base, images built here), Secrets, subnets",
    );
    let b = base::apply(s)?;
    print!(
        "{}",
        s.cluster
            .kubectl(&["-n", secrets::NAMESPACE, "get", "pods", "-o", "wide"])?
    );

    step(&format!(
        "A {REPLICAS}-replica StatefulSet with nethouse.io/fixed-ip: \"true\", schedulerName: nethouse-scheduler"
    ));
    let created = story::create(s, REPLICAS)?;
    show(&created);

    let mut steps = Vec::new();
    step("Delete each pod: the StatefulSet controller recreates it");
    let deleted = story::delete_each(s, &created.after)?;
    show(&deleted);

    step(
        "A node dies (link down, kubelet, containerd and its containers killed); operator: kubectl delete pod --force --grace-period=0",
    );
    let failed = story::node_failure(s, &b, &deleted.after)?;
    show(&failed);

    step("Scale 5 -> 2 -> 5 with nethouse.io/ip-retention: 10m");
    let scaled = story::scale_down_up(s, &failed.after, 2)?;
    show(&scaled);
    print!("{}", s.cluster.kubectl(&["get", "loc"])?);

    steps.extend([deleted, failed, scaled]);
    step("Delete the StatefulSet with retention 0s: every IP goes back to the pool");
    let released = story::delete_statefulset(s, &b);
    match &released {
        Ok(took) => println!(
            "no Location and no lease of its pods left after {:.1} s",
            took.as_secs_f64()
        ),
        Err(e) => println!("{e:#}"),
    }
    let reached = created.unreachable.is_empty() && steps.iter().all(|s| s.unreachable.is_empty());
    Ok((
        reached && steps.iter().all(Step::kept_ips),
        steps.iter().all(Step::kept_zones),
        released.is_ok(),
    ))
}
