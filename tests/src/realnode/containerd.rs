//! A node's containerd (Debian's 1.6, runc with cgroupfs). Its root, state and socket are the
//! default paths, which in the node's mount namespace are on the node's own tmpfs; the CNI
//! directories are the node's, in its work directory.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::images;
use super::netns::run;

/// The socket, as seen inside the node's mount namespace.
pub const SOCKET: &str = "/run/containerd/containerd.sock";

/// The configuration (version 2). Settings this machine kind needs, from REAL-NODE.md:
/// `restrict_oom_score_adj` (sandboxes lack CAP_SYS_RESOURCE, and runc fails without it),
/// `netns_mounts_under_state_dir` (pod namespaces on the node's tmpfs, not `/var/run/netns`).
/// The `opt` plugin would otherwise create `/opt/containerd` on the host.
pub fn config(cni_bin: &Path, cni_conf: &Path) -> String {
    format!(
        r#"version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "{SOCKET}"

[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/containerd-opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin}"
    conf_dir = "{conf}"
    max_conf_num = 1
"#,
        pause = images::PAUSE,
        bin = cni_bin.display(),
        conf = cni_conf.display(),
    )
}

/// `ctr` against the node's containerd, run inside the node's namespaces (`holder`'s).
pub fn ctr(holder: u32, args: &[&str]) -> anyhow::Result<String> {
    run(Command::new("nsenter")
        .args(["--target", &holder.to_string(), "--mount", "--net", "--"])
        .args(["ctr", "--namespace", "k8s.io", "--address", SOCKET])
        .args(args))
}

/// Waits until containerd answers, then imports each image tarball (as `ctr images import`;
/// the CRI plugin sees images of the `k8s.io` namespace).
pub fn import_when_up(holder: u32, tarballs: &[&Path], timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        match ctr(holder, &["version"]) {
            Ok(_) => break,
            Err(e) if start.elapsed() > timeout => {
                bail!("containerd did not answer within {timeout:?}: {e:#}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    for tar in tarballs {
        ctr(holder, &["images", "import", &tar.display().to_string()])?;
    }
    Ok(())
}
