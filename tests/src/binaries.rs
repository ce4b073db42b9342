//! Where the upstream binaries are: built once by `tests/harness/build-k8s.sh` into a cache
//! keyed by version; later runs reuse them.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

pub struct Binaries {
    /// kube-apiserver, kube-controller-manager, kube-scheduler, kubectl; also kubelet and
    /// kube-proxy after [`ensure_with_node`].
    pub k8s: PathBuf,
    pub etcd: PathBuf,
}

impl Binaries {
    pub fn kubectl(&self) -> PathBuf {
        self.k8s.join("kubectl")
    }

    pub fn kubelet(&self) -> PathBuf {
        self.k8s.join("kubelet")
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Builds (first run, a few minutes, progress on stderr) or finds the control-plane binaries.
pub fn ensure() -> anyhow::Result<Binaries> {
    build(&["--control-plane"])
}

/// [`ensure`], and kubelet and kube-proxy for real nodes (first run ~8 more minutes).
pub fn ensure_with_node() -> anyhow::Result<Binaries> {
    build(&[])
}

/// CoreDNS, the cluster DNS of an install on real nodes (first run ~1 minute:
/// `tests/harness/build-coredns.sh`).
pub fn ensure_coredns() -> anyhow::Result<PathBuf> {
    let out = harness_script::<&str>("build-coredns.sh", &[])?;
    Ok(PathBuf::from(out.trim()))
}

/// The Whereabouts IPAM plugin v0.9.2, the peer the real-node bench compares with (first run
/// ~80 s: `tests/harness/build-whereabouts.sh`); its CRDs are in `crds/` next to it.
pub fn ensure_whereabouts() -> anyhow::Result<PathBuf> {
    let out = harness_script::<&str>("build-whereabouts.sh", &[])?;
    Ok(PathBuf::from(out.trim()))
}

/// Runs `tests/harness/<name>` with bash; returns its stdout (its progress goes to stderr).
pub fn harness_script<S: AsRef<std::ffi::OsStr>>(name: &str, args: &[S]) -> anyhow::Result<String> {
    let script = repo_root().join("tests/harness").join(name);
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", script.display(), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn build(args: &[&str]) -> anyhow::Result<Binaries> {
    let k8s = PathBuf::from(harness_script("build-k8s.sh", args)?.trim());
    let etcd = PathBuf::from("/usr/bin/etcd");
    if !etcd.exists() {
        bail!(
            "etcd not found at /usr/bin/etcd: install Debian's etcd-server (scripts/install-deps.sh)"
        );
    }
    Ok(Binaries { k8s, etcd })
}

/// A workspace binary's release build, for what measures it under load (the etcd chaos test
/// and bench): a debug build is several times slower and would time the build, not NetHouse.
pub fn release_bin(name: &str) -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let bin = target.join("release").join(name);
    if !bin.exists() {
        bail!(
            "{} is not built: run `cargo build --release -p {name}` first",
            bin.display()
        );
    }
    Ok(bin)
}

/// A binary of this workspace (`nethouse`, `nethouse-cni`, `nethouse-node-agent`), built by
/// `cargo build` into target/debug or target/release — whichever is newer.
pub fn workspace_bin(name: &str) -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let newest = ["debug", "release"]
        .iter()
        .map(|p| target.join(p).join(name))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max();
    match newest {
        Some((_, p)) => Ok(p),
        None => bail!(
            "{name} is not built: run `cargo build -p nethouse -p nethouse-cni -p nethouse-location-controller -p nethouse-e2e` first"
        ),
    }
}
