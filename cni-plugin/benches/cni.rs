//! `cargo bench -p nethouse-cni --bench cni` — the CNI cycle of `nethouse-cni` + NetHouse
//! against Debian's `host-local`, same machine, same run, calls interleaved so both see the
//! same load. Prints the table recorded in BENCHMARKS.md.
//!
//! 1. IPAM only: ADD then DEL of one container, each a fresh process as a runtime runs it.
//! 2. bridge + IPAM: Debian's `bridge` plugin with a real veth into a network namespace
//!    (needs root; skipped with a note otherwise).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nethouse::server::running::{ServerOptions, start};
use nethouse_api::{Client, ClientConfig, SubnetSpec};
use serde_json::{Value, json};

const PLUGIN: &str = env!("CARGO_BIN_EXE_nethouse-cni");

fn cycles() -> usize {
    std::env::var("NETHOUSE_BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn call(binary: &str, command: &str, cid: &str, netns: &str, conf: &str) -> Duration {
    let t = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env(
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=p-{cid}"),
        )
        .env(
            "CNI_PATH",
            format!(
                "/usr/lib/cni:{}",
                std::path::Path::new(PLUGIN).parent().unwrap().display()
            ),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{binary} {command}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    took
}

struct Stats {
    p50: Duration,
    p99: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    Stats {
        p50: at(0.5),
        p99: at(0.99),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn row(cells: &[String]) {
    println!("| {} |", cells.join(" | "));
}

fn compare(title: &str, ours: Vec<Duration>, theirs: Vec<Duration>, theirs_name: &str) {
    let (a, b) = (stats(ours), stats(theirs));
    println!("\n### {title}\n");
    row(&["plugin".into(), "cycle p50".into(), "cycle p99".into()]);
    row(&["---".into(), "---".into(), "---".into()]);
    row(&["nethouse-cni + NetHouse".into(), ms(a.p50), ms(a.p99)]);
    row(&[theirs_name.into(), ms(b.p50), ms(b.p99)]);
    row(&[
        "ratio nethouse / host-local".into(),
        format!("{:.2}×", a.p50.as_secs_f64() / b.p50.as_secs_f64()),
        format!("{:.2}×", a.p99.as_secs_f64() / b.p99.as_secs_f64()),
    ]);
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn sh(args: &[&str]) {
    let ok = Command::new(args[0])
        .args(&args[1..])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{args:?}");
}

fn main() {
    assert!(
        std::path::Path::new("/usr/lib/cni/host-local").exists(),
        "install containernetworking-plugins"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ServerOptions::local(dir.path().join("nethouse"));
    opts.default_cooldown = Duration::ZERO;
    let server = rt.block_on(start(opts)).unwrap();
    let url = server.url();
    let client = Client::new(ClientConfig::new(url.clone())).unwrap();
    rt.block_on(client.add_subnet(&SubnetSpec {
        zone: "z1".into(),
        cidr: "10.120.0.0/16".into(),
        ..Default::default()
    }))
    .unwrap();
    rt.block_on(client.add_subnet(&SubnetSpec {
        zone: "z2".into(),
        cidr: "10.121.0.0/16".into(),
        ..Default::default()
    }))
    .unwrap();
    let n = cycles();
    println!("## CNI cycle: nethouse-cni vs Debian host-local ({n} cycles each, interleaved)");

    let ours = |zone: &str| -> Value {
        json!({"cniVersion": "1.0.0", "name": "bench", "type": "bridge",
               "ipam": {"type": "nethouse-cni", "servers": [url], "zone": zone, "node": "bench-node"}})
    };
    let host_local = |range: &str, data: &std::path::Path| -> Value {
        json!({"cniVersion": "1.0.0", "name": "bench", "type": "bridge",
               "ipam": {"type": "host-local", "ranges": [[{"subnet": range}]], "dataDir": data}})
    };

    // 1. IPAM only.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let ours_conf = ours("z1").to_string();
    let hl_conf = host_local("10.130.0.0/16", &dir.path().join("host-local")).to_string();
    for i in 0..n + 20 {
        let cid = format!("ipam{i}");
        let t_ours = call(PLUGIN, "ADD", &cid, "/var/run/netns/none", &ours_conf)
            + call(PLUGIN, "DEL", &cid, "/var/run/netns/none", &ours_conf);
        let t_hl = call(
            "/usr/lib/cni/host-local",
            "ADD",
            &cid,
            "/var/run/netns/none",
            &hl_conf,
        ) + call(
            "/usr/lib/cni/host-local",
            "DEL",
            &cid,
            "/var/run/netns/none",
            &hl_conf,
        );
        if i >= 20 {
            a.push(t_ours);
            b.push(t_hl);
        }
    }
    compare(
        "IPAM only: ADD + DEL, one process per call",
        a,
        b,
        "host-local",
    );

    // 2. bridge + IPAM with a real veth.
    if !is_root() {
        println!("\n(bridge + IPAM skipped: needs root for network namespaces)");
    } else {
        let tag = std::process::id() % 100_000;
        let (br1, br2) = (format!("nhb{tag}a"), format!("nhb{tag}b"));
        let ns = format!("nhbench{tag}");
        sh(&["ip", "netns", "add", &ns]);
        let netns = format!("/var/run/netns/{ns}");
        let mut ours_b = ours("z2");
        ours_b["bridge"] = json!(br1);
        let mut hl_b = host_local("10.131.0.0/16", &dir.path().join("host-local-b"));
        hl_b["bridge"] = json!(br2);
        let (ours_b, hl_b) = (ours_b.to_string(), hl_b.to_string());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let m = (n / 3).max(30);
        for i in 0..m + 5 {
            let cid = format!("br{i}");
            let t_ours = call("/usr/lib/cni/bridge", "ADD", &cid, &netns, &ours_b)
                + call("/usr/lib/cni/bridge", "DEL", &cid, &netns, &ours_b);
            let t_hl = call("/usr/lib/cni/bridge", "ADD", &cid, &netns, &hl_b)
                + call("/usr/lib/cni/bridge", "DEL", &cid, &netns, &hl_b);
            if i >= 5 {
                a.push(t_ours);
                b.push(t_hl);
            }
        }
        for l in [&br1, &br2] {
            let _ = Command::new("ip").args(["link", "del", l]).status();
        }
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        compare(
            &format!("bridge + IPAM: ADD + DEL with a real veth ({m} cycles)"),
            a,
            b,
            "bridge + host-local",
        );
    }
    rt.block_on(server.shutdown(Duration::from_secs(1)));
}
