//! Whereabouts v0.9.2, the peer IPAM users pick today, installed on an [`InstallStack`] as its
//! users install it, so that a bench compares it with NetHouse on the same nodes. Its DaemonSet
//! applies nothing but files on each node: the plugin binary into `/opt/cni/bin`, a kubeconfig
//! with its ServiceAccount's token and its configuration file into
//! `/etc/cni/net.d/whereabouts.d`; the user writes the network's conflist. The harness writes the
//! same files onto each node directly ([`Node::path`](crate::realnode::Node::path)), which
//! is what the DaemonSet's container does through its hostPath volumes. The reconciler the
//! DaemonSet also runs (a daily cron that frees addresses of pods gone without a DEL) is left
//! out: no pod here goes without its DEL, and it takes no part in an allocation.

pub mod conf;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::install::{InstallStack, workloads};
use super::node::Node;
use super::nodes::api_server_for_nodes;
use crate::binaries;

/// Where Whereabouts' objects live: its pools, reservations and its cluster-wide lock (the
/// Lease every ADD and DEL takes), as its DaemonSet's namespace.
pub const NAMESPACE: &str = "kube-system";
const SERVICE_ACCOUNT: &str = "whereabouts";
/// The uplink of an install's nodes (`NodeCni::uplink`), the shipped macvlan template's master.
const MASTER: &str = "eth0";
/// How long the plugin's token lasts: longer than any bench run.
const TOKEN_DURATION: &str = "12h";

/// What the plugin does with the API: its pools and reservations, and its lock. The upstream
/// ClusterRole also grants pods, nodes, network attachment definitions and events, for the
/// reconciler and the node-slice controller, which are not run here.
const RBAC: &str = "\
apiVersion: v1
kind: ServiceAccount
metadata: {name: whereabouts, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: whereabouts-cni}
rules:
- apiGroups: [whereabouts.cni.cncf.io]
  resources: [ippools, overlappingrangeipreservations, nodeslicepools]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch, create, update, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: whereabouts}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: whereabouts-cni}
subjects:
- {kind: ServiceAccount, name: whereabouts, namespace: kube-system}
";

/// How long each part took.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    /// CRDs established, RBAC and the token.
    pub api: Duration,
    /// The files on every node → every node Ready (the conflist gives them a pod network).
    pub nodes_ready: Duration,
    /// Then CoreDNS Ready: its pods are the first to get addresses from Whereabouts.
    pub dns_ready: Duration,
}

/// Installs Whereabouts on every node of `s` and waits until the nodes and cluster DNS are Ready.
pub fn install(s: &mut InstallStack) -> anyhow::Result<Timings> {
    let bin = binaries::ensure_whereabouts()?;
    let t = Instant::now();
    apply_crds(s, &bin)?;
    s.cluster.kubectl_stdin(&["apply", "-f", "-"], Some(RBAC))?;
    let token = s
        .cluster
        .kubectl(&[
            "-n",
            NAMESPACE,
            "create",
            "token",
            SERVICE_ACCOUNT,
            &format!("--duration={TOKEN_DURATION}"),
        ])?
        .trim()
        .to_string();
    anyhow::ensure!(!token.is_empty(), "kubectl create token printed nothing");
    let api = t.elapsed();

    let t = Instant::now();
    let server = api_server_for_nodes(&s.cluster, &s.fabric)?;
    let ca = s.cluster.dir.join("pki/ca.crt");
    for node in &s.nodes.nodes {
        let zone = s.fabric.zone(&node.zone)?;
        write_node_files(
            node,
            &bin,
            &ca,
            &conf::kubeconfig(&server, &token, NAMESPACE),
        )
        .and_then(|()| write_atomic(node, conf::CONFLIST, &conf::conflist(zone, MASTER)?))
        .with_context(|| format!("installing Whereabouts on {}", node.name))?;
    }
    let nodes_ready = s
        .nodes
        .wait_ready(&mut s.cluster, Duration::from_secs(120))
        .map(|_| t.elapsed())?;
    let dns_ready = workloads::wait_ready(
        &mut s.cluster,
        "kube-system",
        &["deployment/coredns"],
        Duration::from_secs(180),
    )?;
    Ok(Timings {
        api,
        nodes_ready,
        dns_ready,
    })
}

/// The module's CRDs (`build-whereabouts.sh` copies them next to the binary), applied and
/// established before any plugin call needs them.
fn apply_crds(s: &mut InstallStack, bin: &Path) -> anyhow::Result<()> {
    let dir = bin.parent().context("the binary's directory")?.join("crds");
    s.cluster
        .kubectl(&["apply", "-f", &dir.display().to_string()])?;
    s.cluster.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/ippools.whereabouts.cni.cncf.io",
        "crd/overlappingrangeipreservations.whereabouts.cni.cncf.io",
    ])?;
    Ok(())
}

/// The plugin, its configuration file, the kubeconfig and the CA it names: what the
/// DaemonSet's container writes through its hostPath volumes.
fn write_node_files(node: &Node, bin: &Path, ca: &Path, kubeconfig: &str) -> anyhow::Result<()> {
    let plugin = node.path("/opt/cni/bin/whereabouts");
    std::fs::copy(bin, &plugin).with_context(|| format!("copying {}", bin.display()))?;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755))?;
    std::fs::create_dir_all(node.path(conf::DIR))?;
    std::fs::copy(ca, node.path(conf::CA_FILE))?;
    write_atomic(node, conf::KUBECONFIG, kubeconfig)?;
    // It holds a token: the node's root only, as the DaemonSet makes it.
    std::fs::set_permissions(
        node.path(conf::KUBECONFIG),
        std::fs::Permissions::from_mode(0o600),
    )?;
    write_atomic(node, conf::CONF_FILE, &conf::plugin_conf())
}

/// Written beside under a name containerd does not load (`.tmp`), then renamed: containerd
/// must never read half a conflist.
fn write_atomic(node: &Node, path: &str, text: &str) -> anyhow::Result<()> {
    let target: PathBuf = node.path(path);
    let tmp = target.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &target)?;
    Ok(())
}
