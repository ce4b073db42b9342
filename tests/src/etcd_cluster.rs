//! A real etcd cluster of several members (Debian's etcd-server) on loopback ports, for the
//! tests and benches of NetHouse on etcd: members can be SIGKILLed and started again on their
//! data, frozen with SIGSTOP and thawed, and the leader found. [`EtcdCluster::start_with`]
//! puts it on another address and given ports, with TLS that requires client certificates (as
//! a dedicated etcd for NetHouse's HA install runs). Every member is killed by PID when
//! the cluster is dropped; a panicking test keeps the logs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::ports::free_port;

const ETCD: &str = "/usr/bin/etcd";
/// How long [`EtcdCluster::revision`] asks again while the running members fail the read: a
/// member thawed a moment ago catches up within a second or two.
const REVISION_WITHIN: Duration = Duration::from_secs(10);

pub struct Member {
    pub name: String,
    pub client_url: String,
    peer_url: String,
    child: Option<Child>,
    /// SIGSTOPped: it holds its ports and answers nothing.
    frozen: bool,
}

/// etcd's serving certificate (for its address; also its peer and client identity) and the CA
/// that signed it and its clients.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where the members listen: `host`, one client port each (its peer port is the next one).
#[derive(Clone, Debug)]
pub struct EtcdSpec {
    pub host: String,
    pub client_ports: Vec<u16>,
    pub tls: Option<EtcdTls>,
}

pub struct EtcdCluster {
    pub members: Vec<Member>,
    tls: Option<EtcdTls>,
    initial_cluster: String,
    /// `GOGC` for every member (Go's garbage collector target, percent); `None`: Go's default.
    go_gc: Option<u32>,
    dir: PathBuf,
    tmp: Option<tempfile::TempDir>,
}

impl EtcdCluster {
    /// `n` members on free loopback ports, plain HTTP, all started, waited for until the
    /// cluster has a leader.
    pub fn start(n: usize) -> anyhow::Result<EtcdCluster> {
        let mut ports = Vec::new();
        for _ in 0..n {
            ports.push((free_port()?, free_port()?));
        }
        Self::start_on("127.0.0.1", &ports, None, None)
    }

    /// As [`EtcdCluster::start`], every member with `GOGC={percent}` in its environment: how
    /// often Go collects garbage, the setting the README recommends for a dedicated etcd.
    pub fn start_go_gc(n: usize, percent: u32) -> anyhow::Result<EtcdCluster> {
        let mut ports = Vec::new();
        for _ in 0..n {
            ports.push((free_port()?, free_port()?));
        }
        Self::start_on("127.0.0.1", &ports, None, Some(percent))
    }

    /// One member per client port of `spec`, on its host, with its TLS.
    pub fn start_with(spec: &EtcdSpec) -> anyhow::Result<EtcdCluster> {
        let ports: Vec<(u16, u16)> = spec.client_ports.iter().map(|p| (*p, p + 1)).collect();
        Self::start_on(&spec.host, &ports, spec.tls.clone(), None)
    }

    /// (client, peer) ports per member.
    fn start_on(
        host: &str,
        ports: &[(u16, u16)],
        tls: Option<EtcdTls>,
        go_gc: Option<u32>,
    ) -> anyhow::Result<EtcdCluster> {
        anyhow::ensure!(
            Path::new(ETCD).exists(),
            "{ETCD} not found: install Debian's etcd-server (scripts/install-deps.sh)"
        );
        let tmp = tempfile::Builder::new()
            .prefix("nethouse-etcd-")
            .tempdir()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let members: Vec<Member> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| Member {
                name: format!("m{i}"),
                client_url: format!("{scheme}://{host}:{client}"),
                peer_url: format!("{scheme}://{host}:{peer}"),
                child: None,
                frozen: false,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members,
            tls,
            initial_cluster,
            go_gc,
            dir: tmp.path().to_path_buf(),
            tmp: Some(tmp),
        };
        for i in 0..ports.len() {
            cluster.spawn(i)?;
        }
        cluster.wait_leader(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// The client URLs, comma-separated (`--etcd-endpoints`).
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client_url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", m.name)))?;
        // A member started again on its data directory rejoins; the initial flags are ignored.
        let mut cmd = Command::new(ETCD);
        if let Some(percent) = self.go_gc {
            cmd.env("GOGC", percent.to_string());
        }
        if let Some(t) = &self.tls {
            let (ca, cert, key) = (t.ca.display(), t.cert.display(), t.key.display());
            cmd.args([
                format!("--cert-file={cert}"),
                format!("--key-file={key}"),
                format!("--trusted-ca-file={ca}"),
                "--client-cert-auth".into(),
                format!("--peer-cert-file={cert}"),
                format!("--peer-key-file={key}"),
                format!("--peer-trusted-ca-file={ca}"),
                "--peer-client-cert-auth".into(),
            ]);
        }
        let child = cmd
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", self.dir.join(&m.name).display()))
            .arg(format!("--listen-client-urls={}", m.client_url))
            .arg(format!("--advertise-client-urls={}", m.client_url))
            .arg(format!("--listen-peer-urls={}", m.peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", m.peer_url))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg("--initial-cluster-state=new")
            .arg("--initial-cluster-token=nethouse-test")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting etcd member {}", m.name))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Each running member's peak resident memory so far (`VmHWM`, MiB; its database file's
    /// pages mapped in count too), `None` for one not running or unreadable.
    pub fn peak_rss_mib(&self) -> Vec<Option<u64>> {
        self.members
            .iter()
            .map(|m| {
                let pid = m.child.as_ref()?.id();
                vm_hwm_mib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
            })
            .collect()
    }

    /// SIGKILL: no goodbye to its peers, its data stays on disk. The PID it had, once it is
    /// gone; `None` if it did not run.
    pub fn kill(&mut self, i: usize) -> Option<u32> {
        let mut c = self.members[i].child.take()?;
        let pid = c.id();
        let _ = c.kill();
        let _ = c.wait();
        self.members[i].frozen = false;
        Some(pid)
    }

    /// Starts a killed member again on its data.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.members[i].child.is_none(),
            "member {} still runs",
            self.members[i].name
        );
        self.spawn(i)
    }

    /// SIGSTOP (`stop`) or SIGCONT: cut off from its peers and clients without closing a socket.
    pub fn freeze(&mut self, i: usize, stop: bool) -> anyhow::Result<()> {
        let pid = self.members[i]
            .child
            .as_ref()
            .map(Child::id)
            .with_context(|| format!("member {} does not run", self.members[i].name))?;
        let signal = if stop { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()?
            .success();
        anyhow::ensure!(ok, "kill {signal} {pid}");
        self.members[i].frozen = stop;
        Ok(())
    }

    /// The client URLs of the members that run and are not frozen.
    fn live(&self) -> Vec<&str> {
        self.members
            .iter()
            .filter(|m| m.child.is_some() && !m.frozen)
            .map(|m| m.client_url.as_str())
            .collect()
    }

    /// Debian's etcdctl (v3 API) against `endpoints`, with the cluster's TLS (its serving
    /// certificate doubles as a client one).
    fn etcdctl(&self, endpoints: &[&str]) -> Command {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .stderr(Stdio::null());
        if let Some(t) = &self.tls {
            cmd.arg(format!("--cacert={}", t.ca.display()))
                .arg(format!("--cert={}", t.cert.display()))
                .arg(format!("--key={}", t.key.display()));
        }
        cmd
    }

    /// `etcdctl endpoint status` of the members that run and are not frozen.
    fn status(&self) -> anyhow::Result<(Vec<&str>, serde_json::Value)> {
        let live = self.live();
        let out = self
            .etcdctl(&live)
            .args(["endpoint", "status", "-w", "json", "--command-timeout=2s"])
            .output()
            .context("running etcdctl (Debian's etcd-client)")?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "etcdctl endpoint status: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
        Ok((live, v))
    }

    /// The index of the member that is leader now, as the running members report it.
    pub fn leader(&self) -> anyhow::Result<usize> {
        let (live, v) = self.status()?;
        for s in v.as_array().map(Vec::as_slice).unwrap_or_default() {
            let status = &s["Status"];
            if status["leader"].is_u64() && status["leader"] == status["header"]["member_id"] {
                let ep = s["Endpoint"].as_str().unwrap_or_default();
                if let Some(i) = self.members.iter().position(|m| m.client_url == ep) {
                    return Ok(i);
                }
            }
        }
        bail!("no leader among {live:?}: {v}")
    }

    /// The cluster's revision now, from a linearizable read: every write etcd acknowledged
    /// before this call is at or below it. etcdctl asks one of the running members; one just
    /// thawed or restarted may still fail the read while it catches up (etcdctl then prints
    /// nothing), so a failed read is asked again for up to [`REVISION_WITHIN`].
    pub fn revision(&self) -> anyhow::Result<u64> {
        let t = Instant::now();
        loop {
            match self.revision_once() {
                Ok(r) => return Ok(r),
                Err(e) if t.elapsed() > REVISION_WITHIN => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn revision_once(&self) -> anyhow::Result<u64> {
        let live = self.live();
        let out = self
            .etcdctl(&live)
            .stderr(Stdio::piped())
            .args([
                "get",
                "revision-probe",
                "--consistency=l",
                "-w",
                "json",
                "--command-timeout=5s",
            ])
            .output()
            .context("running etcdctl (Debian's etcd-client)")?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "etcdctl get against {live:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
        v["header"]["revision"]
            .as_u64()
            .with_context(|| format!("no revision from {live:?}: {v}"))
    }

    /// Waits until some member reports itself leader.
    pub fn wait_leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        let t = Instant::now();
        loop {
            match self.leader() {
                Ok(i) => return Ok(i),
                Err(e) if t.elapsed() > timeout => {
                    return Err(e.context(format!("etcd logs in {}", self.dir.display())));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Keeps the members' logs after the cluster is dropped.
    pub fn keep_logs(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            eprintln!("etcd logs kept in {}", tmp.keep().display());
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].frozen {
                let _ = self.freeze(i, false);
            }
            self.kill(i);
        }
        if std::thread::panicking() {
            self.keep_logs();
        }
    }
}

/// `VmHWM` of a `/proc/PID/status` text (kB there), in MiB.
fn vm_hwm_mib(status: &str) -> Option<u64> {
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

#[cfg(test)]
mod tests {
    use super::vm_hwm_mib;

    #[test]
    fn peak_rss_is_read_from_vm_hwm_only() {
        let status =
            "Name:\tetcd\nVmPeak:\t 2000000 kB\nVmHWM:\t  593920 kB\nVmRSS:\t  400000 kB\n";
        assert_eq!(vm_hwm_mib(status), Some(580));
        assert_eq!(vm_hwm_mib("VmRSS:\t 1024 kB\n"), None);
        assert_eq!(vm_hwm_mib("VmHWM:\t lots kB\n"), None);
        assert_eq!(vm_hwm_mib("VmHWM:\t 1024 MB\n"), None);
    }
}
