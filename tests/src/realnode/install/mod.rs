//! The shipped manifests on real nodes, installed as users install them: a cluster with what
//! the base relies on ([`InstallStack`]: kube-proxy, cluster DNS, the images imported on every
//! node, nodes with no pod network yet), then `kubectl apply -k` of an overlay, the Secrets as
//! `manifests/secrets-example.yaml` makes them ([`secrets`]), subnets with `nethouse subnet add`
//! ([`subnets`]), and every workload of the base waited for ([`workloads`]); [`base`] does
//! all of that. [`story`] then tells the fixed-IP story on it with the pods of [`pods`].

pub mod base;
mod fabric_proxy;
pub mod pods;
pub mod secrets;
pub mod story;
pub mod subnets;
pub mod workloads;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::netns::Entered;
use super::node::{Installed, NodeCni, NodeEnv, NodeSpec};
use super::nodes::{RealNodes, api_server_for_nodes};
use super::process::Proc;
use super::{Fabric, images};
use crate::binaries;
use crate::cluster::{Cluster, ClusterOptions};

/// The DNS Service's address (`tests/harness/coredns.yaml`), in the harness's Service range.
pub const CLUSTER_DNS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

/// How long each part took.
#[derive(Clone, Copy, Debug)]
pub struct InstallTimings {
    /// The images built (cargo included when the binaries were current: seconds).
    pub images: Duration,
    pub control_plane: Duration,
    /// From the nodes' start until every one is registered (not Ready: no CNI yet).
    pub nodes_registered: Duration,
    /// Then until pods reach Services through the fabric (see `fabric_proxy`).
    pub services: Duration,
}

/// Fields drop in declaration order: nodes, the fabric's kube-proxy, the control plane, then the
/// fabric after this thread left it. Stays on the thread that started it.
pub struct InstallStack {
    pub nodes: RealNodes,
    _fabric_proxy: Proc,
    pub cluster: Cluster,
    pub timings: InstallTimings,
    /// Images, the Secrets' files.
    pub dir: tempfile::TempDir,
    _in_fabric: Entered,
    pub fabric: Fabric,
}

/// The layout of the install scenarios (tests, demo): 2 zones × 2 nodes.
pub const TWO_ZONES: &[&str] = &["z1", "z2"];
pub const TWO_BY_TWO: &[(&str, &str)] = &[
    ("z1-a", "z1"),
    ("z1-b", "z1"),
    ("z2-a", "z2"),
    ("z2-b", "z2"),
];

impl InstallStack {
    /// [`InstallStack::start`] with [`TWO_ZONES`] and [`TWO_BY_TWO`].
    pub fn two_by_two() -> anyhow::Result<InstallStack> {
        Self::start(TWO_ZONES, TWO_BY_TWO)
    }

    /// `nodes`: (name, zone), every zone among `zones`; their zone labels are set at
    /// registration, as users label nodes. CoreDNS is applied; nothing of NetHouse is.
    pub fn start(zones: &[&str], nodes: &[(&str, &str)]) -> anyhow::Result<InstallStack> {
        let bin = binaries::ensure_with_node()?;
        let coredns = binaries::ensure_coredns()?;
        let tag = super::unique_tag('i');
        let dir = tempfile::Builder::new()
            .prefix("nethouse-install-")
            .tempdir()?;
        let t = Instant::now();
        let image_dir = dir.path().join("images");
        let base_images = images::build(&image_dir)?;
        let install_images = images::build_install(&image_dir, &bin.k8s, &coredns)?;
        let images_built = t.elapsed();

        let fabric = Fabric::create(&format!("nhf{tag}"), zones)?;
        let in_fabric = fabric.enter()?;
        let t = Instant::now();
        let mut cluster = Cluster::start(ClusterOptions {
            node_facing_address: Some(std::net::IpAddr::V4(fabric.address)),
            ..ClusterOptions::default()
        })?;
        let control_plane = t.elapsed();
        let api_server = api_server_for_nodes(&cluster, &fabric)?;
        let ca_dir = cluster.dir.join("pki");
        let mut fabric_proxy = fabric_proxy::start(
            &fabric,
            &bin.k8s.join("kube-proxy"),
            &api_server,
            &ca_dir,
            // With the control plane's logs, which a failed test keeps.
            &cluster.dir.join("logs/fabric-kube-proxy"),
        )?;
        let env = NodeEnv {
            kubelet: bin.kubelet(),
            api_server,
            ca_dir,
            images: base_images,
            tag,
            cni: NodeCni::Installed(Installed {
                kube_proxy: bin.k8s.join("kube-proxy"),
                cluster_dns: CLUSTER_DNS,
                images: install_images,
            }),
        };
        let specs: Vec<NodeSpec> = nodes
            .iter()
            .map(|(name, zone)| NodeSpec {
                name: name.to_string(),
                zone: zone.to_string(),
            })
            .collect();
        let mut real = RealNodes::start(&fabric, &env, &specs)?;
        let nodes_registered = real.wait_registered(&mut cluster, Duration::from_secs(120))?;
        cluster.kubectl(&["apply", "-f", &harness_file("coredns.yaml")])?;
        let services = fabric_proxy::wait_for_services(&mut fabric_proxy, Duration::from_secs(60))?;
        Ok(InstallStack {
            nodes: real,
            _fabric_proxy: fabric_proxy,
            cluster,
            timings: InstallTimings {
                images: images_built,
                control_plane,
                nodes_registered,
                services,
            },
            dir,
            _in_fabric: in_fabric,
            fabric,
        })
    }
}

/// A file of `tests/harness/`.
pub fn harness_file(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("harness")
        .join(name)
        .display()
        .to_string()
}
