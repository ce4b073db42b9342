//! The base installed on an [`InstallStack`] as users install it: `kubectl apply -k` of an
//! overlay (the single replica's or the HA one's: [`Flavor`]), the Secrets, the CNI DaemonSet on every node (plugin, conflist and credentials
//! checked there), NetHouse's StatefulSet, a subnet per zone, then every workload of the base
//! Ready with no container restarted. Progress is printed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::secrets::{self, Credentials, EtcdClientFiles};
use super::{InstallStack, subnets, workloads};

const NS: &str = secrets::NAMESPACE;
/// Where the single-replica overlay's PersistentVolume is (its node's own /var/lib): NetHouse
/// runs there, and its data dies with that node.
pub const PV_NODE: &str = "z1-a";
const PV_PATH: &str = "/var/lib/nethouse-data";

/// Which NetHouse the base runs.
pub enum Flavor {
    /// `tests/overlays/real`: one replica on a local volume of [`PV_NODE`].
    Single,
    /// `tests/overlays/real-ha`: `manifests/ha`, 3 replicas on an etcd (already running,
    /// where the overlay says) with these client files.
    Ha(EtcdClientFiles),
}

impl Flavor {
    fn overlay(&self) -> PathBuf {
        let name = match self {
            Flavor::Single => "overlays/real",
            Flavor::Ha(_) => "overlays/real-ha",
        };
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
    }

    fn nethouse(&self) -> &'static str {
        match self {
            Flavor::Single => "statefulset/nethouse",
            Flavor::Ha(_) => "deployment/nethouse",
        }
    }
}

/// What an operator holds once the base runs.
pub struct Base {
    pub creds: Credentials,
    /// NetHouse as reached from outside the cluster (its pods' nodes, hostNetwork): one URL, or
    /// every node's, comma-separated (`NETHOUSE_SERVER` tries them in order).
    pub nethouse_url: String,
    /// The node whose death the install does not survive (the single replica's volume).
    pub pinned_node: Option<String>,
}

/// The single replica's overlay applied; see [`apply_with`].
pub fn apply(s: &mut InstallStack) -> anyhow::Result<Base> {
    apply_with(s, Flavor::Single)
}

/// Applies the overlay of `flavor` and waits until every workload of the base is Ready.
pub fn apply_with(s: &mut InstallStack, flavor: Flavor) -> anyhow::Result<Base> {
    let (nethouse_ips, pinned_node) = match &flavor {
        Flavor::Single => {
            let node = s.nodes.get(PV_NODE)?;
            std::fs::create_dir_all(node.path(PV_PATH))?;
            (vec![node.ip], Some(PV_NODE.to_string()))
        }
        Flavor::Ha(_) => (s.nodes.nodes.iter().map(|n| n.ip).collect(), None),
    };
    let t = Instant::now();
    s.cluster
        .kubectl(&["apply", "-k", &flavor.overlay().display().to_string()])?;
    let creds = secrets::create(&s.cluster, &s.dir.path().join("secrets"), &nethouse_ips)?;
    if let Flavor::Ha(etcd) = &flavor {
        secrets::create_etcd_client(&s.cluster, etcd)?;
    }
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
        "nethouse-cni DaemonSet Ready on {} nodes in {:.1} s",
        s.nodes.nodes.len(),
        took.as_secs_f64()
    );
    check_node_files(s)?;
    println!("plugin, conflist and credentials on every node");

    let took = workloads::wait_ready(
        &mut s.cluster,
        NS,
        &[flavor.nethouse()],
        Duration::from_secs(120),
    )?;
    println!(
        "NetHouse ({}) Ready in {:.1} s",
        flavor.nethouse(),
        took.as_secs_f64()
    );
    let nethouse_url = nethouse_ips
        .iter()
        .map(|ip| format!("https://{ip}:7420"))
        .collect::<Vec<_>>()
        .join(",");
    subnets::add(&nethouse_url, &creds, &s.fabric.zones)?;
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
            flavor.nethouse(),
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
    no_restarts(s)?;
    Ok(Base {
        creds,
        nethouse_url,
        pinned_node,
    })
}

/// The DaemonSet's init container put the plugin, a conflist naming the node and its zone, and
/// the node's credentials on every node.
fn check_node_files(s: &InstallStack) -> anyhow::Result<()> {
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
    Ok(())
}

/// Ready without a crash on the way: a container restarted is a defect of the install.
fn no_restarts(s: &InstallStack) -> anyhow::Result<()> {
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
