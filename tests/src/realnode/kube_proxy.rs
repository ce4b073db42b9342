//! kube-proxy (iptables mode, Debian's iptables) where Services must answer: on every node of an
//! install, as a real cluster runs it, and in the fabric. Pods on macvlan never pass through
//! their node's network stack (their default route is the zone's gateway), so for them the
//! fabric — the data center's router — holds the Service rules too, masquerading, so that a
//! backend in the client's own zone answers through the router rather than straight over L2.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::kubelet;

/// What one kube-proxy needs.
pub struct ProxySpec<'a> {
    /// The name it reports as (a node's name; the fabric has none).
    pub name: &'a str,
    pub ip: Ipv4Addr,
    pub api_server: &'a str,
    /// The cluster's CA: `ca.crt`, `ca.key`.
    pub ca_dir: &'a Path,
    pub masquerade_all: bool,
}

/// Writes its client certificate (user `system:kube-proxy`, which the built-in
/// `system:node-proxier` binding covers), kubeconfig and configuration into `dir`; returns the
/// arguments to start it with. Conntrack settings stay as the kernel has them: the table size
/// is the machine's, not a namespace's.
pub fn prepare(spec: &ProxySpec, dir: &Path) -> anyhow::Result<Vec<String>> {
    let (crt, key) =
        kubelet::client_cert_for(spec.ca_dir, "/CN=system:kube-proxy", "kube-proxy", dir)?;
    let kubeconfig = dir.join("kube-proxy.kubeconfig");
    std::fs::write(
        &kubeconfig,
        kubelet::kubeconfig(spec.api_server, &spec.ca_dir.join("ca.crt"), &crt, &key),
    )?;
    let config: PathBuf = dir.join("kube-proxy.yaml");
    std::fs::write(
        &config,
        format!(
            r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
hostnameOverride: {name}
bindAddress: {ip}
mode: iptables
iptables:
  masqueradeAll: {masquerade}
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"#,
            kubeconfig = kubeconfig.display(),
            name = spec.name,
            ip = spec.ip,
            masquerade = spec.masquerade_all,
        ),
    )?;
    Ok(vec![
        format!("--config={}", config.display()),
        "--v=2".into(),
    ])
}
