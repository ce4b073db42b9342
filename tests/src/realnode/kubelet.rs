//! A node's kubelet: its client certificate (user `system:node:<name>`, group `system:nodes`,
//! signed by the cluster's CA, so the Node authorizer lets it act for its node only), its
//! kubeconfig, and its KubeletConfiguration with the settings this machine kind needs.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::containerd;

/// The name in the apiserver's certificate that nodes check: they dial an address the
/// certificate does not list (`Cluster` makes it for loopback).
const APISERVER_NAME: &str = "kubernetes";

/// `<dir>/kubelet.{key,crt}`, signed with the CA in `ca_dir` (`ca.crt`, `ca.key`).
pub fn client_cert(ca_dir: &Path, node: &str, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    client_cert_for(
        ca_dir,
        &format!("/O=system:nodes/CN=system:node:{node}"),
        "kubelet",
        dir,
    )
}

/// `<dir>/<stem>.{key,crt}` for `subject` (the user and groups RBAC sees), signed with the CA
/// in `ca_dir`.
pub fn client_cert_for(
    ca_dir: &Path,
    subject: &str,
    stem: &str,
    dir: &Path,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    crate::pki::issue(ca_dir, stem, subject, crate::pki::CLIENT_EXT, dir)
}

pub fn kubeconfig(server: &str, ca: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: nethouse-test\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n    tls-server-name: {APISERVER_NAME}\n\
         users:\n- name: kubelet\n  user:\n    client-certificate: {crt}\n    client-key: {key}\n\
         contexts:\n- name: kubelet\n  context:\n    cluster: nethouse-test\n    user: kubelet\ncurrent-context: kubelet\n",
        ca = ca.display(),
        crt = cert.display(),
        key = key.display(),
    )
}

/// The KubeletConfiguration. From REAL-NODE.md: `failCgroupV1: false` (1.35 refuses cgroup v1
/// otherwise), `cgroupDriver: cgroupfs`, a `cgroupRoot` that exists in every v1 controller.
/// Its API is open (anonymous, AlwaysAllow): the apiserver has no kubelet client certificate,
/// and `kubectl logs` must work. Eviction thresholds are low: the node's filesystems are
/// tmpfs and the host's disk, shared with everything else. `cluster_dns`: the DNS Service's
/// address pods get (`None`: pods resolve as the machine does).
pub fn config(cgroup_root: &str, node_ip: Ipv4Addr, cluster_dns: Option<Ipv4Addr>) -> String {
    let dns = cluster_dns
        .map(|ip| format!("clusterDNS: [{ip}]\nclusterDomain: cluster.local\n"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
containerRuntimeEndpoint: unix://{socket}
address: {node_ip}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
failSwapOn: false
serializeImagePulls: false
evictionHard:
  memory.available: 100Mi
  nodefs.available: "1%"
  imagefs.available: "1%"
  nodefs.inodesFree: "1%"
{dns}"#,
        socket = containerd::SOCKET,
    )
}

/// kubelet's arguments after `--config` and `--kubeconfig`.
pub fn args(node: &str, node_ip: Ipv4Addr, zone: &str) -> Vec<String> {
    vec![
        format!("--hostname-override={node}"),
        format!("--node-ip={node_ip}"),
        format!(
            "--node-labels={}={zone}",
            nethouse_api::contract::ZONE_LABEL
        ),
        "--v=2".into(),
    ]
}
