//! What the nodes of a run share, and where each node's CNI chain comes from: written by the
//! harness (the nodes of `RealStack`) or installed by the shipped DaemonSet (`install`).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::cni::{self, ChainSettings};
use super::hostfs::{self, Overlay};
use super::images::Images;
use super::uplink::UPLINK;

/// What every node of a run shares.
pub struct NodeEnv {
    pub kubelet: PathBuf,
    /// kube-apiserver as nodes dial it.
    pub api_server: String,
    /// The cluster's CA: `ca.crt`, `ca.key`.
    pub ca_dir: PathBuf,
    pub images: Images,
    /// Makes namespace and cgroup names unique to this run.
    pub tag: String,
    pub cni: NodeCni,
}

/// Where a node's CNI chain comes from.
pub enum NodeCni {
    /// The harness writes the shipped macvlan conflist with `plugin` as IPAM, pointing at the
    /// harness's NetHouse; `cluster` names the cluster in fixed leases' owners. The nodes named
    /// in `without_pod_annotations` get it without the pod-annotations capability.
    Harness {
        plugin: PathBuf,
        nethouse_url: String,
        cluster: String,
        without_pod_annotations: Vec<String>,
    },
    /// The shipped `nethouse-cni` DaemonSet installs it, as on a node of a real install.
    Installed(Installed),
}

/// A node of a real install: its uplink is `eth0` (the shipped macvlan template's master), its
/// `/etc` and `/opt` its own (see `hostfs`), kube-proxy runs next to kubelet, and pods resolve
/// names with the cluster DNS.
pub struct Installed {
    pub kube_proxy: PathBuf,
    pub cluster_dns: Ipv4Addr,
    /// Image tarballs imported besides pause and busybox.
    pub images: Vec<PathBuf>,
}

/// An installed node's uplink, as the shipped macvlan template names it.
const INSTALLED_UPLINK: &str = "eth0";

/// Where the node's containerd finds the CNI chain, and the directories the node has of its own.
pub struct ChainDirs {
    pub bin: PathBuf,
    pub conf: PathBuf,
    pub overlays: Vec<Overlay>,
}

impl NodeCni {
    pub fn installed(&self) -> Option<&Installed> {
        match self {
            NodeCni::Installed(i) => Some(i),
            NodeCni::Harness { .. } => None,
        }
    }

    /// The name of the node's link to its zone.
    pub fn uplink(&self) -> &'static str {
        match self {
            NodeCni::Installed(_) => INSTALLED_UPLINK,
            NodeCni::Harness { .. } => UPLINK,
        }
    }

    /// Before the node starts: the harness's chain written into `dir`, or the node's own
    /// `/etc` and `/opt` seeded (the DaemonSet's hostPath volumes land there).
    pub fn prepare(&self, spec: &NodeSpec, dir: &Path) -> anyhow::Result<ChainDirs> {
        match self {
            NodeCni::Harness {
                plugin,
                nethouse_url,
                cluster,
                without_pod_annotations,
            } => {
                let (bin, conf) = (dir.join("cni/bin"), dir.join("cni/net.d"));
                cni::install(&bin, plugin)?;
                std::fs::create_dir_all(&conf)?;
                let chain = cni::conflist(&ChainSettings {
                    zone: &spec.zone,
                    node: &spec.name,
                    master: UPLINK,
                    nethouse_url,
                    cluster,
                    log_file: &dir.join(cni::LOG),
                    pod_annotations: !without_pod_annotations.contains(&spec.name),
                })?;
                std::fs::write(conf.join("10-nethouse.conflist"), chain)?;
                Ok(ChainDirs {
                    bin,
                    conf,
                    overlays: Vec::new(),
                })
            }
            NodeCni::Installed(_) => Ok(ChainDirs {
                bin: PathBuf::from("/opt/cni/bin"),
                conf: PathBuf::from("/etc/cni/net.d"),
                overlays: hostfs::prepare(dir)?,
            }),
        }
    }
}

#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    pub zone: String,
}
