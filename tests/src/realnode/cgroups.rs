//! A node's cgroup, created in every mounted hierarchy: kubelet's `cgroupRoot` (it must exist
//! in every v1 controller first) and, under it, `daemons`, where the node's holder, containerd
//! and kubelet run. Every process the node ever starts — containerd's shims, which detach from
//! it, and the pods' containers, which kubelet puts under `kubepods` — is therefore in this
//! subtree; stopping the node kills exactly the PIDs listed there, then removes the cgroups.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use rustix::process::{Pid, Signal, kill_process};

pub struct CgroupRoot {
    /// The path inside each hierarchy, e.g. `/nethouse-1234-z1-a`: kubelet's `cgroupRoot`.
    pub path: String,
    /// Mount points of the hierarchies (`/sys/fs/cgroup/memory`, …, the cgroup2 one).
    hierarchies: Vec<PathBuf>,
}

/// One mount point of every cgroup (v1 or v2) hierarchy, from this process's mount table; a
/// hierarchy mounted twice (same device) counts once.
fn hierarchies() -> anyhow::Result<Vec<PathBuf>> {
    let table =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mut seen = std::collections::HashSet::new();
    Ok(table
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let fields: Vec<&str> = left.split_whitespace().collect();
            let (device, mount_point) = (fields.get(2)?, fields.get(4)?);
            (matches!(fstype, "cgroup" | "cgroup2") && seen.insert(device.to_string()))
                .then(|| PathBuf::from(mount_point))
        })
        .collect())
}

/// A new cpuset cgroup has no CPUs and no memory nodes, and no process may join it until it
/// gets some: it takes its parent's.
fn init_cpuset(dir: &Path) -> anyhow::Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let Some(parent) = dir.parent() else {
            continue;
        };
        if !parent.join(file).exists() {
            continue;
        }
        let value = std::fs::read_to_string(parent.join(file))?;
        std::fs::write(dir.join(file), value.trim())
            .with_context(|| format!("writing {}", dir.join(file).display()))?;
    }
    Ok(())
}

impl CgroupRoot {
    pub fn create(name: &str) -> anyhow::Result<CgroupRoot> {
        let root = CgroupRoot {
            path: format!("/{name}"),
            hierarchies: hierarchies()?,
        };
        anyhow::ensure!(
            !root.hierarchies.is_empty(),
            "no cgroup hierarchy is mounted"
        );
        for h in &root.hierarchies {
            for dir in [h.join(name), h.join(name).join("daemons")] {
                std::fs::create_dir(&dir)
                    .with_context(|| format!("creating cgroup {}", dir.display()))?;
                init_cpuset(&dir)?;
            }
        }
        Ok(root)
    }

    /// Shell lines that move the shell running them into `daemons` in every hierarchy; a
    /// program it then `exec`s, and all that program starts, stay there.
    pub fn join_script(&self) -> String {
        self.hierarchies
            .iter()
            .map(|h| {
                format!(
                    "echo $$ > '{}'\n",
                    h.join(self.path.trim_start_matches('/'))
                        .join("daemons/cgroup.procs")
                        .display()
                )
            })
            .collect()
    }

    /// Every cgroup of the subtree in one hierarchy, deepest first.
    fn dirs(&self, h: &Path) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        walk(&e.path(), out);
                    }
                }
            }
            out.push(dir.to_path_buf());
        }
        let mut out = Vec::new();
        let top = h.join(self.path.trim_start_matches('/'));
        if top.is_dir() {
            walk(&top, &mut out);
        }
        out
    }

    /// The PIDs in the subtree, in any hierarchy.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .hierarchies
            .iter()
            .flat_map(|h| self.dirs(h))
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILLs every PID in the subtree until none is left (a process may fork while its
    /// siblings die) or `timeout` passes; returns how many PIDs were signalled.
    pub fn kill_all(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut killed = std::collections::BTreeSet::new();
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() > deadline {
                return killed.len();
            }
            for pid in pids {
                if let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                    let _ = kill_process(p, Signal::KILL);
                    killed.insert(pid);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Removes the subtree in every hierarchy; a cgroup whose last process is still exiting
    /// is busy for a moment, hence the retries.
    fn remove(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        for h in &self.hierarchies {
            for dir in self.dirs(h) {
                while std::fs::remove_dir(&dir).is_err()
                    && dir.exists()
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

impl Drop for CgroupRoot {
    fn drop(&mut self) {
        self.kill_all(Duration::from_secs(10));
        self.remove();
    }
}
