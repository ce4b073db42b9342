//! A control plane on loopback: etcd, kube-apiserver (RBAC on), kube-controller-manager (the
//! real StatefulSet, garbage-collector and node-lifecycle controllers) and kube-scheduler.
//! Dropping the [`Cluster`] stops every process it started, by PID; when the thread is
//! panicking (a failed test) the work directory with each component's log is kept.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::binaries::Binaries;
use crate::pki::Pki;
use crate::ports::free_port;

#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// A KubeSchedulerConfiguration file (e.g. the one in `manifests/`); the harness fills in
    /// the kubeconfig path. `None`: the scheduler's defaults.
    pub scheduler_config: Option<PathBuf>,
    /// How long a node may miss heartbeats before it is NotReady (controller manager's
    /// `--node-monitor-grace-period`). Short, so node-failure tests stay short.
    pub node_monitor_grace: Duration,
    /// The scheduler's API client rate (`clientConnection.qps`, burst twice that) when a
    /// `scheduler_config` is given; `None`: upstream's default (50).
    pub scheduler_qps: Option<u32>,
    /// For real nodes (kubelets in other network namespaces; `realnode`): an address of the
    /// control plane's network namespace the nodes route to. kube-apiserver then listens on
    /// all addresses (loopback stays the harness's way in), advertises this one, and reaches
    /// kubelets at their InternalIP rather than looking their names up in DNS. `None`:
    /// loopback only.
    pub node_facing_address: Option<std::net::IpAddr>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            scheduler_config: None,
            scheduler_qps: None,
            node_monitor_grace: Duration::from_secs(20),
            node_facing_address: None,
        }
    }
}

pub struct Cluster {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub server: String,
    pub bin: Binaries,
    /// etcd's client URL (plain HTTP on loopback).
    pub etcd_url: String,
    procs: Vec<(&'static str, Child)>,
    /// kube-apiserver's flags, to start it again ([`Cluster::restart_apiserver`]).
    apiserver_args: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

fn spawn(
    name: &'static str,
    program: &Path,
    args: &[String],
    logs: &Path,
) -> anyhow::Result<Child> {
    // Appended: a component started again (kube-apiserver after a restart) keeps one log.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join(format!("{name}.log")))?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name} ({})", program.display()))
}

impl Cluster {
    pub fn start(opts: ClusterOptions) -> anyhow::Result<Cluster> {
        let bin = crate::binaries::ensure()?;
        let tmp = tempfile::Builder::new()
            .prefix("nethouse-cluster-")
            .tempdir()?;
        let dir = tmp.path().to_path_buf();
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let pki = Pki::create(&dir.join("pki"))?;
        let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        let server = format!("https://127.0.0.1:{api_port}");
        let mut cluster = Cluster {
            kubeconfig: dir.join("admin.kubeconfig"),
            dir: dir.clone(),
            server: server.clone(),
            bin,
            etcd_url: String::new(),
            procs: Vec::new(),
            apiserver_args: Vec::new(),
            _tmp: Some(tmp),
        };
        for who in ["admin", "controller-manager", "scheduler"] {
            pki.kubeconfig(who, &server, &dir.join(format!("{who}.kubeconfig")))?;
        }
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = spawn(
            "etcd",
            &cluster.bin.etcd,
            &[
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                "--quota-backend-bytes=2147483648".into(),
            ],
            &logs,
        )?;
        cluster.procs.push(("etcd", etcd));
        cluster.etcd_url = etcd_url.clone();

        let f = |n: &str| pki.file(n);
        cluster.apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--tls-cert-file={}", f("apiserver.crt")),
            format!("--tls-private-key-file={}", f("apiserver.key")),
            format!("--client-ca-file={}", f("ca.crt")),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", f("sa.pub")),
            format!("--service-account-signing-key-file={}", f("sa.key")),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--authorization-mode=Node,RBAC".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
        ];
        if let Some(ip) = opts.node_facing_address {
            let args = &mut cluster.apiserver_args;
            args.retain(|a| {
                !a.starts_with("--bind-address=") && !a.starts_with("--advertise-address=")
            });
            args.push("--bind-address=0.0.0.0".into());
            args.push(format!("--advertise-address={ip}"));
            args.push("--kubelet-preferred-address-types=InternalIP".into());
        }
        let apiserver = spawn(
            "kube-apiserver",
            &cluster.bin.k8s.join("kube-apiserver"),
            &cluster.apiserver_args,
            &logs,
        )?;
        cluster.procs.push(("kube-apiserver", apiserver));
        cluster.wait_ready(Duration::from_secs(90))?;

        let cm_kubeconfig = dir
            .join("controller-manager.kubeconfig")
            .display()
            .to_string();
        let cm = spawn(
            "kube-controller-manager",
            &cluster.bin.k8s.join("kube-controller-manager"),
            &[
                format!("--kubeconfig={cm_kubeconfig}"),
                format!("--authentication-kubeconfig={cm_kubeconfig}"),
                format!("--authorization-kubeconfig={cm_kubeconfig}"),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
                "--use-service-account-credentials=true".into(),
                format!("--service-account-private-key-file={}", f("sa.key")),
                format!("--root-ca-file={}", f("ca.crt")),
                format!("--cluster-signing-cert-file={}", f("ca.crt")),
                format!("--cluster-signing-key-file={}", f("ca.key")),
                format!(
                    "--node-monitor-grace-period={}s",
                    opts.node_monitor_grace.as_secs()
                ),
                "--node-monitor-period=2s".into(),
                "--controllers=*".into(),
            ],
            &logs,
        )?;
        cluster.procs.push(("kube-controller-manager", cm));

        let sched_kubeconfig = dir.join("scheduler.kubeconfig").display().to_string();
        let mut sched_args = vec![
            format!("--kubeconfig={sched_kubeconfig}"),
            format!("--authentication-kubeconfig={sched_kubeconfig}"),
            format!("--authorization-kubeconfig={sched_kubeconfig}"),
            "--bind-address=127.0.0.1".into(),
            "--secure-port=0".into(),
            "--leader-elect=false".into(),
        ];
        if let Some(cfg) = &opts.scheduler_config {
            let text = std::fs::read_to_string(cfg)
                .with_context(|| format!("reading {}", cfg.display()))?;
            let rate = opts
                .scheduler_qps
                .map(|q| format!("  qps: {q}\n  burst: {}\n", 2 * q))
                .unwrap_or_default();
            let text = format!(
                "{}\nclientConnection:\n  kubeconfig: {sched_kubeconfig}\n{rate}leaderElection:\n  leaderElect: false\n",
                text.trim_end()
            );
            let path = dir.join("scheduler-config.yaml");
            std::fs::write(&path, text)?;
            sched_args = vec![
                format!("--config={}", path.display()),
                format!("--authentication-kubeconfig={sched_kubeconfig}"),
                format!("--authorization-kubeconfig={sched_kubeconfig}"),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
            ];
        }
        let sched = spawn(
            "kube-scheduler",
            &cluster.bin.k8s.join("kube-scheduler"),
            &sched_args,
            &logs,
        )?;
        cluster.procs.push(("kube-scheduler", sched));
        // Pods cannot be admitted before the controller manager created the namespace's
        // default ServiceAccount; a cluster handed out earlier would reject the first pods.
        cluster.wait_for("the default ServiceAccount", Duration::from_secs(60), |c| {
            c.kubectl(&["get", "serviceaccount", "default", "-o", "name"])
                .ok()
        })?;
        Ok(cluster)
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            self.check_alive()?;
            if self
                .kubectl(&["get", "--raw", "/readyz"])
                .is_ok_and(|o| o.trim() == "ok")
            {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "kube-apiserver not ready after {timeout:?}; logs in {}",
                    self.dir.join("logs").display()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Stops kube-apiserver, runs `while_down` (e.g. changes made behind its back in etcd),
    /// starts it again with the same flags and waits until it is ready. Every watch on it
    /// breaks; a client resuming from a revision the new apiserver no longer serves must list
    /// again.
    pub fn restart_apiserver(
        &mut self,
        while_down: impl FnOnce(&Cluster) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let i = self
            .procs
            .iter()
            .position(|(n, _)| *n == "kube-apiserver")
            .context("kube-apiserver is not running")?;
        let child = &mut self.procs[i].1;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        while_down(self)?;
        let again = spawn(
            "kube-apiserver",
            &self.bin.k8s.join("kube-apiserver"),
            &self.apiserver_args,
            &self.dir.join("logs"),
        )?;
        self.procs[i].1 = again;
        self.wait_ready(Duration::from_secs(90))
    }

    /// Runs Debian's etcdctl (v3 API) against the cluster's etcd; the error carries its stderr.
    pub fn etcdctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.etcd_url))
            .args(args)
            .output()
            .context("running etcdctl (Debian's etcd-client)")?;
        if !out.status.success() {
            bail!(
                "etcdctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Fails if a component has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for (name, child) in &mut self.procs {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{name} exited with {status}; see {}",
                    self.dir.join("logs").join(format!("{name}.log")).display()
                );
            }
        }
        Ok(())
    }

    /// Runs kubectl as the cluster admin; the error carries kubectl's stderr.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        use std::io::Write;
        let mut child = Command::new(self.bin.kubectl())
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running kubectl")?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Polls `f` until it returns `Some`, or fails after `timeout`.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Cluster) -> Option<T>,
    ) -> anyhow::Result<T> {
        let start = Instant::now();
        loop {
            if let Some(v) = f(self) {
                return Ok(v);
            }
            self.check_alive()?;
            if start.elapsed() > timeout {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; logs in {}",
                    self.dir.join("logs").display()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|(_, c)| c.id()).collect()
    }

    /// Stops every component, newest first (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(&mut self) {
        for (_, child) in self.procs.iter_mut().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, child) in self.procs.iter_mut().rev() {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.procs.clear();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking()
            && let Some(tmp) = self._tmp.take()
        {
            let kept = tmp.keep();
            eprintln!("control-plane logs kept in {}", kept.join("logs").display());
        }
    }
}
