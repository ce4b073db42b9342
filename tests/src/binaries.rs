//! Where the upstream binaries are: built once by `tests/harness/build-k8s.sh` into a cache
//! keyed by version; later runs reuse them.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

pub struct Binaries {
    /// kube-apiserver, kube-controller-manager, kube-scheduler, kubectl.
    pub k8s: PathBuf,
    pub etcd: PathBuf,
}

impl Binaries {
    pub fn kubectl(&self) -> PathBuf {
        self.k8s.join("kubectl")
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Builds (first run, a few minutes, progress on stderr) or finds the binaries.
pub fn ensure() -> anyhow::Result<Binaries> {
    let script = repo_root().join("tests/harness/build-k8s.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", script.display(), out.status);
    }
    let k8s = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let etcd = PathBuf::from("/usr/bin/etcd");
    if !etcd.exists() {
        bail!(
            "etcd not found at /usr/bin/etcd: install Debian's etcd-server (scripts/install-deps.sh)"
        );
    }
    Ok(Binaries { k8s, etcd })
}
