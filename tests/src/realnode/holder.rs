//! The process that holds a node's mount namespace (see [`start`]).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::cgroups::CgroupRoot;
use super::hostfs::Overlay;
use super::netns::NetNs;
use super::process::Proc;

/// What kubelet rewrites at start (`setupKernelTunables`), with the values it wants. These are
/// host-wide, so inside the node the files are bind-mounted copies holding those values.
const SYSCTLS: &[(&str, &str)] = &[
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
    ("kernel/keys/root_maxkeys", "1000000"),
    ("kernel/keys/root_maxbytes", "25000000"),
];

/// The process that holds the node's mount namespace: in the node's network namespace, it
/// makes a private mount namespace, covers `/var/lib`, `/var/log` and `/run` with tmpfs (the
/// paths containerd and kubelet write, so nodes do not share them and the host keeps its
/// own), mounts `overlays` (none for a node whose CNI chain the harness writes), bind-mounts
/// the sysctl copies, and sleeps. It joins the node's cgroup first.
pub fn start(
    netns: &NetNs,
    cgroups: &CgroupRoot,
    dir: &Path,
    overlays: &[Overlay],
) -> anyhow::Result<Proc> {
    let sysctl_dir = dir.join("sysctl");
    std::fs::create_dir_all(&sysctl_dir)?;
    let mut script = format!("set -e\n{}", cgroups.join_script());
    for target in ["/var/lib", "/var/log", "/run"] {
        script.push_str(&format!(
            "mount -t tmpfs -o mode=755 nethouse-node {target}\n"
        ));
    }
    for o in overlays {
        script.push_str(&o.mount_line());
    }
    for (key, value) in SYSCTLS {
        let copy = sysctl_dir.join(key.replace('/', "."));
        std::fs::write(&copy, format!("{value}\n"))?;
        script.push_str(&format!(
            "mount --bind '{}' /proc/sys/{key}\n",
            copy.display()
        ));
    }
    let ready = dir.join("holder.ready");
    script.push_str(&format!(
        "touch '{}'\nexec sleep infinity\n",
        ready.display()
    ));
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", netns.path().display()))
        .args(["--", "unshare", "--mount", "--propagation", "private", "--"])
        .args(["sh", "-c", &script]);
    let mut holder = Proc::spawn("holder", cmd, &dir.join("holder.log"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() {
        holder.check_alive()?;
        if Instant::now() > deadline {
            bail!(
                "the node's mount namespace was not ready within 10 s; see {}",
                holder.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(holder)
}
