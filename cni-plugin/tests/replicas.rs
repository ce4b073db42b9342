//! The plugin configured with every NetHouse replica's URL (`ipam.servers`), three
//! `nethouse serve --store etcd` on one real etcd: ADD and DEL keep working, with no error the
//! runtime sees, while one replica is SIGKILLed (the plugin goes to the next URL within the
//! call); with every replica down, ADD is error 11 (try again later) naming each URL.

mod common;

use std::process::Child;

use common::{Cni, conf};
use serde_json::json;

#[allow(dead_code)]
#[path = "../../nethouse/tests/common/etcd.rs"]
mod etcd;
#[allow(dead_code)]
#[path = "../../nethouse/tests/common/serve_process.rs"]
mod serve_process;

/// The workspace's `nethouse` binary, next to cargo's build of the plugin (`make test` may
/// test another plugin binary, built elsewhere).
fn nethouse_bin() -> std::path::PathBuf {
    let plugin = std::path::Path::new(env!("CARGO_BIN_EXE_nethouse-cni"));
    let bin = plugin.with_file_name("nethouse");
    assert!(
        bin.exists(),
        "{} missing: build it first (cargo build -p nethouse)",
        bin.display()
    );
    bin
}

struct Replica(Option<Child>);

impl Replica {
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn add_and_del_go_on_while_a_replica_dies_and_all_down_is_error_11() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = etcd::Etcd::start(&dir.path().join("etcd"), None);
    let mut replicas = Vec::new();
    let mut urls = Vec::new();
    for i in 0..3 {
        let served =
            serve_process::Serve::new(nethouse_bin(), dir.path().join(format!("r{i}.addr")))
                .args([
                    "--insecure-no-auth",
                    "--store",
                    "etcd",
                    "--listen",
                    "127.0.0.1:0",
                ])
                .arg(format!("--etcd-endpoints={}", etcd.url))
                .log(dir.path().join(format!("r{i}.log")))
                .spawn()
                .unwrap_or_else(|e| panic!("replica {i}: {e}"));
        urls.push(format!("http://{}", served.addr));
        replicas.push(Replica(Some(served.child)));
    }
    let add_subnet = std::process::Command::new(nethouse_bin())
        .env("NETHOUSE_SERVER", &urls[1])
        .args(["subnet", "add", "--zone", "z1", "--cidr", "10.77.0.0/24"])
        .output()
        .unwrap();
    assert!(add_subnet.status.success(), "{add_subnet:?}");

    let mut c = conf("1.1.0", &urls[0], "z1", "n1", Some(true));
    c["ipam"]["servers"] = json!(urls);
    let stdin = c.to_string();
    let mut ips = std::collections::BTreeMap::new();
    for round in 0..30 {
        if round == 10 {
            // The first URL every call tries is gone from now on.
            replicas[0].kill();
        }
        if round == 20 {
            replicas[1].kill();
        }
        let id = format!("ctr{round}");
        let pod = format!("db-{}", round % 5);
        let add = Cni::new("ADD", &id).pod("default", &pod).run(&stdin);
        let ip = add.ip();
        // A fixed pod's IP survives its DEL and comes back on its next ADD, whichever replica.
        if let Some(before) = ips.insert(pod.clone(), ip.clone()) {
            assert_eq!(before, ip, "{pod} in round {round}");
        }
        Cni::new("DEL", &id).pod("default", &pod).run(&stdin).ok();
    }
    assert_eq!(ips.len(), 5);

    replicas[2].kill();
    let e = Cni::new("ADD", "ctr-last")
        .pod("default", "db-0")
        .run(&stdin)
        .err(11);
    let text = e.to_string();
    for u in &urls {
        assert!(text.contains(u.as_str()), "{u} not named: {text}");
    }
}
