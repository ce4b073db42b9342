//! Runs the real `nethouse serve` binary for integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use nethouse_api::{
    AllocateRequest, Attachment, Client, ClientConfig, LeaseKind, Owner, SubnetSpec,
};

pub mod etcd;
mod pki;
pub use pki::tls_files;
pub mod serve_process;
use serve_process::Serve;

pub const NODE_TOKEN: &str = "node-token-0123456789abcdef";
pub const CTRL_TOKEN: &str = "controller-token-0123456789abcdef";
/// Bound to node `node-a` (`node:node-a TOKEN`): it acts for that node only.
pub const NODE_A_TOKEN: &str = "node-a-token-0123456789abcdef";
/// Bound to node `node-b`.
pub const NODE_B_TOKEN: &str = "node-b-token-0123456789abcdef";

pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

fn auth_file(dir: &Path) -> PathBuf {
    let p = dir.join("auth");
    std::fs::write(
        &p,
        format!(
            "node {NODE_TOKEN}\ncontroller {CTRL_TOKEN}\n\
             node:node-a {NODE_A_TOKEN}\nnode:node-b {NODE_B_TOKEN}\n"
        ),
    )
    .unwrap();
    p
}

impl Server {
    /// Starts a server on a free port over `dir/data`; extra args are appended.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        let data_dir = dir.join("data");
        let store = ["--data-dir".to_string(), data_dir.display().to_string()];
        Self::start_on(dir, &store, extra)
    }

    /// Starts a server on a free port over etcd at `etcd_url` (`--store etcd`), its files in
    /// `dir`; extra args are appended.
    pub fn start_on_etcd(dir: &Path, etcd_url: &str, extra: &[&str]) -> Server {
        let store = [
            "--store=etcd".to_string(),
            format!("--etcd-endpoints={etcd_url}"),
        ];
        Self::start_on(dir, &store, extra)
    }

    fn start_on(dir: &Path, store: &[String], extra: &[&str]) -> Server {
        std::fs::create_dir_all(dir).unwrap();
        let data_dir = dir.join("data");
        let log = dir.join(format!("server-{}.log", std::process::id()));
        let served = Serve::new(env!("CARGO_BIN_EXE_nethouse"), dir.join("ready"))
            .args(["--listen", "127.0.0.1:0"])
            .args(store)
            .arg("--auth-file")
            .arg(auth_file(dir))
            .args(extra)
            .log(&log)
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let scheme = if extra.contains(&"--tls-cert") {
            "https"
        } else {
            "http"
        };
        Server {
            child: Some(served.child),
            url: format!("{scheme}://{}", served.addr),
            data_dir,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn client(&self, token: &str) -> Client {
        let mut cfg = ClientConfig::new(self.url.clone());
        cfg.token = Some(token.to_string());
        Client::new(cfg).unwrap()
    }

    /// The value of one series of its `/metrics` (name and labels, as exposed); `None` when it
    /// is not exposed or the server does not answer.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        sample(&self.metrics().await?, series)
    }

    /// The server's `/metrics` page, one scrape.
    pub async fn metrics(&self) -> Option<String> {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    pub fn node(&self) -> Client {
        self.client(NODE_TOKEN)
    }

    pub fn ctrl(&self) -> Client {
        self.client(CTRL_TOKEN)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    /// SIGTERM without waiting: the server drains while the test looks at it.
    pub fn signal_term(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
    }

    /// Waits for the process to end; returns the exit status.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child
            .take()
            .expect("server already stopped")
            .wait()
            .unwrap()
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("server already stopped");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        c.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn subnet(zone: &str, cidr: &str) -> SubnetSpec {
    SubnetSpec {
        zone: zone.into(),
        cidr: cidr.into(),
        ..Default::default()
    }
}

/// A server over https with a certificate of a fresh CA (`tls_files`); returns it and the CA.
pub fn start_tls(dir: &Path) -> (Server, PathBuf) {
    let (ca, cert, key) = tls_files(dir);
    let server = Server::start(
        dir,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(server.url.starts_with("https://"));
    (server, ca)
}

/// The `i`th allocation of client `client_no` in zone `z1`: fixed and ephemeral in turn, each
/// for a pod and container of its own, on one of four nodes.
pub fn load_request(client_no: usize, i: usize) -> AllocateRequest {
    AllocateRequest {
        zone: "z1".into(),
        kind: if i.is_multiple_of(2) {
            LeaseKind::Fixed
        } else {
            LeaseKind::Ephemeral
        },
        owner: Some(Owner {
            cluster: "k".into(),
            namespace: "ns".into(),
            pod: format!("p{client_no}-{i}"),
        }),
        attachment: Attachment {
            container_id: format!("c{client_no}-{i}"),
            ifname: "eth0".into(),
            node: format!("n{}", client_no % 4),
        },
    }
}

/// The value of `series` (name and labels, as exported) in a `/metrics` page.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
