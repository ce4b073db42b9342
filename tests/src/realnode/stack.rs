//! Everything a real-node scenario stands on, started in order and stopped in reverse: the
//! fabric (the calling thread enters it), a runtime, NetHouse with one subnet per zone, the
//! control plane reachable from the nodes, and the nodes, Ready.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use nethouse::server::running::Running;
use nethouse_api::Client;

use super::nethouse::start_in_fabric;
use super::netns::Entered;
use super::node::{NodeCni, NodeEnv, NodeSpec};
use super::nodes::{RealNodes, api_server_for_nodes};
use super::{Fabric, images};
use crate::binaries::{self, workspace_bin};
use crate::cluster::{Cluster, ClusterOptions};

/// How long each part took to come up.
#[derive(Clone, Copy, Debug)]
pub struct StartTimings {
    pub control_plane: Duration,
    /// Namespaces, containerd with the images imported, kubelet launched (all nodes at once).
    pub nodes_started: Duration,
    /// From the nodes' start until every one is Ready.
    pub nodes_ready: Duration,
}

/// Fields drop in declaration order: nodes first, the fabric last, after this thread left it.
/// Must stay on the thread that started it (the fabric guard is not `Send`).
pub struct RealStack {
    pub nodes: RealNodes,
    pub cluster: Cluster,
    pub nethouse: Running,
    pub nh: Client,
    pub rt: tokio::runtime::Runtime,
    pub timings: StartTimings,
    /// NetHouse's store, the image tarballs.
    _dir: tempfile::TempDir,
    _in_fabric: Entered,
    pub fabric: Fabric,
}

impl RealStack {
    /// `nodes`: (name, zone), every zone among `zones`. Fixed leases are owned in cluster
    /// `cluster`; released addresses cool down for `cooldown`. The plugin is `NETHOUSE_CNI_BIN`
    /// or the workspace's newest `nethouse-cni`.
    pub fn start(
        zones: &[&str],
        nodes: &[(&str, &str)],
        cluster: &str,
        cooldown: Duration,
    ) -> anyhow::Result<RealStack> {
        Self::start_with(zones, nodes, cluster, cooldown, &[])
    }

    /// As [`RealStack::start`], with the nodes named in `without_pod_annotations` set up as a
    /// node whose conflist lacks the pod-annotations capability.
    pub fn start_with(
        zones: &[&str],
        nodes: &[(&str, &str)],
        cluster: &str,
        cooldown: Duration,
        without_pod_annotations: &[&str],
    ) -> anyhow::Result<RealStack> {
        let bin = binaries::ensure_with_node()?;
        let cni_plugin = match std::env::var_os("NETHOUSE_CNI_BIN") {
            Some(p) => p.into(),
            None => workspace_bin("nethouse-cni")?,
        };
        let tag = super::unique_tag('x');
        let dir = tempfile::Builder::new()
            .prefix("nethouse-realstack-")
            .tempdir()?;
        let fabric = Fabric::create(&format!("nhf{tag}"), zones)?;
        let in_fabric = fabric.enter()?;
        // Built inside the fabric: its threads, and NetHouse's listener, live there.
        let rt = crate::stack::runtime();
        let (nethouse, nh) = rt.block_on(start_in_fabric(
            &fabric,
            &dir.path().join("nethouse"),
            cooldown,
        ))?;
        let t = Instant::now();
        let control_plane = Cluster::start(ClusterOptions {
            node_facing_address: Some(IpAddr::V4(fabric.address)),
            ..ClusterOptions::default()
        })?;
        let control_plane_up = t.elapsed();
        let env = NodeEnv {
            kubelet: bin.kubelet(),
            api_server: api_server_for_nodes(&control_plane, &fabric)?,
            ca_dir: control_plane.dir.join("pki"),
            images: images::build(&dir.path().join("images"))?,
            tag,
            cni: NodeCni::Harness {
                plugin: cni_plugin,
                nethouse_url: nethouse.url(),
                cluster: cluster.to_string(),
                without_pod_annotations: without_pod_annotations
                    .iter()
                    .map(|n| n.to_string())
                    .collect(),
            },
        };
        let specs: Vec<NodeSpec> = nodes
            .iter()
            .map(|(name, zone)| NodeSpec {
                name: name.to_string(),
                zone: zone.to_string(),
            })
            .collect();
        let mut control_plane = control_plane;
        let t = Instant::now();
        let mut real = RealNodes::start(&fabric, &env, &specs)?;
        let nodes_started = t.elapsed();
        real.wait_ready(&mut control_plane, Duration::from_secs(120))?;
        Ok(RealStack {
            nodes: real,
            cluster: control_plane,
            nethouse,
            nh,
            rt,
            timings: StartTimings {
                control_plane: control_plane_up,
                nodes_started,
                nodes_ready: t.elapsed(),
            },
            _dir: dir,
            _in_fabric: in_fabric,
            fabric,
        })
    }
}
