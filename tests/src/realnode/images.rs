//! The nodes' images, built without a daemon or registry by `tests/harness/build-images.sh`
//! (docker-archive tarballs of Debian's busybox-static) and imported into each node's
//! containerd. Pods use them with `imagePullPolicy: Never`. An install by the shipped
//! manifests adds the project's image and upstream ones ([`build_install`]).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::binaries::harness_script;

/// containerd's `sandbox_image`: blocks until SIGTERM/SIGINT.
pub const PAUSE: &str = "nethouse.local/pause:1";
/// sh, sleep, ping, nc, wget.
pub const BUSYBOX: &str = "nethouse.local/busybox:1";

pub struct Images {
    pub pause: PathBuf,
    pub busybox: PathBuf,
}

impl Images {
    pub fn tarballs(&self) -> [&Path; 2] {
        [&self.pause, &self.busybox]
    }
}

/// Builds both tarballs into `dir` (about a second).
pub fn build(dir: &Path) -> anyhow::Result<Images> {
    crate::binaries::harness_script("build-images.sh", &[dir])?;
    Ok(Images {
        pause: dir.join("pause.tar"),
        busybox: dir.join("busybox.tar"),
    })
}

/// Builds the project's image from the workspace's release binaries
/// (`tests/harness/build-nethouse-image.sh`, which runs cargo first), and images of the harness's
/// kube-scheduler and of `coredns` (`build-upstream-images.sh`), into `dir`; returns the tarballs.
pub fn build_install(dir: &Path, k8s_bin: &Path, coredns: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let ours = harness_script("build-nethouse-image.sh", &[dir])?;
    let upstream = harness_script("build-upstream-images.sh", &[dir, k8s_bin, coredns])?;
    let mut tarballs = vec![PathBuf::from(ours.trim())];
    for line in upstream.lines() {
        let path = line.split_whitespace().next().context("an empty line")?;
        tarballs.push(PathBuf::from(path));
    }
    Ok(tarballs)
}
