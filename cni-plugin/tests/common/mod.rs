//! A real NetHouse (in this process, on loopback) and a way to run the real `nethouse-cni`
//! binary the way a runtime does (`nethouse_cni::invoke`), with test defaults and checks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use nethouse::server::Auth;
use nethouse::server::running::{Running, ServerOptions, start};
use nethouse_api::{Client, ClientConfig, SubnetSpec};
use nethouse_cni::invoke;
use serde_json::{Value, json};

#[path = "../../../nethouse/tests/common/pki.rs"]
mod pki;
pub use pki::tls_files;

/// The plugin under test: cargo's build, or the one `NETHOUSE_CNI_BIN` names — `make test` sets
/// it to the static binary that ships (`scripts/build-cni-static.sh`).
pub fn plugin() -> String {
    std::env::var("NETHOUSE_CNI_BIN")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_nethouse-cni").to_string())
}

pub struct Nethouse {
    pub rt: tokio::runtime::Runtime,
    server: Option<Running>,
    pub dir: tempfile::TempDir,
    pub url: String,
    cooldown: Duration,
    /// The CA bundle that verifies the server's certificate, when it serves HTTPS.
    pub ca: Option<PathBuf>,
    tls: Option<(PathBuf, PathBuf)>,
    auth: Auth,
}

impl Nethouse {
    pub fn start(cooldown: Duration) -> Nethouse {
        Self::start_with(cooldown, false, Auth::Disabled)
    }

    /// With the tokens of an auth file's text (`ROLE TOKEN` lines).
    pub fn start_with_auth(cooldown: Duration, auth_file: &str) -> Nethouse {
        let auth = Auth::parse(auth_file).expect("a valid auth file");
        Self::start_with(cooldown, false, auth)
    }

    /// Serves HTTPS with a certificate (127.0.0.1, `nethouse.test`) from a test CA: `self.ca`.
    pub fn start_tls(cooldown: Duration) -> Nethouse {
        Self::start_with(cooldown, true, Auth::Disabled)
    }

    fn start_with(cooldown: Duration, https: bool, auth: Auth) -> Nethouse {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (ca, tls) = if https {
            let (ca, cert, key) = tls_files(dir.path());
            (Some(ca), Some((cert, key)))
        } else {
            (None, None)
        };
        let mut nh = Nethouse {
            rt,
            server: None,
            dir,
            url: String::new(),
            cooldown,
            ca,
            tls,
            auth,
        };
        nh.run(None);
        nh
    }

    fn run(&mut self, port: Option<u16>) {
        let mut opts = ServerOptions::local(self.dir.path().join("data"));
        opts.default_cooldown = self.cooldown;
        opts.tls = self.tls.clone();
        opts.auth = self.auth.clone();
        if let Some(p) = port {
            opts.listen.set_port(p);
        }
        let running = self.rt.block_on(start(opts)).expect("NetHouse starts");
        self.url = running.url();
        self.server = Some(running);
    }

    /// Stops the server (the port is closed; state stays on disk).
    pub fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown(Duration::from_secs(2)));
        }
    }

    /// Starts it again on the same port, so configs keep pointing at it.
    pub fn restart(&mut self) {
        let port = self.url.rsplit(':').next().and_then(|p| p.parse().ok());
        self.run(port);
    }

    pub fn client(&self) -> Client {
        let mut config = ClientConfig::new(self.url.clone());
        config.ca_pem = self.ca.as_ref().map(|p| std::fs::read(p).unwrap());
        Client::new(config).unwrap()
    }

    /// The value of one series of `/metrics`, e.g.
    /// `nethouse_cni_refused_total{reason="pod_annotations_missing"}`; 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let client = nethouse_api::BlockingClient::new(ClientConfig::new(self.url.clone()))
            .expect("a client of the test server");
        let (status, body) = client.get("/metrics").expect("GET /metrics");
        assert!(status.is_success(), "GET /metrics: {status}");
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    pub fn add_subnet(&self, spec: SubnetSpec) {
        let c = self.client();
        self.rt.block_on(c.add_subnet(&spec)).unwrap();
    }
}

impl Drop for Nethouse {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn subnet(zone: &str, cidr: &str) -> SubnetSpec {
    SubnetSpec {
        zone: zone.into(),
        cidr: cidr.into(),
        ..Default::default()
    }
}

#[derive(Debug, Clone)]
pub struct Call {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Call {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }

    pub fn ip(&self) -> String {
        self.ok();
        let v = self.json();
        let addr = v["ips"][0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("no ips: {v}"));
        addr.split('/').next().unwrap().to_string()
    }

    /// Asserts a CNI error with this code; returns the error object.
    pub fn err(&self, code: u64) -> Value {
        assert_ne!(self.code, 0, "{self:?}");
        let v = self.json();
        assert_eq!(v["code"], code, "{self:?}");
        v
    }
}

/// The CNI call a runtime would make.
pub struct Cni<'a> {
    pub command: &'a str,
    pub container_id: &'a str,
    pub ifname: &'a str,
    pub netns: &'a str,
    pub args: String,
    pub path: String,
}

impl<'a> Cni<'a> {
    pub fn new(command: &'a str, container_id: &'a str) -> Self {
        Cni {
            command,
            container_id,
            ifname: "eth0",
            netns: "/var/run/netns/none",
            args: String::new(),
            path: format!(
                "/usr/lib/cni:{}",
                Path::new(&plugin()).parent().unwrap().display()
            ),
        }
    }

    pub fn pod(mut self, namespace: &str, name: &str) -> Self {
        self.args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID=uid-{name}",
            self.container_id
        );
        self
    }

    /// Runs `binary` (the plugin itself, or a main plugin like Debian's bridge).
    pub fn run_binary(&self, binary: &str, stdin: &str) -> Call {
        let reply = invoke::Call::new(self.command)
            .container_id(self.container_id)
            .netns(self.netns)
            .ifname(self.ifname)
            .args(&self.args)
            .path([&self.path])
            .run(Path::new(binary), stdin.as_bytes())
            .unwrap_or_else(|e| panic!("running {binary}: {e}"));
        Call {
            code: reply.status.code().unwrap_or(-1),
            stdout: reply.stdout,
            stderr: reply.stderr,
        }
    }

    pub fn run(&self, stdin: &str) -> Call {
        self.run_binary(&plugin(), stdin)
    }
}

/// A network config with `nethouse-cni` as IPAM and the pod's annotations the way containerd
/// passes kubelet's (runtimeConfig, never empty); `fixed` sets `nethouse.io/fixed-ip` among them.
pub fn conf(version: &str, url: &str, zone: &str, node: &str, fixed: Option<bool>) -> Value {
    let mut annotations = json!({"kubernetes.io/config.source": "api"});
    if let Some(f) = fixed {
        annotations["nethouse.io/fixed-ip"] = json!(f.to_string());
    }
    json!({
        "cniVersion": version,
        "name": "nhtest",
        "type": "bridge",
        "ipam": {"type": "nethouse-cni", "servers": [url], "zone": zone, "node": node, "cluster": "test"},
        "runtimeConfig": {"io.kubernetes.cri.pod-annotations": annotations}
    })
}

/// `conf` as the runtime sends it when the conflist entry lacks the pod-annotations
/// capability: no runtimeConfig at all.
pub fn without_pod_annotations(mut conf: Value) -> Value {
    if let Some(m) = conf.as_object_mut() {
        m.remove("runtimeConfig");
    }
    conf
}
