//! Several real nodes started side by side against one control plane, and stopped side by side
//! when dropped; when the thread is panicking (a failed test) their work directories (configs,
//! containerd, kubelet and nethouse-cni logs) are kept and their path printed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::fabric::Fabric;
use super::node::{Node, NodeEnv, NodeSpec};
use crate::cluster::Cluster;

pub struct RealNodes {
    pub nodes: Vec<Node>,
    pub dir: PathBuf,
    tmp: Option<tempfile::TempDir>,
}

/// `https://<fabric address>:<apiserver port>`: the control plane runs in the fabric.
pub fn api_server_for_nodes(cluster: &Cluster, fabric: &Fabric) -> anyhow::Result<String> {
    let port = cluster
        .server
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .with_context(|| format!("no port in the apiserver URL {}", cluster.server))?;
    Ok(format!("https://{}:{port}", fabric.address))
}

impl RealNodes {
    /// Starts every node at once (each numbered within its zone in the order given).
    pub fn start(fabric: &Fabric, env: &NodeEnv, specs: &[NodeSpec]) -> anyhow::Result<RealNodes> {
        let tmp = tempfile::Builder::new()
            .prefix("nethouse-nodes-")
            .tempdir()?;
        let dir = tmp.path().to_path_buf();
        let mut placed = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let index = specs[..i].iter().filter(|s| s.zone == spec.zone).count();
            placed.push((spec, index));
        }
        let started: Vec<anyhow::Result<Node>> = std::thread::scope(|s| {
            let handles: Vec<_> = placed
                .iter()
                .map(|(spec, index)| {
                    let node_dir = dir.join(&spec.name);
                    s.spawn(move || Node::start(spec, *index, fabric, env, &node_dir))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a node's start panicked")))
                })
                .collect()
        });
        let mut nodes = RealNodes {
            nodes: Vec::new(),
            dir,
            tmp: Some(tmp),
        };
        let mut first_error = None;
        for (r, spec) in started.into_iter().zip(specs) {
            match r {
                Ok(node) => nodes.nodes.push(node),
                Err(e) => {
                    first_error.get_or_insert(e.context(format!("starting node {}", spec.name)));
                }
            }
        }
        match first_error {
            Some(e) => {
                nodes.keep_logs();
                Err(e)
            }
            None => Ok(nodes),
        }
    }

    /// Keeps the work directories after the nodes stop (a failed start or wait, a panic).
    pub fn keep_logs(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            eprintln!(
                "real-node work directories kept in {}",
                tmp.keep().display()
            );
        }
    }

    /// Waits until every node is Ready in the apiserver; fails early if a node's process died.
    /// Returns how long it took.
    pub fn wait_ready(
        &mut self,
        cluster: &mut Cluster,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let r = self.poll(cluster, timeout, true);
        if r.is_err() {
            self.keep_logs();
        }
        r
    }

    /// Waits until every node is registered, Ready or not: a node of an install has no pod
    /// network until the CNI DaemonSet ran there.
    pub fn wait_registered(
        &mut self,
        cluster: &mut Cluster,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let r = self.poll(cluster, timeout, false);
        if r.is_err() {
            self.keep_logs();
        }
        r
    }

    fn poll(
        &mut self,
        cluster: &mut Cluster,
        timeout: Duration,
        ready: bool,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            for n in &mut self.nodes {
                n.check_alive()?;
            }
            let out = cluster.kubectl(&[
                "get",
                "nodes",
                "-o",
                r#"jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
            ])?;
            let there = |name: &str| {
                out.lines().any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.first() == Some(&name) && (!ready || f.get(1) == Some(&"True"))
                })
            };
            if self.nodes.iter().all(|n| there(&n.name)) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                anyhow::bail!(
                    "nodes not {} after {timeout:?}:\n{out}logs under {}",
                    if ready { "Ready" } else { "registered" },
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn get(&self, name: &str) -> anyhow::Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .with_context(|| format!("no real node {name}"))
    }
}

impl Drop for RealNodes {
    fn drop(&mut self) {
        let nodes = std::mem::take(&mut self.nodes);
        std::thread::scope(|s| {
            for node in nodes {
                s.spawn(move || drop(node));
            }
        });
        if std::thread::panicking() {
            self.keep_logs();
        }
    }
}
