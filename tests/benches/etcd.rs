//! `cargo bench -p nethouse-e2e --bench etcd` — NetHouse's allocation throughput and latency on
//! its two stores, in one run on one machine: the embedded store (one `nethouse serve`, redb,
//! an fsync per group commit) and a real 3-member etcd (Debian's etcd-server on loopback) with
//! 3 `nethouse serve --store etcd` replicas, the same 64 clients allocating fixed leases through
//! all of them (each client starts at another replica). The anchor: etcd's own load generator
//! (`benchmark put`, built by tests/harness/build-etcd-benchmark.sh) with the same client count
//! on the same cluster — the durable puts/s this etcd can take at all. Then the same on etcd at
//! other client counts, each beside etcd's own puts at that count: where rate and tail latency
//! meet. And the target's rate offered on a schedule to both stores and to etcd's own puts
//! (`--rate`): the tail latency at that rate, counted from when each allocation was due and,
//! as etcd's tool counts, from when it was sent. etcd's members run with `GOGC=200`, as the
//! README recommends; the last table repeats the 64-client run and the schedule on a fresh
//! cluster with Go's default, beside each cluster's peak memory.
//!
//! Build NetHouse first: `cargo build --release -p nethouse`.

use std::io::{Read, Write};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nethouse_api::SubnetSpec;
use nethouse_e2e::alloc_load::{fixed_request, rotated_client};
use nethouse_e2e::bench_table::{header, ms, pct, row};
use nethouse_e2e::binaries::{harness_script, release_bin};
use nethouse_e2e::etcd_cluster::EtcdCluster;
use nethouse_e2e::ports::free_port;
use tokio::sync::Mutex;

#[allow(dead_code)]
#[path = "../../nethouse/tests/common/serve_process.rs"]
mod serve_process;

const CLIENTS: usize = 64;
/// `GOGC` of etcd's members in the main runs, as the README recommends for NetHouse's etcd:
/// with Go's default (100) the leader spent a fifth of its CPU collecting garbage (its
/// profile; most bytes are the read buffer etcd 3.4 copies for every transaction). The last
/// table runs the same on Go's default.
const GO_GC: u32 = 200;
/// The other client counts measured on etcd (after the main table, on the same cluster).
const SWEEP: [usize; 3] = [16, 32, 128];
const WARM_UP: Duration = Duration::from_secs(2);
const MEASURE: Duration = Duration::from_secs(10);

struct Killed(Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `nethouse serve` with `store` flags on a free port; its URL.
fn serve(dir: &std::path::Path, name: &str, store: &[String], procs: &mut Killed) -> String {
    let port = free_port().unwrap();
    let served = serve_process::Serve::new(
        release_bin("nethouse").unwrap(),
        dir.join(format!("{name}.addr")),
    )
    .arg("--insecure-no-auth")
    .env("RUST_LOG", "warn")
    .arg(format!("--listen=127.0.0.1:{port}"))
    .args(store)
    .log(dir.join(format!("{name}.log")))
    .spawn()
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    procs.0.push(served.child);
    format!("http://{}", served.addr)
}

struct Result {
    allocations: usize,
    per_second: f64,
    latencies: Vec<Duration>,
    errors: usize,
}

impl Result {
    /// From the latencies of the allocations acknowledged in the measured window.
    fn measured(mut latencies: Vec<Duration>, errors: usize) -> Result {
        latencies.sort();
        Result {
            allocations: latencies.len(),
            per_second: latencies.len() as f64 / MEASURE.as_secs_f64(),
            latencies,
            errors,
        }
    }
}

/// The zone's subnet: room for every allocation of every run (~1 million addresses).
async fn add_subnet(urls: &[String]) {
    let spec: SubnetSpec =
        serde_json::from_value(serde_json::json!({"zone": "z1", "cidr": "10.64.0.0/12"})).unwrap();
    rotated_client(urls, 0, None)
        .add_subnet(&spec)
        .await
        .unwrap();
}

/// `clients` clients allocating fixed leases (each its own pods; `run` keeps the pods of
/// several runs apart) until the time is up; what was acknowledged in the measured window
/// after the warm-up.
async fn load(urls: &[String], clients: usize, run: usize) -> Result {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new((Vec::new(), 0usize)));
    let start = Instant::now();
    let measure_from = start + WARM_UP;
    let tasks: Vec<_> = (0..clients)
        .map(|n| {
            let c = rotated_client(urls, n % urls.len(), None);
            let (stop, seen) = (stop.clone(), seen.clone());
            tokio::spawn(async move {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = c.allocate(&fixed_request(run * 10_000 + n, i)).await;
                    let took = t.elapsed();
                    let mut s = seen.lock().await;
                    match r {
                        Ok(_) if t >= measure_from => s.0.push(took),
                        Ok(_) => {}
                        Err(_) => s.1 += 1,
                    }
                    i += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(WARM_UP + MEASURE).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let (latencies, errors) = std::mem::take(&mut *seen.lock().await);
    Result::measured(latencies, errors)
}

/// The rate of the paced runs: the target, offered whatever the answers.
const PACED_RATE: f64 = 5_000.0;

/// Allocations falling due on a fixed schedule, `rate` a second, whatever the answers (as pods
/// arrive in a cluster), sent by `clients` clients as wrk2 does: each takes the next allocation
/// due, waits for its time if it is early, and sends it; when all are busy, the ones falling due
/// wait. Latency counts from the time an allocation was due, not from when a client got round
/// to sending it, so a stall shows in every allocation due meanwhile (no coordinated omission).
/// `allocations` and the rate are those due in the measured window and acknowledged; beside
/// them, the latencies counted from sending, as etcd's `benchmark put --rate` counts its own.
async fn paced(urls: &[String], clients: usize, rate: f64, run: usize) -> (Result, Vec<Duration>) {
    let start = tokio::time::Instant::now();
    let measure_from = start + WARM_UP;
    let total = ((WARM_UP + MEASURE).as_secs_f64() * rate) as usize;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|n| {
            let c = rotated_client(urls, n % urls.len(), None);
            let next = next.clone();
            tokio::spawn(async move {
                let (mut latencies, mut sent, mut errors) = (Vec::new(), Vec::new(), 0usize);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return (latencies, sent, errors);
                    }
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due).await;
                    let t = tokio::time::Instant::now();
                    let r = c.allocate(&fixed_request(run * 10_000 + n, i)).await;
                    match r {
                        Ok(_) if due >= measure_from => {
                            latencies.push(due.elapsed());
                            sent.push(t.elapsed());
                        }
                        Ok(_) => {}
                        Err(_) => errors += 1,
                    }
                }
            })
        })
        .collect();
    let (mut latencies, mut sent, mut errors) = (Vec::new(), Vec::new(), 0);
    for t in tasks {
        let (l, s, e) = t.await.unwrap();
        latencies.extend(l);
        sent.extend(s);
        errors += e;
    }
    sent.sort();
    (Result::measured(latencies, errors), sent)
}

fn print(what: &str, replicas: &str, clients: usize, r: &Result) {
    row(&[
        what.into(),
        replicas.into(),
        format!("{clients}"),
        format!("{:.0}", r.per_second),
        ms(pct(&r.latencies, 0.5)),
        ms(pct(&r.latencies, 0.99)),
        format!("{} ({} errors, retried)", r.allocations, r.errors),
    ]);
}

/// The races the replicas at `urls` lost to each other so far (their
/// `nethouse_ipam_lost_races_total`): on addresses, and on any other key.
fn lost_races(urls: &[String]) -> (u64, u64) {
    let (mut address, mut other) = (0, 0);
    for url in urls {
        let host = url.trim_start_matches("http://");
        let mut conn = std::net::TcpStream::connect(host).unwrap();
        write!(conn, "GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).unwrap();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("nethouse_ipam_lost_races_total{kind=\"") else {
                continue;
            };
            let (kind, n) = rest.split_once("\"} ").unwrap();
            let n: u64 = n.trim().parse().unwrap();
            if kind == "address" {
                address += n;
            } else {
                other += n;
            }
        }
    }
    (address, other)
}

/// `load` on `rt`, and the races the replicas lost to each other meanwhile (warm-up
/// included); their counters are read outside the runtime (plain blocking reads).
fn load_counting_races(
    rt: &tokio::runtime::Runtime,
    urls: &[String],
    clients: usize,
    run: usize,
) -> (Result, (u64, u64)) {
    let before = lost_races(urls);
    let r = rt.block_on(load(urls, clients, run));
    let after = lost_races(urls);
    (r, (after.0 - before.0, after.1 - before.1))
}

/// etcd's `benchmark put` with `clients` clients, at most `rate` puts a second if given:
/// (puts/s, average, 99th percentile). Its latency counts from when a put is sent.
fn etcd_anchor(endpoints: &str, clients: usize, rate: Option<f64>) -> (f64, Duration, Duration) {
    let bin = harness_script::<&str>("build-etcd-benchmark.sh", &[]).unwrap();
    let out = Command::new(bin.trim())
        .arg(format!("--endpoints={endpoints}"))
        .args([
            &format!("--clients={clients}"),
            "--conns=8",
            "put",
            "--total=50000",
        ])
        .args(rate.map(|r| format!("--rate={r:.0}")))
        .args([
            "--key-size=48",
            "--val-size=200",
            "--sequential-keys",
            "--key-space-size=1000000",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // Lines like "  Requests/sec:\t9058.1", "  Average:\t0.0070 secs.", "  99% in 0.0230 secs.".
    let number = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|v| v.trim().trim_end_matches("secs.").trim().parse().ok())
            .unwrap_or_else(|| panic!("benchmark put printed no {prefix:?}: {text}"))
    };
    (
        number("Requests/sec:"),
        Duration::from_secs_f64(number("Average:")),
        Duration::from_secs_f64(number("99% in")),
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    println!("## NetHouse on etcd vs the embedded store\n");
    header(
        &[
            "store",
            "NetHouse replicas",
            "clients",
            "allocations/s",
            "p50",
            "p99",
            "acknowledged in 10 s",
        ]
        .map(String::from),
    );

    let (embedded, embedded_paced) = {
        let mut procs = Killed(Vec::new());
        let data = dir.path().join("embedded");
        let url = serve(
            dir.path(),
            "embedded",
            &["--data-dir".into(), data.display().to_string()],
            &mut procs,
        );
        let urls = [url];
        rt.block_on(add_subnet(&urls));
        (
            rt.block_on(load(&urls, CLIENTS, 0)),
            rt.block_on(paced(&urls, CLIENTS, PACED_RATE, 1)),
        )
    };
    print("embedded (redb)", "1", CLIENTS, &embedded);

    let etcd = EtcdCluster::start_go_gc(3, GO_GC).expect("3-member etcd");
    let mut procs = Killed(Vec::new());
    let tuned = etcd_phase(&rt, dir.path(), &etcd, "replica", &mut procs);
    // Before the sweep adds its keys: the same work as the default-GC cluster's below.
    let tuned_rss = etcd.peak_rss_mib();
    let tuned_label = format!("etcd, 3 members (GOGC={GO_GC})");
    print(&tuned_label, "3", CLIENTS, &tuned.closed);
    anchor_row(CLIENTS, tuned.anchor);
    println!(
        "\nratio etcd/embedded: {:.2}x; NetHouse allocations per etcd put/s: {:.2}",
        tuned.closed.per_second / embedded.per_second,
        tuned.closed.per_second / tuned.anchor.0
    );

    // Rate against tail latency: with clients always waiting, fewer clients mean smaller
    // groups (fewer allocations per etcd round-trip), more mean a longer wait for each.
    println!("\n### etcd, 3 members (GOGC={GO_GC}), 3 replicas: by client count\n");
    header(
        &[
            "clients",
            "allocations/s",
            "p50",
            "p99",
            "etcd's own puts/s",
            "its p99",
            "races lost between replicas: on an address / on another key",
        ]
        .map(String::from),
    );
    let mut points = vec![(CLIENTS, None, tuned.anchor, tuned.races)];
    for (run, clients) in SWEEP.into_iter().enumerate() {
        let (r, races) = load_counting_races(&rt, &tuned.urls, clients, run + 1);
        let anchor = etcd_anchor(&etcd.endpoints(), clients, None);
        points.push((clients, Some(r), anchor, races));
    }
    points.sort_by_key(|p| p.0);
    for (clients, r, (puts, _, put_p99), (on_address, on_other)) in &points {
        let r = r.as_ref().unwrap_or(&tuned.closed);
        row(&[
            format!("{clients}"),
            format!("{:.0}", r.per_second),
            ms(pct(&r.latencies, 0.5)),
            ms(pct(&r.latencies, 0.99)),
            format!("{puts:.0}"),
            ms(*put_p99),
            format!("{on_address} / {on_other}"),
        ]);
    }

    // The target's question — this many allocations a second, at what tail latency — asked
    // directly: allocations falling due at the target rate, latency counted from when each was
    // due. Clients waiting on each other at saturation (above) hide a stall behind at most one
    // allocation per client; here every allocation due during it waits it out.
    println!("\n### {PACED_RATE:.0} allocations/s offered on a schedule, {CLIENTS} clients\n");
    header(
        &[
            "store",
            "NetHouse replicas",
            "allocations/s",
            "p50",
            "p99",
            "p50 from sending",
            "p99 from sending",
            "acknowledged in 10 s",
        ]
        .map(String::from),
    );
    paced_row("embedded (redb)", "1", &embedded_paced);
    paced_row(&tuned_label, "3", &tuned.paced);
    paced_anchor_row(tuned.paced_anchor);

    // The same runs on etcd as Go runs it by default, on a fresh cluster once the tuned one is
    // gone: what the README's GOGC recommendation buys, and what it costs in memory.
    drop(procs);
    drop(etcd);
    let etcd = EtcdCluster::start(3).expect("3-member etcd");
    let mut procs = Killed(Vec::new());
    let plain = etcd_phase(&rt, dir.path(), &etcd, "plain-replica", &mut procs);
    let plain_rss = etcd.peak_rss_mib();
    println!(
        "\n### GOGC={GO_GC} against Go's default (GOGC=100) on etcd's members, {CLIENTS} clients, \
         each on a fresh cluster\n"
    );
    header(
        &[
            "etcd members",
            "allocations/s",
            "p50",
            "p99",
            "etcd's own puts/s",
            "its p99",
            "5,000/s on a schedule: p99 / from sending",
            "etcd's own at that rate: p99",
            "members' peak memory (MiB)",
        ]
        .map(String::from),
    );
    for (what, p, rss) in [
        (format!("GOGC={GO_GC}"), &tuned, tuned_rss),
        ("GOGC=100 (Go's default)".into(), &plain, plain_rss),
    ] {
        row(&[
            what,
            format!("{:.0}", p.closed.per_second),
            ms(pct(&p.closed.latencies, 0.5)),
            ms(pct(&p.closed.latencies, 0.99)),
            format!("{:.0}", p.anchor.0),
            ms(p.anchor.2),
            format!(
                "{} / {}",
                ms(pct(&p.paced.0.latencies, 0.99)),
                ms(pct(&p.paced.1, 0.99))
            ),
            ms(p.paced_anchor.2),
            rss.iter()
                .map(|m| m.map_or("-".into(), |m| m.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
}

/// What one etcd phase measured, on one cluster with its own 3 replicas.
struct Phase {
    urls: Vec<String>,
    /// 64 clients always waiting.
    closed: Result,
    /// The races the replicas lost to each other in it: on an address / on another key.
    races: (u64, u64),
    /// The target's rate on a schedule: from due time, and the latencies from sending.
    paced: (Result, Vec<Duration>),
    /// etcd's own puts with as many clients: (puts/s, average, p99).
    anchor: (f64, Duration, Duration),
    /// etcd's own puts at the target's rate.
    paced_anchor: (f64, Duration, Duration),
}

/// 3 replicas named `{name}{i}` on `etcd`; the 64-client run, then the schedule on the cluster
/// as that run left it (the sweep and etcd's own puts add hundreds of thousands of keys, which
/// slow every later run), then etcd's own puts at that rate and with as many clients.
fn etcd_phase(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    etcd: &EtcdCluster,
    name: &str,
    procs: &mut Killed,
) -> Phase {
    let store = [
        "--store=etcd".to_string(),
        format!("--etcd-endpoints={}", etcd.endpoints()),
    ];
    let urls: Vec<String> = (0..3)
        .map(|i| serve(dir, &format!("{name}{i}"), &store, procs))
        .collect();
    rt.block_on(add_subnet(&urls));
    let (closed, races) = load_counting_races(rt, &urls, CLIENTS, 0);
    let paced = rt.block_on(paced(&urls, CLIENTS, PACED_RATE, 9));
    let paced_anchor = etcd_anchor(&etcd.endpoints(), CLIENTS, Some(PACED_RATE));
    let anchor = etcd_anchor(&etcd.endpoints(), CLIENTS, None);
    Phase {
        urls,
        closed,
        races,
        paced,
        anchor,
        paced_anchor,
    }
}

fn anchor_row(clients: usize, (puts, average, p99): (f64, Duration, Duration)) {
    row(&[
        "etcd's own `benchmark put` (anchor: durable puts)".into(),
        "-".into(),
        format!("{clients}"),
        format!("{puts:.0} puts/s"),
        format!("{} (mean)", ms(average)),
        ms(p99),
        "50000 puts".into(),
    ]);
}

fn paced_row(what: &str, replicas: &str, (r, sent): &(Result, Vec<Duration>)) {
    row(&[
        what.into(),
        replicas.into(),
        format!("{:.0}", r.per_second),
        ms(pct(&r.latencies, 0.5)),
        ms(pct(&r.latencies, 0.99)),
        ms(pct(sent, 0.5)),
        ms(pct(sent, 0.99)),
        format!("{} ({} errors)", r.allocations, r.errors),
    ]);
}

fn paced_anchor_row((put_rate, put_average, put_p99): (f64, Duration, Duration)) {
    row(&[
        format!("etcd's own `benchmark put --rate={PACED_RATE:.0}` ({CLIENTS} clients)"),
        "-".into(),
        format!("{put_rate:.0} puts/s"),
        "-".into(),
        "-".into(),
        format!("{} (mean)", ms(put_average)),
        ms(put_p99),
        "50000 puts".into(),
    ]);
}
