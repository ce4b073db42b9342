//! `cargo bench -p nethouse-cni --bench cni` — the CNI cycle of `nethouse-cni` + NetHouse
//! against Debian's `host-local`, same machine, same run, calls interleaved so both see the
//! same load. Prints the table recorded in BENCHMARKS.md.
//!
//! 1. IPAM only: ADD then DEL of one container, each a fresh process as a runtime runs it.
//! 2. bridge + IPAM: Debian's `bridge` plugin with a real veth into a network namespace
//!    (needs root; skipped with a note otherwise).
//!
//! `NETHOUSE_CNI_BIN=PATH` adds a row for that build of the plugin — `make bench` passes the
//! static binary that ships (`scripts/build-cni-static.sh`) next to cargo's default build.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nethouse::server::running::start_local;
use nethouse_api::SubnetSpec;
use nethouse_cni::invoke;
use serde_json::{Value, json};

// The workspace's one set of table helpers; the e2e crate that owns the file depends on this
// one, so it is included rather than depended on.
#[allow(dead_code)]
#[path = "../../tests/src/bench_table.rs"]
mod table;
use table::{header, ms, pct, row};

const PLUGIN: &str = env!("CARGO_BIN_EXE_nethouse-cni");
const HOST_LOCAL: &str = "/usr/lib/cni/host-local";
const CAT: &str = "/bin/cat";

/// (row label, binary) of each build of nethouse-cni to measure.
fn plugins() -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Ok(bin) = std::env::var("NETHOUSE_CNI_BIN") {
        let bin = std::fs::canonicalize(&bin)
            .unwrap_or_else(|e| panic!("NETHOUSE_CNI_BIN={bin}: {e}"))
            .display()
            .to_string();
        out.push((format!("nethouse-cni + NetHouse ({})", linkage(&bin)), bin));
    }
    out.push((
        format!("nethouse-cni + NetHouse (cargo build, {})", linkage(PLUGIN)),
        PLUGIN.to_string(),
    ));
    out
}

/// How the ELF file links: "dynamic" when it has an `.interp` section (a program interpreter),
/// else "static" with its C library — a static glibc carries its tunables parser, musl has none.
fn linkage(bin: &str) -> &'static str {
    let bytes = std::fs::read(bin).unwrap_or_else(|e| panic!("{bin}: {e}"));
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    if has(b".interp\0") {
        "dynamic"
    } else if has(b"GLIBC_TUNABLES") {
        "static, glibc"
    } else {
        "static, musl"
    }
}

fn cycles() -> usize {
    std::env::var("NETHOUSE_BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// One plugin process, timed from spawn to exit; `ipam_dir` is where the main plugin finds its
/// IPAM plugin.
fn call(
    binary: &str,
    ipam_dir: &str,
    command: &str,
    cid: &str,
    netns: &str,
    conf: &str,
) -> Duration {
    let t = Instant::now();
    let reply = invoke::Call::new(command)
        .container_id(cid)
        .netns(netns)
        .ifname("eth0")
        .args(&format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=p-{cid}"
        ))
        .path([ipam_dir, "/usr/lib/cni"])
        .run(Path::new(binary), conf.as_bytes())
        .unwrap_or_else(|e| panic!("{binary}: {e}"));
    let took = t.elapsed();
    assert!(reply.success(), "{binary} {command}: {}", reply.stdout);
    took
}

struct Stats {
    p50: Duration,
    p99: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    Stats {
        p50: pct(&v, 0.5),
        p99: pct(&v, 0.99),
    }
}

/// One table: every row against the last one, the host-local baseline.
fn compare(title: &str, rows: Vec<(String, Vec<Duration>)>) {
    let rows: Vec<(String, Stats)> = rows.into_iter().map(|(n, v)| (n, stats(v))).collect();
    let Some((base_name, base)) = rows.last() else {
        return;
    };
    println!("\n### {title}\n");
    header(&[
        "plugin".into(),
        "cycle p50".into(),
        "cycle p99".into(),
        format!("p50 / {base_name}"),
        format!("p99 / {base_name}"),
    ]);
    for (name, s) in &rows {
        row(&[
            name.clone(),
            ms(s.p50),
            ms(s.p99),
            format!("{:.2}×", s.p50.as_secs_f64() / base.p50.as_secs_f64()),
            format!("{:.2}×", s.p99.as_secs_f64() / base.p99.as_secs_f64()),
        ]);
    }
}

fn dir_of(bin: &str) -> String {
    std::path::Path::new(bin)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
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
        std::path::Path::new(HOST_LOCAL).exists(),
        "install containernetworking-plugins"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = rt
        .block_on(start_local(
            dir.path().join("nethouse"),
            Duration::ZERO,
            &[("z1", "10.120.0.0/16"), ("z2", "10.121.0.0/16")],
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let n = cycles();
    println!("## CNI cycle: nethouse-cni vs Debian host-local ({n} cycles each, interleaved)");

    // An ordinary pod's annotations, as containerd passes kubelet's: a pod named in CNI_ARGS
    // without them gets no address.
    let ours = |zone: &str| -> Value {
        json!({"cniVersion": "1.0.0", "name": "bench", "type": "bridge",
               "ipam": {"type": "nethouse-cni", "servers": [url], "zone": zone, "node": "bench-node"},
               "runtimeConfig": {"io.kubernetes.cri.pod-annotations": {"kubernetes.io/config.source": "api"}}})
    };
    let host_local = |range: &str, data: &std::path::Path| -> Value {
        json!({"cniVersion": "1.0.0", "name": "bench", "type": "bridge",
               "ipam": {"type": "host-local", "ranges": [[{"subnet": range}]], "dataDir": data}})
    };

    let plugins = plugins();

    // 1. IPAM only.
    let ours_conf = ours("z1").to_string();
    let hl_conf = host_local("10.130.0.0/16", &dir.path().join("host-local")).to_string();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); plugins.len() + 2];
    for i in 0..n + 20 {
        let cid = format!("ipam{i}");
        let none = "/var/run/netns/none";
        let mut runs: Vec<Duration> = plugins
            .iter()
            .map(|(_, bin)| {
                let d = dir_of(bin);
                call(bin, &d, "ADD", &cid, none, &ours_conf)
                    + call(bin, &d, "DEL", &cid, none, &ours_conf)
            })
            .collect();
        // A reference: two glibc processes that only copy the config through.
        runs.push(
            call(CAT, "", "ADD", &cid, none, &ours_conf)
                + call(CAT, "", "DEL", &cid, none, &ours_conf),
        );
        runs.push(
            call(HOST_LOCAL, "", "ADD", &cid, none, &hl_conf)
                + call(HOST_LOCAL, "", "DEL", &cid, none, &hl_conf),
        );
        if i >= 20 {
            for (t, r) in times.iter_mut().zip(runs) {
                t.push(r);
            }
        }
    }
    let labels = plugins.iter().map(|(l, _)| l.clone()).chain([
        "reference: two `/bin/cat` processes (glibc; spawn, stdin, stdout, exit)".to_string(),
        "host-local".to_string(),
    ]);
    compare(
        "IPAM only: ADD + DEL, one process per call",
        labels.zip(times).collect(),
    );

    // 2. bridge + IPAM with a real veth.
    if !is_root() {
        println!("\n(bridge + IPAM skipped: needs root for network namespaces)");
    } else {
        let tag = std::process::id() % 100_000;
        let ns = format!("nhbench{tag}");
        sh(&["ip", "netns", "add", &ns]);
        let netns = format!("/var/run/netns/{ns}");
        // One bridge and one zone (subnet) per row, so the rows never share addresses.
        let mut confs = Vec::new();
        let mut bridges = Vec::new();
        for (k, (_, bin)) in plugins.iter().enumerate() {
            let mut c = ours(&format!("zb{k}"));
            let br = format!("nhb{tag}{k}");
            c["bridge"] = json!(br);
            rt.block_on(client.add_subnet(&SubnetSpec {
                zone: format!("zb{k}"),
                cidr: format!("10.{}.0.0/16", 140 + k),
                ..Default::default()
            }))
            .unwrap();
            bridges.push(br);
            confs.push((bin.clone(), dir_of(bin), c.to_string()));
        }
        let mut hl_b = host_local("10.131.0.0/16", &dir.path().join("host-local-b"));
        let br = format!("nhb{tag}h");
        hl_b["bridge"] = json!(br);
        bridges.push(br);
        confs.push((HOST_LOCAL.into(), String::new(), hl_b.to_string()));
        let bridge = "/usr/lib/cni/bridge";
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); confs.len()];
        let m = (n / 3).max(30);
        for i in 0..m + 5 {
            let cid = format!("br{i}");
            let runs: Vec<Duration> = confs
                .iter()
                .map(|(_, ipam_dir, conf)| {
                    call(bridge, ipam_dir, "ADD", &cid, &netns, conf)
                        + call(bridge, ipam_dir, "DEL", &cid, &netns, conf)
                })
                .collect();
            if i >= 5 {
                for (t, r) in times.iter_mut().zip(runs) {
                    t.push(r);
                }
            }
        }
        for l in &bridges {
            let _ = Command::new("ip").args(["link", "del", l]).status();
        }
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        let labels = plugins
            .iter()
            .map(|(l, _)| l.clone())
            .chain(["bridge + host-local".to_string()]);
        compare(
            &format!("bridge + IPAM: ADD + DEL with a real veth ({m} cycles)"),
            labels.zip(times).collect(),
        );
    }
    rt.block_on(server.shutdown(Duration::from_secs(1)));
}
