//! `cargo bench -p nethouse --bench service` — prints the table recorded in BENCHMARKS.md.
//!
//! 1. Durable allocate+detach over loopback HTTP against a real `nethouse serve` process, at
//!    1, 16 and 64 concurrent clients: operations/s, allocations/s, p50/p99 latency. Two load
//!    generators: a lean one (pre-encoded requests on keep-alive connections, one thread, as
//!    `wrk` does), so that the client takes little of the cores it shares with the server, and
//!    the `nethouse_api::Client` the other components use, for comparison.
//! 2. Allocation cost at 1% vs 99% fill of a /16 (in-process, memory store).
//! 3. Start-up (spawn -> serving) of `nethouse serve` with 100k and 1M leases after a clean stop
//!    and after kill -9, and its RSS.
//!
//! Set NETHOUSE_BENCH_QUICK=1 for a short smoke run (fewer seconds, 100k leases only).

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nethouse::clock::SystemClock;
use nethouse::ipam::{Ipam, IpamConfig};
use nethouse::model::lease::{ValidAllocate, ValidDetach};
use nethouse::store::embedded::EmbeddedStore;
use nethouse::store::memory::MemoryStore;
use nethouse_api::{
    AllocateRequest, Attachment, Client, ClientConfig, DetachRequest, LeaseKind, Owner, SubnetSpec,
};

// The workspace's one set of table helpers, in the e2e crate (which depends on this one).
#[allow(dead_code)]
#[path = "../../tests/src/bench_table.rs"]
mod table;
use table::{header, ms, pct, row};

// The one way to spawn `nethouse serve`, shared with the integration tests.
#[allow(dead_code)]
#[path = "../tests/common/serve_process.rs"]
mod serve_process;
use serve_process::Serve;

/// `NETHOUSE_BENCH_ONLY=http,fill,startup` runs only the named sections.
fn section(name: &str) -> bool {
    std::env::var("NETHOUSE_BENCH_ONLY").map_or(true, |v| v.split(',').any(|s| s == name))
}

/// Starts of the server per store size in the start-up section, after a clean stop.
const STARTS: usize = 5;
/// Starts after the previous server was killed with SIGKILL.
const CRASH_STARTS: usize = 3;

fn quick() -> bool {
    std::env::var("NETHOUSE_BENCH_QUICK").is_ok_and(|v| v == "1")
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `nethouse serve` without auth on `data`; returns it, its URL and spawn->ready time.
fn serve(data: &Path) -> (Proc, String, Duration) {
    // NETHOUSE_BENCH_SERVER runs another build of the server (e.g. an older commit's) under
    // the same load generators, for an A/B in one period.
    let bin = std::env::var_os("NETHOUSE_BENCH_SERVER")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_nethouse").into());
    let served = Serve::new(bin, data.with_extension("ready"))
        .args([
            "--insecure-no-auth",
            "--listen",
            "127.0.0.1:0",
            "--default-cooldown",
            "0s",
        ])
        .arg("--data-dir")
        .arg(data)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()),
        )
        // A million leases load slowly on a busy machine.
        .within(Duration::from_secs(120))
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        Proc(served.child),
        format!("http://{}", served.addr),
        served.took,
    )
}

/// Stops a server as Kubernetes does (SIGTERM) and waits for it: its store is closed cleanly.
fn stop(mut p: Proc) {
    // SAFETY: kill(2) with a pid we spawned and still own (not yet waited for).
    unsafe {
        libc::kill(p.0.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = p.0.wait();
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`.
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(f.iter().sum::<u64>() as f64 / hz)
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn client(url: &str) -> Client {
    Client::new(ClientConfig::new(url)).unwrap()
}

/// A lease request of client `worker`; `run` keeps the owners of each table row apart.
fn alloc_req(run: usize, worker: usize, i: u64, kind: LeaseKind) -> AllocateRequest {
    let r = if run == 0 {
        String::new()
    } else {
        format!("r{run}-")
    };
    AllocateRequest {
        zone: "z1".into(),
        kind,
        owner: Some(Owner {
            cluster: "bench".into(),
            namespace: "ns".into(),
            pod: format!("{r}p{worker}-{i}"),
        }),
        attachment: Attachment {
            container_id: format!("{r}c{worker}-{i}"),
            ifname: "eth0".into(),
            node: format!("n{}", worker % 8),
        },
    }
}

/// Which client drives the load.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Driver {
    /// Pre-encoded HTTP/1.1 requests on one keep-alive connection per client.
    Lean,
    /// `nethouse_api::Client` (reqwest), one per client.
    ApiClient,
}

impl Driver {
    fn name(self) -> &'static str {
        match self {
            Driver::Lean => "lean HTTP/1.1",
            Driver::ApiClient => "nethouse-api Client",
        }
    }
}

/// One client's connection to the server.
enum Conn {
    /// A keep-alive connection and its read buffer.
    Lean(tokio::net::TcpStream, Vec<u8>),
    Api(Client),
}

impl Conn {
    async fn open(driver: Driver, url: &str) -> Conn {
        match driver {
            Driver::Lean => {
                let addr = url.trim_start_matches("http://");
                let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                s.set_nodelay(true).unwrap();
                Conn::Lean(s, Vec::with_capacity(4096))
            }
            Driver::ApiClient => Conn::Api(client(url)),
        }
    }

    /// The request bytes, encoded before the clock starts: encoding is the client's work.
    fn encode(&self, path: &str, body: &impl serde::Serialize) -> Vec<u8> {
        let Conn::Lean(..) = self else {
            return Vec::new();
        };
        let body = serde_json::to_vec(body).unwrap();
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        req
    }

    async fn allocate(&mut self, req: &AllocateRequest, wire: &[u8]) {
        match self {
            Conn::Lean(s, buf) => lean_exchange(s, buf, wire).await,
            Conn::Api(c) => {
                c.allocate(req).await.expect("allocate");
            }
        }
    }

    async fn detach(&mut self, req: &DetachRequest, wire: &[u8]) {
        match self {
            Conn::Lean(s, buf) => lean_exchange(s, buf, wire).await,
            Conn::Api(c) => {
                c.detach(req).await.expect("detach");
            }
        }
    }
}

/// One pre-encoded request on a keep-alive connection; panics unless the answer is a success.
async fn lean_exchange(conn: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, request: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(request).await.expect("send");
    buf.clear();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).expect("head");
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("content-length");
            if buf.len() >= end + 4 + len {
                assert!(
                    head.starts_with("HTTP/1.1 2"),
                    "{}: {}",
                    String::from_utf8_lossy(request),
                    String::from_utf8_lossy(buf)
                );
                return;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn http_load(
    run: usize,
    url: &str,
    clients: usize,
    secs: f64,
    detach: bool,
    driver: Driver,
) -> (f64, f64, Duration, Duration) {
    let (mut all, elapsed) = match driver {
        // One thread for all the lean clients, as `wrk` runs: the cores are the server's.
        Driver::Lean => {
            let url = url.to_string();
            tokio::task::spawn_blocking(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(drive(run, &url, clients, secs, detach, driver))
            })
            .await
            .unwrap()
        }
        Driver::ApiClient => drive(run, url, clients, secs, detach, driver).await,
    };
    all.sort();
    let ops = all.len() as f64 / elapsed;
    let allocs = if detach { ops / 2.0 } else { ops };
    (ops, allocs, pct(&all, 0.5), pct(&all, 0.99))
}

/// Runs the clients until `secs` have passed: every request's latency, and the wall time.
async fn drive(
    run: usize,
    url: &str,
    clients: usize,
    secs: f64,
    detach: bool,
    driver: Driver,
) -> (Vec<Duration>, f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for w in 0..clients {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(driver, &url).await;
            let mut lat = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let mut req = alloc_req(run, w, i, LeaseKind::Ephemeral);
                if !detach {
                    req.zone = "big".into();
                }
                let det = DetachRequest {
                    container_id: req.attachment.container_id.clone(),
                    ifname: "eth0".into(),
                    owner: None,
                };
                let wire = conn.encode("/v1/leases", &req);
                let t = Instant::now();
                conn.allocate(&req, &wire).await;
                lat.push(t.elapsed());
                i += 1;
                if !detach {
                    continue;
                }
                let wire = conn.encode("/v1/leases/detach", &det);
                let t = Instant::now();
                conn.detach(&det, &wire).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all, started.elapsed().as_secs_f64())
}

async fn fill_cost(fill: f64) -> Duration {
    let store = MemoryStore::new();
    let ipam = Ipam::load(
        store,
        Arc::new(SystemClock),
        IpamConfig {
            default_cooldown_ms: 0,
        },
    )
    .await
    .unwrap();
    ipam.add_subnet(&SubnetSpec {
        zone: "z1".into(),
        cidr: "10.0.0.0/16".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let capacity = 65533usize;
    let prefill = (capacity as f64 * fill) as usize;
    for i in 0..prefill {
        ipam.allocate(
            ValidAllocate::from_request(alloc_req(0, 0, i as u64, LeaseKind::Fixed)).unwrap(),
        )
        .await
        .unwrap();
    }
    // Warm up, then time allocate + release cycles; the subnet stays at `fill`.
    let cycles = if quick() { 5_000 } else { 50_000 };
    let run = |n: usize, base: u64| {
        let ipam = &ipam;
        async move {
            let t = Instant::now();
            for i in 0..n {
                let req = alloc_req(0, 1, base + i as u64, LeaseKind::Ephemeral);
                let cid = req.attachment.container_id.clone();
                ipam.allocate(ValidAllocate::from_request(req).unwrap())
                    .await
                    .unwrap();
                ipam.detach(
                    ValidDetach::from_request(DetachRequest {
                        container_id: cid,
                        ifname: "eth0".into(),
                        owner: None,
                    })
                    .unwrap(),
                )
                .await
                .unwrap();
            }
            t.elapsed()
        }
    };
    run(cycles / 10, 0).await;
    run(cycles, 1 << 40).await / cycles as u32
}

/// Writes `n` fixed leases into a fresh embedded store (in-process, many concurrent callers so
/// group commit keeps it quick).
async fn populate(dir: &Path, n: usize) -> usize {
    let store = EmbeddedStore::open(dir).unwrap();
    let ipam = Arc::new(
        Ipam::load(store, Arc::new(SystemClock), IpamConfig::default())
            .await
            .unwrap(),
    );
    ipam.add_subnet(&SubnetSpec {
        zone: "z1".into(),
        cidr: "10.0.0.0/11".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let workers = 256;
    let per = n.div_ceil(workers);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let ipam = ipam.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let mut req = alloc_req(0, w, i as u64, LeaseKind::Fixed);
                // Realistic names: StatefulSet pods in a few hundred namespaces.
                if let Some(o) = req.owner.as_mut() {
                    o.namespace = format!("team-{}", w % 300);
                    o.pod = format!("kafka-{w}-{i}");
                }
                req.attachment.container_id = format!("{:064x}", (w as u128) << 64 | i as u128);
                ipam.allocate(ValidAllocate::from_request(req).unwrap())
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    per * workers
}

#[tokio::main]
async fn main() {
    let tmp = tempfile::tempdir().unwrap();
    // NETHOUSE_BENCH_DIR keeps the populated stores (and reuses them) for profiling start-up.
    let base = std::env::var_os("NETHOUSE_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let secs = if quick() { 1.0 } else { 5.0 };
    println!(
        "## NetHouse service benchmark ({} cores)\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    if section("http") {
        println!(
            "### Durable allocate + detach over loopback HTTP (real `nethouse serve`, redb, fsync per group commit)\n"
        );
        header(&[
            "load generator".into(),
            "mix".into(),
            "clients".into(),
            "operations/s".into(),
            "allocations/s".into(),
            "p50".into(),
            "p99".into(),
            "server CPU".into(),
            "client CPU".into(),
        ]);
        {
            let (server, url, _) = serve(&tmp.path().join("http"));
            let server_pid = server.0.id().to_string();
            client(&url)
                .add_subnet(&SubnetSpec {
                    zone: "z1".into(),
                    cidr: "10.0.0.0/16".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
            client(&url)
                .add_subnet(&SubnetSpec {
                    zone: "big".into(),
                    cidr: "10.16.0.0/12".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
            let runs = [
                (Driver::Lean, 1, true),
                (Driver::Lean, 16, true),
                (Driver::Lean, 64, true),
                (Driver::Lean, 64, false),
                (Driver::ApiClient, 64, true),
                (Driver::ApiClient, 64, false),
            ];
            for (run, (driver, clients, detach)) in runs.into_iter().enumerate() {
                // Cores each side kept busy: the load generator shares the machine's two.
                let (server_cpu, client_cpu, wall) =
                    (cpu_time(&server_pid), cpu_time("self"), Instant::now());
                let (ops, allocs, p50, p99) =
                    http_load(run, &url, clients, secs, detach, driver).await;
                let wall = wall.elapsed().as_secs_f64();
                let cores = |d: Duration| format!("{:.2}", d.as_secs_f64() / wall);
                let server_cpu = cores(cpu_time(&server_pid).saturating_sub(server_cpu));
                let client_cpu = cores(cpu_time("self").saturating_sub(client_cpu));
                let mode = if detach {
                    "allocate+detach"
                } else {
                    "allocate only"
                };
                row(&[
                    driver.name().to_string(),
                    mode.to_string(),
                    clients.to_string(),
                    format!("{ops:.0}"),
                    format!("{allocs:.0}"),
                    ms(p50),
                    ms(p99),
                    server_cpu,
                    client_cpu,
                ]);
            }
        }
    }
    if section("fill") {
        println!("\n### Allocation cost vs fill of a /16 (allocate + release, in-process)\n");
        let low = fill_cost(0.01).await;
        let high = fill_cost(0.99).await;
        header(&["fill".into(), "per allocate+release".into()]);
        row(&["1%".into(), format!("{:.2} µs", low.as_secs_f64() * 1e6)]);
        row(&["99%".into(), format!("{:.2} µs", high.as_secs_f64() * 1e6)]);
        row(&[
            "ratio 99%/1%".into(),
            format!("{:.2}×", high.as_secs_f64() / low.as_secs_f64()),
        ]);
    }
    if section("startup") {
        println!("\n### Start-up of `nethouse serve` (spawn -> serving) and RSS\n");
        header(&[
            "leases".into(),
            "populate".into(),
            "start-up (median)".into(),
            "min .. max".into(),
            "after kill -9 (median)".into(),
            "RSS".into(),
        ]);
        let sizes: &[usize] = if quick() {
            &[100_000]
        } else {
            &[100_000, 1_000_000]
        };
        for &n in sizes {
            let dir = base.join(format!("startup-{n}"));
            let t = Instant::now();
            let populated = if dir.join("nethouse.redb").exists() {
                n.div_ceil(256) * 256
            } else {
                populate(&dir, n).await
            };
            let populate = t.elapsed();
            // Start-up time on a shared VM swings with how fast the kernel hands out fresh
            // pages; report the median of several starts and the spread. A normal restart
            // follows a clean stop (SIGTERM); after kill -9 redb first repairs its file.
            let mut times = Vec::new();
            let mut rss = 0.0;
            for _ in 0..STARTS {
                let (p, url, startup) = serve(&dir);
                rss = rss_mib(p.0.id());
                let zones = client(&url).zones().await.unwrap();
                // A /11 minus network, gateway and broadcast, minus what was populated.
                assert_eq!(zones[0].free_v4, Some(2_097_149 - populated as u128));
                times.push(startup);
                stop(p);
            }
            let mut crashed = Vec::new();
            for _ in 0..CRASH_STARTS {
                drop(serve(&dir).0); // SIGKILL: the store is left open
                let (p, url, startup) = serve(&dir);
                let zones = client(&url).zones().await.unwrap();
                assert_eq!(zones[0].free_v4, Some(2_097_149 - populated as u128));
                crashed.push(startup);
                stop(p);
            }
            crashed.sort();
            times.sort();
            row(&[
                n.to_string(),
                format!("{:.1} s", populate.as_secs_f64()),
                ms(times[times.len() / 2]),
                format!("{} .. {}", ms(times[0]), ms(times[times.len() - 1])),
                ms(crashed[crashed.len() / 2]),
                format!("{rss:.0} MiB"),
            ]);
        }
    }
}
