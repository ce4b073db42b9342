//! Sandboxes: a network namespace per pod, wired by the real CNI chain the way containerd
//! drives it.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use nethouse_cni::invoke;
use serde_json::{Value, json};

use super::AgentConfig;

/// The main plugin, which executes `nethouse-cni` from `CNI_PATH` as its IPAM.
const BRIDGE: &str = "/usr/lib/cni/bridge";

#[derive(Clone, Debug)]
pub struct Sandbox {
    /// `namespace/name`
    pub pod: String,
    pub uid: String,
    pub container_id: String,
    /// Name under /var/run/netns.
    pub netns: String,
    pub ips: Vec<String>,
    /// The exact config and CNI_ARGS of ADD; DEL gets the same, as from containerd.
    conf: String,
    args: String,
}

pub struct CniRunner {
    base: Value,
    cni_path: String,
    prefix: String,
}

pub fn bridge_name(prefix: &str, index: usize) -> String {
    format!("{prefix}b{index}")
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn remove_netns(name: &str) {
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", name])
        .output();
}

/// Every namespace named with `prefix`: also those of a sandbox whose ADD was interrupted by a
/// shutdown before it was recorded.
pub fn remove_all_netns(prefix: &str) {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{prefix}-")) {
            remove_netns(&name);
        }
    }
}

pub fn remove_link(name: &str) {
    let _ = std::process::Command::new("ip")
        .args(["link", "del", name])
        .output();
}

impl CniRunner {
    pub fn new(config: &AgentConfig, node: &str, zone: &str, index: usize) -> CniRunner {
        let mut ipam = json!({
            "type": "nethouse-cni",
            "servers": config.nethouse_urls,
            "zone": zone,
            "node": node,
            "cluster": config.cluster,
        });
        if let Some(t) = &config.nethouse_token_file {
            ipam["tokenFile"] = json!(t);
        }
        CniRunner {
            base: json!({
                "cniVersion": "1.0.0",
                "name": "nethouse",
                "type": "bridge",
                "bridge": bridge_name(&config.prefix, index),
                // No gateway address on the host: every node's bridge would claim the same one.
                "isGateway": false,
                "ipam": ipam,
            }),
            cni_path: config.cni_path.clone(),
            prefix: config.prefix.clone(),
        }
    }

    async fn plugin(
        &self,
        command: &str,
        container_id: &str,
        netns: &str,
        args: &str,
        conf: &str,
    ) -> anyhow::Result<String> {
        let call = invoke::Call::new(command)
            .container_id(container_id)
            .netns(&format!("/var/run/netns/{netns}"))
            .ifname("eth0")
            .args(args)
            .path([&self.cni_path]);
        let conf = conf.to_string();
        // The call blocks until the plugin exits: off the runtime's workers, so heartbeats and
        // the other nodes go on meanwhile.
        let reply =
            tokio::task::spawn_blocking(move || call.run(Path::new(BRIDGE), conf.as_bytes()))
                .await??;
        if !reply.success() {
            anyhow::bail!("CNI {command} failed: {}", reply.stdout);
        }
        Ok(reply.stdout)
    }

    /// Creates the pod's namespace and runs CNI ADD; on failure nothing is left behind.
    pub async fn add(&self, pod: &Pod) -> anyhow::Result<Sandbox> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let container_id = random_hex(32);
        let netns = format!("{}-{}", self.prefix, &container_id[..12]);
        let out = std::process::Command::new("ip")
            .args(["netns", "add", &netns])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "ip netns add {netns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut conf = self.base.clone();
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        conf["runtimeConfig"] = json!({"io.kubernetes.cri.pod-annotations": annotations});
        let conf = conf.to_string();
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid}"
        );
        match self
            .plugin("ADD", &container_id, &netns, &args, &conf)
            .await
        {
            Ok(result) => {
                let v: Value = serde_json::from_str(&result)?;
                let ips = v["ips"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|ip| ip["address"].as_str())
                            .map(|addr| addr.split('/').next().unwrap_or(addr).to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(Sandbox {
                    pod: format!("{ns}/{name}"),
                    uid,
                    container_id,
                    netns,
                    ips,
                    conf,
                    args,
                })
            }
            Err(e) => {
                remove_netns(&netns);
                Err(e)
            }
        }
    }

    /// CNI DEL with the ADD's config, then the namespace goes. A failed DEL keeps the
    /// namespace so the caller can retry, as kubelet does.
    pub async fn del(&self, sb: &Sandbox) -> anyhow::Result<()> {
        self.plugin("DEL", &sb.container_id, &sb.netns, &sb.args, &sb.conf)
            .await?;
        remove_netns(&sb.netns);
        Ok(())
    }
}
