//! A one-member etcd (Debian's etcd-server) on free loopback ports with its own data directory,
//! for the etcd store's tests; killed by its PID when dropped, also when a test panics. Plain
//! HTTP, or TLS that requires client certificates. Standard library only: the library's unit
//! tests include this file by `#[path]`, the integration tests through `common`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// etcd's TLS: its own certificate (for 127.0.0.1) and the CA that signs it and its clients.
pub struct EtcdTlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A client certificate of the CA, for etcdctl (and tests that need one).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub struct Etcd {
    child: Child,
    /// The client URL: `http://127.0.0.1:PORT` or `https://…`.
    pub url: String,
    pub dir: PathBuf,
    tls: Option<EtcdTlsFiles>,
    /// Set once auth is on: etcdctl then runs as root.
    root_password: Option<String>,
}

#[path = "ports.rs"]
mod ports;

/// A loopback port free now (see `ports.rs`).
fn free_port() -> u16 {
    ports::free_port().expect("a free loopback port")
}

impl Etcd {
    /// Starts etcd in `dir` (its data and log go there) and waits until it answers.
    pub fn start(dir: &Path, tls: Option<EtcdTlsFiles>) -> Etcd {
        Self::start_with(dir, tls, &[])
    }

    /// As [`Etcd::start`], with more of etcd's flags (e.g. `--max-txn-ops=16`).
    pub fn start_with(dir: &Path, tls: Option<EtcdTlsFiles>, flags: &[&str]) -> Etcd {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let initial = format!("default={peer}");
        let etcd = Self::spawn(dir, "default", url, &peer, &initial, tls, flags);
        etcd.wait_healthy(Duration::from_secs(30));
        etcd
    }

    /// `n` members of one etcd, each in `dir/m{i}`, plain HTTP; returned once every member
    /// answers (a leader was elected).
    pub fn cluster(dir: &Path, n: usize) -> Vec<Etcd> {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let members: Vec<Etcd> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let (name, url) = (format!("m{i}"), format!("http://127.0.0.1:{client}"));
                let peer = format!("http://127.0.0.1:{peer}");
                Self::spawn(&dir.join(&name), &name, url, &peer, &initial, None, &[])
            })
            .collect();
        for m in &members {
            m.wait_healthy(Duration::from_secs(30));
        }
        members
    }

    /// Starts one member named `name` (not waited for).
    fn spawn(
        dir: &Path,
        name: &str,
        url: String,
        peer: &str,
        initial_cluster: &str,
        tls: Option<EtcdTlsFiles>,
        flags: &[&str],
    ) -> Etcd {
        std::fs::create_dir_all(dir).expect("etcd's directory");
        let log = std::fs::File::create(dir.join("etcd.log")).expect("etcd's log");
        let mut cmd = Command::new("etcd");
        cmd.arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={initial_cluster}"))
            // Bounded test data; keeps the tmpfs usage small.
            .arg("--quota-backend-bytes=268435456")
            .args(flags);
        if let Some(t) = &tls {
            cmd.arg(format!("--cert-file={}", t.cert.display()))
                .arg(format!("--key-file={}", t.key.display()))
                .arg(format!("--trusted-ca-file={}", t.ca.display()))
                .arg("--client-cert-auth");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd's log"))
            .stderr(log)
            .spawn()
            .expect("starting etcd (Debian's etcd-server)");
        Etcd {
            child,
            url,
            dir: dir.to_path_buf(),
            tls,
            root_password: None,
        }
    }

    /// What etcdctl's status says of this member: (its ID, the leader's ID, the revision).
    fn status(&self) -> (String, String, u64) {
        let status = self.etcdctl(&["endpoint", "status", "-w", "fields"]);
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("\"{name}\" : ")))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let revision = field("Revision").parse().unwrap_or(0);
        (field("MemberID"), field("Leader"), revision)
    }

    /// Whether this member leads its cluster now.
    pub fn is_leader(&self) -> bool {
        let (id, leader, _) = self.status();
        !id.is_empty() && id == leader
    }

    /// etcd's revision now.
    pub fn revision(&self) -> u64 {
        self.status().2
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    fn wait_healthy(&self, within: Duration) {
        let started = Instant::now();
        loop {
            let out = self.etcdctl_output(&["endpoint", "health"]);
            if out.status.success() {
                return;
            }
            assert!(
                started.elapsed() < within,
                "etcd at {} not healthy within {within:?}: {}\n{}",
                self.url,
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn etcdctl_output(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.url))
            .arg("--command-timeout=10s");
        if let Some(t) = &self.tls {
            cmd.arg(format!("--cacert={}", t.ca.display()))
                .arg(format!("--cert={}", t.client_cert.display()))
                .arg(format!("--key={}", t.client_key.display()));
        }
        if let Some(p) = &self.root_password {
            cmd.arg(format!("--user=root:{p}"));
        }
        cmd.args(args)
            .output()
            .expect("running etcdctl (Debian's etcd-client)")
    }

    /// Runs etcdctl against this etcd; panics with its stderr when it fails.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = self.etcdctl_output(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Turns auth on with `user`/`password` allowed to read and write under `prefix` only.
    pub fn enable_auth(&mut self, user: &str, password: &str, prefix: &str) {
        let root = "root-password-for-tests";
        self.etcdctl(&["user", "add", &format!("root:{root}")]);
        self.etcdctl(&["user", "add", &format!("{user}:{password}")]);
        self.etcdctl(&["role", "add", "nethouse"]);
        self.etcdctl(&[
            "role",
            "grant-permission",
            "nethouse",
            "--prefix=true",
            "readwrite",
            prefix,
        ]);
        self.etcdctl(&["user", "grant-role", user, "nethouse"]);
        self.etcdctl(&["auth", "enable"]);
        self.root_password = Some(root.into());
    }

    /// Compacts etcd's history up to `revision`: watches from before it must re-read.
    pub fn compact(&self, revision: u64) {
        self.etcdctl(&["compaction", &revision.to_string()]);
    }

    /// SIGSTOP (`true`) or SIGCONT: etcd stops answering without closing its connections.
    pub fn pause(&self, stop: bool) {
        let sig = if stop { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {sig} {}", self.pid());
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // A paused etcd dies of SIGKILL all the same.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
