//! What a stack costs the machine: memory (RSS of its processes, the machine's MemAvailable)
//! and CPU time (the nodes' cgroups, which hold every process a node ever ran, exited ones
//! included — runc, the CNI plugins — and the control plane's processes).

use std::time::Duration;

use anyhow::Context;
use nethouse_e2e::realnode::Node;
use nethouse_e2e::realnode::install::InstallStack;

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// The summed RSS of the nodes' processes (holder, containerd, kubelet, kube-proxy, shims,
/// containers) and the control plane's, bytes: pages they share are counted for each.
pub fn stack_rss(s: &InstallStack) -> u64 {
    let pids = s
        .nodes
        .nodes
        .iter()
        .flat_map(|n| n.pids())
        .chain(s.cluster.pids());
    pids.filter_map(|pid| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
        kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
    })
    .sum::<u64>()
        * 1024
}

/// The machine's MemAvailable, bytes.
pub fn mem_available() -> anyhow::Result<u64> {
    let info = std::fs::read_to_string("/proc/meminfo")?;
    info.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .context("no MemAvailable in /proc/meminfo")
}

/// CPU time used so far.
#[derive(Clone, Copy, Default)]
pub struct Cpu {
    /// All nodes; `None` where a node's cgroup accounting cannot be read.
    pub nodes: Option<Duration>,
    pub control_plane: Duration,
    /// Every CPU of the machine, busy (not idle, not waiting for I/O): what else ran shows as
    /// this minus the two above.
    pub machine: Duration,
}

impl Cpu {
    pub fn now(s: &InstallStack) -> Cpu {
        let nodes: Option<Vec<Duration>> = s.nodes.nodes.iter().map(node_cpu).collect();
        let control: f64 = s.cluster.pids().into_iter().filter_map(process_cpu).sum();
        Cpu {
            nodes: nodes.map(|v| v.into_iter().sum()),
            control_plane: Duration::from_secs_f64(control),
            machine: machine_busy().unwrap_or_default(),
        }
    }

    /// What was used from `before` to `self`.
    pub fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            nodes: self
                .nodes
                .zip(before.nodes)
                .map(|(a, b)| a.saturating_sub(b)),
            control_plane: self.control_plane.saturating_sub(before.control_plane),
            machine: self.machine.saturating_sub(before.machine),
        }
    }

    /// The machine's busy time that was neither the nodes' nor the control plane's.
    pub fn others(&self) -> Duration {
        self.machine
            .saturating_sub(self.nodes.unwrap_or_default())
            .saturating_sub(self.control_plane)
    }
}

/// `/proc/stat`'s busy ticks of all CPUs: user, nice, system, irq, softirq, steal.
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<f64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy: f64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| f.get(*i)).sum();
    Some(Duration::from_secs_f64(busy / TICKS))
}

/// The node's cgroup (the top of the path its first process is in): cpuacct's usage on cgroup
/// v1, cpu.stat's on v2.
fn node_cpu(n: &Node) -> Option<Duration> {
    let pid = *n.pids().first()?;
    let table = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let top = |path: &str| path.split('/').nth(1).map(str::to_string);
    for line in table.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        if controllers.split(',').any(|c| c == "cpuacct") {
            let usage = std::fs::read_to_string(format!(
                "/sys/fs/cgroup/{controllers}/{}/cpuacct.usage",
                top(path)?
            ))
            .ok()?;
            return usage.trim().parse().ok().map(Duration::from_nanos);
        }
    }
    // cgroup v2: mounted at /sys/fs/cgroup, or beside v1 at /sys/fs/cgroup/unified.
    let top = top(table.lines().find_map(|l| l.strip_prefix("0::"))?)?;
    let stat = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .find_map(|m| std::fs::read_to_string(format!("{m}/{top}/cpu.stat")).ok())?;
    let usec = stat.lines().find_map(|l| l.strip_prefix("usage_usec "))?;
    usec.trim().parse().ok().map(Duration::from_micros)
}

/// User + system seconds of a process and its waited-for children.
fn process_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is field 3, utime 14.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f
        .get(11..15)?
        .iter()
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    Some(ticks / TICKS)
}
