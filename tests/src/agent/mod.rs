//! The node agent: simulated nodes for the real control plane. Each node registers a Node
//! (zone label, capacity, Ready), renews its Lease, and "runs" every pod bound to it by creating
//! a network namespace and invoking the real CNI chain (Debian's `bridge` with `nethouse-cni` as
//! IPAM) exactly as containerd does: `CNI_ARGS` with the pod identity, the pod's annotations as
//! `runtimeConfig["io.kubernetes.cri.pod-annotations"]`. It then reports the pod Running with
//! the IPs it got. A pod being deleted gets CNI DEL, then is finalized. A node can be killed
//! (heartbeats stop, namespaces stay, no DEL ever runs) and revived.

mod cni;
pub mod node;
mod pods;
pub mod time;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kube::Client;
use tokio::task::JoinHandle;

pub use cni::Sandbox;

#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// NetHouse URLs for the IPAM config.
    pub nethouse_urls: Vec<String>,
    /// Bearer token file of the `node` role, if NetHouse requires one.
    pub nethouse_token_file: Option<PathBuf>,
    /// `CNI_PATH`: where `bridge` and `nethouse-cni` are.
    pub cni_path: String,
    /// Cluster name the IPAM puts in fixed-lease owners.
    pub cluster: String,
    /// Prefix of the network namespaces and bridges this agent creates (short: names are
    /// limited to 15 bytes).
    pub prefix: String,
}

/// What a node keeps across a kill: its sandboxes (the namespaces stay, like a powered-off
/// host's would), so a revived node can clean up after pods that are gone.
pub(crate) type Sandboxes = Arc<Mutex<HashMap<String, Sandbox>>>;

pub struct NodeHandle {
    pub name: String,
    pub zone: String,
    index: usize,
    sandboxes: Sandboxes,
    tasks: Vec<JoinHandle<()>>,
}

impl NodeHandle {
    pub fn alive(&self) -> bool {
        !self.tasks.is_empty()
    }

    /// Pod IPs by pod name (namespace/name) currently running on this node.
    pub fn sandboxes(&self) -> Vec<Sandbox> {
        self.sandboxes
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }
}

pub struct Agent {
    client: Client,
    config: AgentConfig,
    pub nodes: Vec<NodeHandle>,
    /// Index of the next node's bridge (several agent processes on one host must not share).
    next_index: usize,
}

impl Agent {
    pub fn new(client: Client, config: AgentConfig) -> Agent {
        Agent {
            client,
            config,
            nodes: Vec::new(),
            next_index: 0,
        }
    }

    /// Starts bridge numbering at `n` (one process per node in the demo).
    pub fn skip_indexes(&mut self, n: usize) {
        self.next_index = n;
    }

    /// Registers a node in `zone` and starts running its pods.
    pub async fn add_node(&mut self, name: &str, zone: &str) -> anyhow::Result<()> {
        node::register(&self.client, name, zone).await?;
        let mut handle = NodeHandle {
            name: name.to_string(),
            zone: zone.to_string(),
            index: self.next_index,
            sandboxes: Arc::default(),
            tasks: Vec::new(),
        };
        handle.tasks = self.tasks_for(&handle);
        self.next_index += 1;
        self.nodes.push(handle);
        Ok(())
    }

    fn tasks_for(&self, handle: &NodeHandle) -> Vec<JoinHandle<()>> {
        let cni = cni::CniRunner::new(&self.config, &handle.name, &handle.zone, handle.index);
        vec![
            tokio::spawn(node::heartbeat(self.client.clone(), handle.name.clone())),
            tokio::spawn(pods::run(
                self.client.clone(),
                handle.name.clone(),
                cni,
                handle.sandboxes.clone(),
            )),
        ]
    }

    fn position(&self, name: &str) -> anyhow::Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| anyhow::anyhow!("no node {name}"))
    }

    /// The host dies: heartbeats stop, pods stay "running" in their namespaces, no CNI DEL.
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let i = self.position(name)?;
        for t in self.nodes[i].tasks.drain(..) {
            t.abort();
        }
        Ok(())
    }

    /// The host comes back: heartbeats resume; sandboxes of pods that are gone are torn down.
    pub fn revive(&mut self, name: &str) -> anyhow::Result<()> {
        let i = self.position(name)?;
        if !self.nodes[i].alive() {
            let tasks = self.tasks_for(&self.nodes[i]);
            self.nodes[i].tasks = tasks;
        }
        Ok(())
    }

    /// Stops every node and removes every namespace and bridge this agent created (no CNI
    /// DEL: the leases are NetHouse's business).
    pub fn shutdown(&mut self) {
        for node in &mut self.nodes {
            for t in node.tasks.drain(..) {
                t.abort();
            }
            let sandboxes: Vec<Sandbox> = node
                .sandboxes
                .lock()
                .map(|mut s| s.drain().map(|(_, v)| v).collect())
                .unwrap_or_default();
            for sb in sandboxes {
                cni::remove_netns(&sb.netns);
            }
            cni::remove_link(&cni::bridge_name(&self.config.prefix, node.index));
        }
        cni::remove_all_netns(&self.config.prefix);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.shutdown();
    }
}
