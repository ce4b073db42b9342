//! A node's own `/etc` and `/opt` for an install by the shipped DaemonSet: its hostPath volumes
//! (`/opt/cni/bin`, `/etc/cni/net.d`, `/etc/nethouse-cni`) must land on the node, not on the
//! machine, which has none of these directories and must stay as it is. Inside the node's mount
//! namespace each is an overlay of the machine's directory; what the node writes goes to an
//! upper directory in its work directory. Before the node starts, the upper layer holds what a
//! node's distribution ships: Debian's CNI plugins in `/opt/cni/bin`, an empty `/etc/cni/net.d`.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Debian's containernetworking-plugins.
const DEBIAN_PLUGINS: &str = "/usr/lib/cni";
/// The main plugins the shipped templates name, and `loopback` (containerd sets up every pod's
/// `lo` with it).
const PLUGINS: &[&str] = &["macvlan", "bridge", "portmap", "loopback"];

/// One directory of the machine overlaid inside the node.
pub struct Overlay {
    pub target: &'static str,
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl Overlay {
    /// The holder's line that mounts it (in the node's mount namespace).
    pub fn mount_line(&self) -> String {
        format!(
            "mount -t overlay nethouse-node -o lowerdir={t},upperdir='{u}',workdir='{w}' {t}\n",
            t = self.target,
            u = self.upper.display(),
            w = self.work.display(),
        )
    }
}

/// The overlays of `/etc` and `/opt`, their upper layers under `dir/hostfs`, seeded.
pub fn prepare(dir: &Path) -> anyhow::Result<Vec<Overlay>> {
    let overlays: Vec<Overlay> = ["/etc", "/opt"]
        .into_iter()
        .map(|target| {
            let base = dir.join("hostfs").join(target.trim_start_matches('/'));
            Overlay {
                target,
                upper: base.join("upper"),
                work: base.join("work"),
            }
        })
        .collect();
    for o in &overlays {
        std::fs::create_dir_all(&o.upper)?;
        std::fs::create_dir_all(&o.work)?;
    }
    let bin = overlays[1].upper.join("cni/bin");
    std::fs::create_dir_all(&bin)?;
    for name in PLUGINS {
        let from = Path::new(DEBIAN_PLUGINS).join(name);
        std::fs::copy(&from, bin.join(name)).with_context(|| {
            format!(
                "copying {} (Debian's containernetworking-plugins)",
                from.display()
            )
        })?;
    }
    std::fs::create_dir_all(overlays[0].upper.join("cni/net.d"))?;
    Ok(overlays)
}
