//! One real node: a network namespace wired to its zone, a mount namespace (held by a `sleep`)
//! with tmpfs over the paths containerd and kubelet write, its own containerd and kubelet.
//! Dropped, it kills every process it started by PID (see `cgroups`) and removes its cgroups
//! and namespaces; nothing on the host is left changed.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::cgroups::CgroupRoot;
use super::cni::{self, ChainSettings};
use super::fabric::Fabric;
use super::images::Images;
use super::netns::NetNs;
use super::process::Proc;
use super::{containerd, holder, kubelet, uplink};

pub use super::uplink::UPLINK;

/// What every node of a run shares.
pub struct NodeEnv {
    pub kubelet: PathBuf,
    /// kube-apiserver as nodes dial it.
    pub api_server: String,
    /// The cluster's CA: `ca.crt`, `ca.key`.
    pub ca_dir: PathBuf,
    pub nethouse_url: String,
    /// The cluster name in fixed leases' owners.
    pub cluster: String,
    pub cni_plugin: PathBuf,
    pub images: Images,
    /// Makes namespace and cgroup names unique to this run.
    pub tag: String,
}

#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    pub zone: String,
}

/// Fields drop in order: the processes, then whatever they left in the cgroups, then the
/// namespace.
pub struct Node {
    pub name: String,
    pub zone: String,
    pub ip: Ipv4Addr,
    pub dir: PathBuf,
    /// From the first namespace to kubelet started (not Ready: see `RealNodes::wait_ready`).
    pub started_in: Duration,
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
        uplink::wire(fabric, zone, &netns, &spec.name, ip)?;
        let cgroups = CgroupRoot::create(&format!("nethouse-{}-{}", env.tag, spec.name))?;

        let (cni_bin, cni_conf) = (dir.join("cni/bin"), dir.join("cni/net.d"));
        cni::install(&cni_bin, &env.cni_plugin)?;
        std::fs::create_dir_all(&cni_conf)?;
        let chain = cni::conflist(&ChainSettings {
            zone: &spec.zone,
            node: &spec.name,
            master: UPLINK,
            nethouse_url: &env.nethouse_url,
            cluster: &env.cluster,
            log_file: &dir.join(cni::LOG),
        })?;
        std::fs::write(cni_conf.join("10-nethouse.conflist"), chain)?;

        let holder = holder::start(&netns, &cgroups, dir)?;
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
            containerd::config(&cni_bin, &cni_conf),
        )?;
        let containerd = in_node(
            "containerd",
            Path::new("containerd"),
            &[format!(
                "--config={}",
                dir.join("containerd.toml").display()
            )],
        )?;
        containerd::import_when_up(
            holder.pid(),
            &env.images.tarballs(),
            Duration::from_secs(30),
        )
        .with_context(|| format!("node {}: see {}", spec.name, containerd.log.display()))?;

        let (crt, key) = kubelet::client_cert(&env.ca_dir, &spec.name, dir)?;
        std::fs::write(
            dir.join("kubelet.kubeconfig"),
            kubelet::kubeconfig(&env.api_server, &env.ca_dir.join("ca.crt"), &crt, &key),
        )?;
        std::fs::write(dir.join("kubelet.yaml"), kubelet::config(&cgroups.path, ip))?;
        let mut args = vec![
            format!("--config={}", dir.join("kubelet.yaml").display()),
            format!("--kubeconfig={}", dir.join("kubelet.kubeconfig").display()),
        ];
        args.extend(kubelet::args(&spec.name, ip, &spec.zone));
        let kubelet = in_node("kubelet", &env.kubelet, &args)?;
        Ok(Node {
            name: spec.name.clone(),
            zone: spec.zone.clone(),
            ip,
            dir: dir.to_path_buf(),
            started_in: t0.elapsed(),
            kubelet,
            containerd,
            holder,
            cgroups,
            netns,
        })
    }

    /// Fails, naming the log, if containerd, kubelet or the namespace holder has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for p in [&mut self.holder, &mut self.containerd, &mut self.kubelet] {
            p.check_alive()
                .with_context(|| format!("node {}", self.name))?;
        }
        Ok(())
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
        cni::calls(&self.dir.join(cni::LOG))
    }
}
