//! `cargo bench -p nethouse-e2e --bench etcd` — NetHouse's allocation throughput and latency on
//! its two stores, in one run on one machine: the embedded store (one `nethouse serve`, redb,
//! an fsync per group commit) and a real 3-member etcd (Debian's etcd-server on loopback) with
//! 3 `nethouse serve --store etcd` replicas, the same 64 clients allocating fixed leases through
//! all of them (each client starts at another replica). The anchor: etcd's own load generator
//! (`benchmark put`, built by tests/harness/build-etcd-benchmark.sh) with the same client count
//! on the same cluster — the durable puts/s this etcd can take at all. Then the same on etcd at
//! other client counts, each beside etcd's own puts at that count: where rate and tail latency
//! meet. Build NetHouse first: `cargo build --release -p nethouse`.

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
    let (mut latencies, errors) = std::mem::take(&mut *seen.lock().await);
    latencies.sort();
    Result {
        allocations: latencies.len(),
        per_second: latencies.len() as f64 / MEASURE.as_secs_f64(),
        latencies,
        errors,
    }
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

/// etcd's `benchmark put` with `clients` clients: (puts/s, average, 99th percentile).
fn etcd_anchor(endpoints: &str, clients: usize) -> (f64, Duration, Duration) {
    let bin = harness_script::<&str>("build-etcd-benchmark.sh", &[]).unwrap();
    let out = Command::new(bin.trim())
        .arg(format!("--endpoints={endpoints}"))
        .args([
            &format!("--clients={clients}"),
            "--conns=8",
            "put",
            "--total=50000",
        ])
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

    let embedded = {
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
        rt.block_on(load(&urls, CLIENTS, 0))
    };
    print("embedded (redb)", "1", CLIENTS, &embedded);

    let etcd = EtcdCluster::start(3).expect("3-member etcd");
    let mut procs = Killed(Vec::new());
    let store = [
        "--store=etcd".to_string(),
        format!("--etcd-endpoints={}", etcd.endpoints()),
    ];
    let urls: Vec<String> = (0..3)
        .map(|i| serve(dir.path(), &format!("replica{i}"), &store, &mut procs))
        .collect();
    rt.block_on(add_subnet(&urls));
    let on_etcd = rt.block_on(load(&urls, CLIENTS, 0));
    print("etcd, 3 members", "3", CLIENTS, &on_etcd);
    let (puts, average, p99) = etcd_anchor(&etcd.endpoints(), CLIENTS);
    row(&[
        "etcd's own `benchmark put` (anchor: durable puts)".into(),
        "-".into(),
        format!("{CLIENTS}"),
        format!("{puts:.0} puts/s"),
        format!("{} (mean)", ms(average)),
        ms(p99),
        "50000 puts".into(),
    ]);
    println!(
        "\nratio etcd/embedded: {:.2}x; NetHouse allocations per etcd put/s: {:.2}",
        on_etcd.per_second / embedded.per_second,
        on_etcd.per_second / puts
    );

    // Rate against tail latency: with clients always waiting, fewer clients mean smaller
    // groups (fewer allocations per etcd round-trip), more mean a longer wait for each.
    println!("\n### etcd, 3 members, 3 replicas: by client count\n");
    header(
        &[
            "clients",
            "allocations/s",
            "p50",
            "p99",
            "etcd's own puts/s",
            "its p99",
        ]
        .map(String::from),
    );
    let mut points: Vec<(usize, Result, (f64, Duration, Duration))> =
        vec![(CLIENTS, on_etcd, (puts, average, p99))];
    for (run, clients) in SWEEP.into_iter().enumerate() {
        let r = rt.block_on(load(&urls, clients, run + 1));
        points.push((clients, r, etcd_anchor(&etcd.endpoints(), clients)));
    }
    points.sort_by_key(|p| p.0);
    for (clients, r, (puts, _, put_p99)) in &points {
        row(&[
            format!("{clients}"),
            format!("{:.0}", r.per_second),
            ms(pct(&r.latencies, 0.5)),
            ms(pct(&r.latencies, 0.99)),
            format!("{puts:.0}"),
            ms(*put_p99),
        ]);
    }
}
