//! One real node: a network namespace wired to its zone, a mount namespace (held by a `sleep`)
//! with tmpfs over the paths containerd and kubelet write, its own containerd and kubelet (and
//! kube-proxy, on a node of an install: see `node_env`).
//! Dropped, it kills every process it started by PID (see `cgroups`) and removes its cgroups
//! and namespaces; nothing on the host is left changed.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::cgroups::CgroupRoot;
use super::cni;
use super::fabric::Fabric;
use super::kube_proxy::{self, ProxySpec};
use super::netns::NetNs;
use super::process::Proc;
use super::{containerd, holder, kubelet, uplink};

pub use super::node_env::{Installed, NodeCni, NodeEnv, NodeSpec};
pub use super::uplink::UPLINK;

/// Fields drop in order: the processes, then whatever they left in the cgroups, then the
/// namespace.
pub struct Node {
    pub name: String,
    pub zone: String,
    pub ip: Ipv4Addr,
    pub dir: PathBuf,
    /// From the first namespace to kubelet started (not Ready: see `RealNodes::wait_ready`).
    pub started_in: Duration,
    /// nethouse-cni's log, as the machine reaches it.
    cni_log: PathBuf,
    /// The link to the zone, which pods' macvlans hang on.
    uplink: &'static str,
    /// [`Node::fail`] ran: its processes are gone on purpose.
    failed: bool,
    kube_proxy: Option<Proc>,
    kubelet: Proc,
    containerd: Proc,
    holder: Proc,
    cgroups: CgroupRoot,
    netns: NetNs,
}

impl Node {
    /// The `index`-th node of its zone, with its work directory `dir`.
    pub fn start(
        spec: &NodeSpec,
        index: usize,
        fabric: &Fabric,
        env: &NodeEnv,
        dir: &Path,
    ) -> anyhow::Result<Node> {
        let t0 = Instant::now();
        let zone = fabric.zone(&spec.zone)?;
        let ip = zone.node_ip(index)?;
        std::fs::create_dir_all(dir)?;
        let netns = NetNs::create(&format!("nhn{}-{}", env.tag, spec.name))?;
        let installed = env.cni.installed();
        uplink::wire(fabric, zone, &netns, &spec.name, ip, env.cni.uplink())?;
        let cgroups = CgroupRoot::create(&format!("nethouse-{}-{}", env.tag, spec.name))?;
        let chain = env.cni.prepare(spec, dir)?;

        let holder = holder::start(&netns, &cgroups, dir, &chain.overlays)?;
        let cni_log = match installed {
            // The shipped templates' logFile, on the node's own /var/log.
            Some(_) => in_root(holder.pid(), "/var/log/nethouse-cni.log"),
            None => dir.join(cni::LOG),
        };
        let in_node = |name: &str, program: &Path, args: &[String]| {
            let mut cmd = Command::new("nsenter");
            cmd.args([
                "--target",
                &holder.pid().to_string(),
                "--mount",
                "--net",
                "--",
            ])
            .args([
                "sh",
                "-c",
                &format!("{}exec \"$0\" \"$@\"", cgroups.join_script()),
            ])
            .arg(program)
            .args(args);
            Proc::spawn(name, cmd, &dir.join(format!("{name}.log")))
        };

        std::fs::write(
            dir.join("containerd.toml"),
            containerd::config(&chain.bin, &chain.conf),
        )?;
        let containerd = in_node(
            "containerd",
            Path::new("containerd"),
            &[format!(
                "--config={}",
                dir.join("containerd.toml").display()
            )],
        )?;
        let mut tarballs = env.images.tarballs().to_vec();
        tarballs.extend(
            installed
                .iter()
                .flat_map(|i| i.images.iter().map(PathBuf::as_path)),
        );
        containerd::import_when_up(holder.pid(), &tarballs, Duration::from_secs(60))
            .with_context(|| format!("node {}: see {}", spec.name, containerd.log.display()))?;

        let (crt, key) = kubelet::client_cert(&env.ca_dir, &spec.name, dir)?;
        std::fs::write(
            dir.join("kubelet.kubeconfig"),
            kubelet::kubeconfig(&env.api_server, &env.ca_dir.join("ca.crt"), &crt, &key),
        )?;
        std::fs::write(
            dir.join("kubelet.yaml"),
            kubelet::config(&cgroups.path, ip, installed.map(|i| i.cluster_dns)),
        )?;
        let mut args = vec![
            format!("--config={}", dir.join("kubelet.yaml").display()),
            format!("--kubeconfig={}", dir.join("kubelet.kubeconfig").display()),
        ];
        args.extend(kubelet::args(&spec.name, ip, &spec.zone));
        let kubelet = in_node("kubelet", &env.kubelet, &args)?;
        let kube_proxy = match installed {
            Some(i) => {
                let spec = ProxySpec {
                    name: &spec.name,
                    ip,
                    api_server: &env.api_server,
                    ca_dir: &env.ca_dir,
                    masquerade_all: false,
                };
                Some(in_node(
                    "kube-proxy",
                    &i.kube_proxy,
                    &kube_proxy::prepare(&spec, dir)?,
                )?)
            }
            None => None,
        };
        Ok(Node {
            name: spec.name.clone(),
            zone: spec.zone.clone(),
            ip,
            dir: dir.to_path_buf(),
            started_in: t0.elapsed(),
            cni_log,
            uplink: env.cni.uplink(),
            failed: false,
            kube_proxy,
            kubelet,
            containerd,
            holder,
            cgroups,
            netns,
        })
    }

    /// Fails, naming the log, if containerd, kubelet or the namespace holder has exited (not
    /// after [`Node::fail`]).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if self.failed {
            return Ok(());
        }
        for p in [&mut self.holder, &mut self.containerd, &mut self.kubelet]
            .into_iter()
            .chain(self.kube_proxy.as_mut())
        {
            p.check_alive()
                .with_context(|| format!("node {}", self.name))?;
        }
        Ok(())
    }

    /// The host dies: its link to the zone goes down first (so none of its pods' addresses
    /// answers on the segment any more, as with a power cut), then every process it ran is
    /// SIGKILLed — kubelet, containerd, kube-proxy, shims, containers, the namespace holder.
    /// No CNI DEL runs. [`Node::path`] and [`Node::ctr`] stop working; the namespaces and
    /// cgroups are still removed when the node is dropped.
    pub fn fail(&mut self) -> anyhow::Result<()> {
        self.netns
            .ip(&["link", "set", self.uplink, "down"])
            .with_context(|| format!("node {}: taking {} down", self.name, self.uplink))?;
        self.failed = true;
        for p in [&mut self.kubelet, &mut self.containerd]
            .into_iter()
            .chain(self.kube_proxy.as_mut())
        {
            p.kill();
        }
        let signalled = self.cgroups.kill_all(Duration::from_secs(10));
        self.holder.kill();
        anyhow::ensure!(
            self.cgroups.pids().is_empty(),
            "node {}: processes left after SIGKILL to {signalled}: {:?}",
            self.name,
            self.cgroups.pids()
        );
        Ok(())
    }

    /// `path` as this node sees it (its own `/var/lib`, `/etc/cni/net.d`, …), reachable from
    /// the machine while the node runs.
    pub fn path(&self, path: &str) -> PathBuf {
        in_root(self.holder.pid(), path)
    }

    /// `ctr` in this node's namespaces (k8s.io namespace).
    pub fn ctr(&self, args: &[&str]) -> anyhow::Result<String> {
        containerd::ctr(self.holder.pid(), args)
    }

    /// Every PID the node runs now: holder, containerd, kubelet, shims, containers.
    pub fn pids(&self) -> Vec<u32> {
        self.cgroups.pids()
    }

    pub fn netns(&self) -> &NetNs {
        &self.netns
    }

    /// The calls nethouse-cni made on this node, one JSON object each, oldest first.
    pub fn cni_calls(&self) -> Vec<serde_json::Value> {
        cni::calls(&self.cni_log)
    }
}

/// `path` inside the mount namespace of process `pid`.
fn in_root(pid: u32, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root")).join(path.trim_start_matches('/'))
}
