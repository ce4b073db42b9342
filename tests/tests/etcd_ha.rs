//! NetHouse on a real 3-member etcd cluster (Debian's etcd-server, loopback ports) with 3
//! `nethouse serve --store etcd` replicas, under the load of 64 clients allocating through all
//! of them (each client's server list starts at another replica). In the middle of the load:
//! one replica SIGKILLed (and started again, as its Deployment would); one etcd follower
//! SIGKILLed, then the leader, each started again on its data; the leader frozen with SIGSTOP
//! for 10 s. After each: no duplicate address, no acknowledged allocation lost, every client
//! served again within 5 s, and every running replica's view caught up with the last
//! acknowledged write within 3 s. Each fault is checked to have hit what it names (the leader
//! is the leader, a new one is elected). The counts, the rate in a quiet phase and through the
//! faults, and etcd round-trips per allocation are printed (`--nocapture`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nethouse_api::{Client, LeaseFilter, SubnetSpec};
use nethouse_e2e::alloc_load::{fixed_request, rotated_client};
use nethouse_e2e::binaries::release_bin;
use nethouse_e2e::etcd_cluster::EtcdCluster;
use nethouse_e2e::ports::free_port;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

#[allow(dead_code)]
#[path = "../../nethouse/tests/common/serve_process.rs"]
mod serve_process;
use serve_process::Serve;

const REPLICAS: usize = 3;
const CLIENTS: usize = 64;
/// Every client must be served again within this after each fault.
const BACK_WITHIN: Duration = Duration::from_secs(5);
/// Every running replica's view must be complete up to the last acknowledged write within this
/// (its watch follows etcd within milliseconds; a watch on a member that stopped answering must
/// be noticed and moved within seconds).
const VIEW_WITHIN: Duration = Duration::from_secs(3);
/// Load between faults.
const SETTLE: Duration = Duration::from_secs(4);
const FREEZE: Duration = Duration::from_secs(10);
/// Room for every allocation of the run (2^20 addresses; a release build with group commit
/// filled 2^18 once), checked at the end: a full subnet would turn the load into refusals.
const CIDR: &str = "10.64.0.0/12";

struct Replica {
    port: u16,
    child: Option<std::process::Child>,
}

struct Replicas {
    list: Vec<Replica>,
    endpoints: String,
    dir: std::path::PathBuf,
}

impl Replicas {
    fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let served = Serve::new(
            release_bin("nethouse")?,
            self.dir.join(format!("replica{i}.addr")),
        )
        .args(["--insecure-no-auth", "--store", "etcd"])
        .arg(format!("--etcd-endpoints={}", self.endpoints))
        .arg(format!("--listen=127.0.0.1:{}", self.list[i].port))
        .log(self.dir.join(format!("replica{i}.log")))
        .within(Duration::from_secs(30))
        .spawn()?;
        self.list[i].child = Some(served.child);
        Ok(())
    }

    /// SIGKILL; the PID it had, once it is gone.
    fn kill(&mut self, i: usize) -> Option<u32> {
        let mut c = self.list[i].child.take()?;
        let pid = c.id();
        let _ = c.kill();
        let _ = c.wait();
        Some(pid)
    }

    fn urls(&self) -> Vec<String> {
        self.list
            .iter()
            .map(|r| format!("http://127.0.0.1:{}", r.port))
            .collect()
    }

    fn running(&self) -> Vec<usize> {
        (0..self.list.len())
            .filter(|&i| self.list[i].child.is_some())
            .collect()
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for i in 0..self.list.len() {
            self.kill(i);
        }
    }
}

/// What the clients saw: every acknowledged allocation, each client's success times, errors.
#[derive(Default)]
struct Seen {
    acked: HashMap<String, std::net::IpAddr>,
    successes: Vec<Vec<Instant>>,
    errors: BTreeMap<String, usize>,
}

/// Each call may take this long: under the 5 s every client must be served again within.
const CALL_TIMEOUT: Duration = Duration::from_secs(4);

fn client(urls: &[String], first: usize) -> Client {
    rotated_client(urls, first, Some(CALL_TIMEOUT))
}

/// Allocates until `stop`; a failed call is tried again with the same request (idempotent), so
/// an allocation whose answer was lost is acknowledged by the retry.
async fn load(client_no: usize, c: Client, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let req = fixed_request(client_no, i);
        match c.allocate(&req).await {
            Ok(resp) => {
                let mut s = seen.lock().await;
                s.acked
                    .insert(format!("p{client_no}-{i}"), resp.lease.ips[0].ip);
                s.successes[client_no].push(Instant::now());
                i += 1;
            }
            Err(e) => {
                let kind = match e.api_code() {
                    Some(code) => code.to_string(),
                    None if e.is_transient() => "unreachable".to_string(),
                    None => format!("{e}"),
                };
                *seen.lock().await.errors.entry(kind).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The longest any client went without a successful allocation from `at` until now: from `at`
/// to its first success after it, between two successes, or from its last one until now.
async fn longest_gap(seen: &Mutex<Seen>, at: Instant) -> Duration {
    let now = Instant::now();
    let s = seen.lock().await;
    s.successes
        .iter()
        .map(|times| {
            let mut last = at;
            let mut worst = Duration::ZERO;
            for &t in times.iter().filter(|t| **t > at) {
                worst = worst.max(t - last);
                last = t;
            }
            worst.max(now - last)
        })
        .max()
        .unwrap_or(Duration::ZERO)
}

/// `GET /metrics` of the replica on `port` (HTTP/1.0: the answer ends with the connection).
async fn metrics(port: u16) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: nethouse\r\n\r\n")
        .await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await??;
    Ok(out)
}

/// The value of the sample `name` (with its labels, as exposed) in a metrics text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

const OPS: [&str; 5] = ["txn", "get", "range", "watch", "probe"];

/// etcd round-trips by operation (count and seconds) and the allocations' time in the replicas
/// (count and seconds), summed over the replicas on `ports`.
async fn timings(ports: &[u16]) -> BTreeMap<String, f64> {
    let mut names = Vec::new();
    for op in OPS {
        for part in ["count", "sum"] {
            names.push(format!(
                "nethouse_etcd_request_duration_seconds_{part}{{op=\"{op}\"}}"
            ));
        }
    }
    for part in ["count", "sum"] {
        names.push(format!(
            "nethouse_operation_duration_seconds_{part}{{op=\"allocate\"}}"
        ));
    }
    let mut out = BTreeMap::new();
    for &port in ports {
        let Ok(text) = metrics(port).await else {
            continue;
        };
        for name in &names {
            *out.entry(name.clone()).or_default() += sample(&text, name).unwrap_or(0.0);
        }
        // The histograms' buckets, as `{histogram} le={bound}`.
        for l in text.lines() {
            for (histogram, op) in [
                ("nethouse_etcd_request_duration_seconds", "txn"),
                ("nethouse_operation_duration_seconds", "allocate"),
            ] {
                let Some(rest) = l
                    .strip_prefix(histogram)
                    .and_then(|r| r.strip_prefix("_bucket{"))
                else {
                    continue;
                };
                let (labels, value) = rest.split_once("} ").unwrap_or_default();
                let le = labels.split(',').find_map(|kv| kv.strip_prefix("le=\""));
                if labels.contains(&format!("op=\"{op}\""))
                    && let (Some(le), Ok(v)) = (le, value.parse::<f64>())
                {
                    *out.entry(format!(
                        "{histogram}{{{op}}} le={}",
                        le.trim_end_matches('"')
                    ))
                    .or_default() += v;
                }
            }
        }
    }
    out
}

/// The bucket bound at or below which 99% of the observations between two [`timings`] fell.
fn p99(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, histogram: &str) -> String {
    let prefix = format!("{histogram} le=");
    let mut buckets: Vec<(f64, f64)> = after
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix(&prefix)?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, v - before.get(k).copied().unwrap_or(0.0)))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    match buckets.iter().find(|b| b.1 >= 0.99 * total) {
        Some((bound, _)) if bound.is_finite() => format!("<= {:.0} ms", bound * 1000.0),
        _ => "beyond the last bucket".into(),
    }
}

/// Between two [`timings`] over `n` allocations: round-trips per allocation by operation, the
/// mean round-trip of a commit, the mean allocation inside a replica.
fn per_allocation(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    n: usize,
) -> String {
    let d = |name: String| {
        after.get(&name).copied().unwrap_or(0.0) - before.get(&name).copied().unwrap_or(0.0)
    };
    let etcd = |op: &str, part: &str| {
        d(format!(
            "nethouse_etcd_request_duration_seconds_{part}{{op=\"{op}\"}}"
        ))
    };
    let per: Vec<String> = OPS
        .iter()
        .map(|op| format!("{op} {:.3}", etcd(op, "count") / n.max(1) as f64))
        .collect();
    let alloc = |part: &str| {
        d(format!(
            "nethouse_operation_duration_seconds_{part}{{op=\"allocate\"}}"
        ))
    };
    format!(
        "etcd round-trips per allocation: {}; a commit's round-trip {:.1} ms on average (p99 {}), an allocation inside a replica {:.1} ms (p99 {})",
        per.join(", "),
        1000.0 * etcd("txn", "sum") / etcd("txn", "count").max(1.0),
        p99(before, after, "nethouse_etcd_request_duration_seconds{txn}"),
        1000.0 * alloc("sum") / alloc("count").max(1.0),
        p99(
            before,
            after,
            "nethouse_operation_duration_seconds{allocate}"
        ),
    )
}

/// API calls the replicas on `ports` answered with an error, summed (a client then asks the next
/// replica, so these do not show as client errors).
async fn error_answers(ports: &[u16]) -> f64 {
    let mut n = 0.0;
    for &port in ports {
        let Ok(text) = metrics(port).await else {
            continue;
        };
        n += text
            .lines()
            .filter(|l| l.starts_with("nethouse_operations_total{") && !l.contains("result=\"ok\""))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>();
    }
    n
}

/// Waits until the view of the replica on `port` is complete up to `revision`; how long it took.
async fn view_reaches(port: u16, revision: u64) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let mut at = None;
    while t.elapsed() < VIEW_WITHIN {
        at = metrics(port)
            .await
            .ok()
            .and_then(|m| sample(&m, "nethouse_store_watched_revision"));
        if at.is_some_and(|r| r >= revision as f64) {
            return Ok(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("its view is at revision {at:?}, not {revision}, {VIEW_WITHIN:?} after the write")
}

/// Through each running replica's view, once it caught up with the last acknowledged write: no
/// address leased twice and every acknowledged allocation present with its address.
async fn check_views(
    replicas: &Replicas,
    etcd: &EtcdCluster,
    seen: &Mutex<Seen>,
) -> anyhow::Result<String> {
    // Acknowledged before the revision is read: the load goes on meanwhile.
    let acked = seen.lock().await.acked.clone();
    let revision = tokio::task::block_in_place(|| etcd.revision())?;
    let urls = replicas.urls();
    let mut leases = 0;
    let mut lags = Vec::new();
    for r in replicas.running() {
        let lag = view_reaches(replicas.list[r].port, revision)
            .await
            .map_err(|e| e.context(format!("replica {r}")))?;
        lags.push(format!("{r}: {:.2} s", lag.as_secs_f64()));
        let listed = client(&urls[r..=r], 0)
            .list_all_leases(&LeaseFilter::default())
            .await?;
        leases = leases.max(listed.len());
        let mut by_ip = HashMap::new();
        let mut by_pod = HashMap::new();
        for l in &listed {
            for ip in &l.ips {
                if let Some(other) = by_ip.insert(ip.ip, l.owner.clone()) {
                    anyhow::bail!(
                        "replica {r}'s view: {} leased twice: {other:?} and {:?}",
                        ip.ip,
                        l.owner
                    );
                }
            }
            if let (Some(o), Some(ip)) = (&l.owner, l.ips.first()) {
                by_pod.insert(o.pod.clone(), ip.ip);
            }
        }
        for (pod, ip) in &acked {
            anyhow::ensure!(
                by_pod.get(pod) == Some(ip),
                "replica {r}'s view (at revision {revision} or later): acknowledged {pod} = {ip} is {:?}",
                by_pod.get(pod)
            );
        }
    }
    Ok(format!(
        "{leases} leases, {} acknowledged, none lost, no duplicate in any view (each caught up with revision {revision} within: {})",
        acked.len(),
        lags.join(", ")
    ))
}

#[derive(Default)]
struct Report {
    lines: Vec<String>,
    failed: Vec<String>,
}

impl Report {
    fn fault(
        &mut self,
        what: String,
        gap: Duration,
        errors: String,
        check: anyhow::Result<String>,
    ) {
        let served = format!(
            "every client served again within {:.2} s (the longest any went without an allocation from the fault on)",
            gap.as_secs_f64()
        );
        let line = format!(
            "{what}: {served}; {}; {errors}",
            match &check {
                Ok(s) => s.clone(),
                Err(e) => format!("BROKEN: {e:#}"),
            }
        );
        if gap > BACK_WITHIN || check.is_err() {
            self.failed.push(line.clone());
        }
        self.lines.push(line);
    }
}

/// What failed so far: client errors by kind, and error answers of the replicas.
struct Errors {
    client: BTreeMap<String, usize>,
    answers: f64,
}

async fn errors(seen: &Mutex<Seen>, ports: &[u16]) -> Errors {
    Errors {
        client: seen.lock().await.errors.clone(),
        answers: error_answers(ports).await,
    }
}

/// What failed since `before`.
async fn errors_since(seen: &Mutex<Seen>, ports: &[u16], before: &Errors) -> String {
    let now = errors(seen, ports).await;
    let client: BTreeMap<&String, usize> = now
        .client
        .iter()
        .map(|(k, v)| (k, v - before.client.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    // A replica killed and started again counts from zero: at least this many.
    let answers = (now.answers - before.answers).max(0.0);
    format!(
        "client errors (then retried) {client:?}, {answers:.0} error answers of replicas (the client then asked the next)"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_three_etcd_members_keep_every_ip_unique_through_faults() {
    let mut etcd = EtcdCluster::start(3).expect("3-member etcd");
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Replicas {
        list: (0..REPLICAS)
            .map(|_| Replica {
                port: free_port().unwrap(),
                child: None,
            })
            .collect(),
        endpoints: etcd.endpoints(),
        dir: dir.path().to_path_buf(),
    };
    for i in 0..REPLICAS {
        replicas.start(i).expect("nethouse serve --store etcd");
    }
    let urls = replicas.urls();
    let ports: Vec<u16> = replicas.list.iter().map(|r| r.port).collect();
    client(&urls, 0)
        .add_subnet(
            &serde_json::from_value::<SubnetSpec>(serde_json::json!({"zone": "z1", "cidr": CIDR}))
                .unwrap(),
        )
        .await
        .unwrap();

    let seen = Arc::new(Mutex::new(Seen {
        successes: vec![Vec::new(); CLIENTS],
        ..Seen::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|n| {
            tokio::spawn(load(
                n,
                client(&urls, n % REPLICAS),
                seen.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let mut report = Report::default();
    let acked = || async { seen.lock().await.acked.len() };

    // A quiet phase first (after a second of warm-up): the rate without faults, and what one
    // allocation costs in etcd round-trips.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (q0, n0, rt0) = (Instant::now(), acked().await, timings(&ports).await);
    tokio::time::sleep(SETTLE).await;
    let (n1, rt1) = (acked().await, timings(&ports).await);
    let quiet = q0.elapsed();
    report.lines.push(format!(
        "quiet (no fault): {} allocations in {:.1} s ({:.0}/s); {}",
        n1 - n0,
        quiet.as_secs_f64(),
        (n1 - n0) as f64 / quiet.as_secs_f64(),
        per_allocation(&rt0, &rt1, n1 - n0)
    ));
    let (faults_from, n_faults_from) = (Instant::now(), acked().await);

    let e0 = errors(&seen, &ports).await;
    let at = Instant::now();
    let pid = replicas.kill(1).expect("replica 1 runs");
    tokio::time::sleep(SETTLE).await;
    report.fault(
        format!("replica 1 (pid {pid}) SIGKILLed"),
        longest_gap(&seen, at).await,
        errors_since(&seen, &ports, &e0).await,
        check_views(&replicas, &etcd, &seen).await,
    );
    replicas.start(1).unwrap();

    tokio::time::sleep(SETTLE).await;
    let leader = tokio::task::block_in_place(|| etcd.leader()).unwrap();
    let follower = (leader + 1) % 3;
    let e0 = errors(&seen, &ports).await;
    let at = Instant::now();
    let pid = etcd.kill(follower).expect("the follower runs");
    tokio::time::sleep(SETTLE).await;
    report.fault(
        format!("etcd follower m{follower} (pid {pid}; leader m{leader}) SIGKILLed"),
        longest_gap(&seen, at).await,
        errors_since(&seen, &ports, &e0).await,
        check_views(&replicas, &etcd, &seen).await,
    );
    etcd.restart(follower).unwrap();

    tokio::time::sleep(SETTLE).await;
    let leader = tokio::task::block_in_place(|| etcd.wait_leader(Duration::from_secs(10))).unwrap();
    let e0 = errors(&seen, &ports).await;
    let at = Instant::now();
    let pid = etcd.kill(leader).expect("the leader runs");
    let elected =
        tokio::task::block_in_place(|| etcd.wait_leader(Duration::from_secs(10))).unwrap();
    let election = at.elapsed();
    assert_ne!(elected, leader, "a new leader after the kill");
    tokio::time::sleep(SETTLE.saturating_sub(election)).await;
    report.fault(
        format!(
            "etcd leader m{leader} (pid {pid}) SIGKILLed, m{elected} leader {:.2} s later",
            election.as_secs_f64()
        ),
        longest_gap(&seen, at).await,
        errors_since(&seen, &ports, &e0).await,
        check_views(&replicas, &etcd, &seen).await,
    );
    etcd.restart(leader).unwrap();

    tokio::time::sleep(SETTLE).await;
    let frozen = tokio::task::block_in_place(|| etcd.wait_leader(Duration::from_secs(10))).unwrap();
    let e0 = errors(&seen, &ports).await;
    let at = Instant::now();
    etcd.freeze(frozen, true).unwrap();
    let elected = tokio::task::block_in_place(|| etcd.wait_leader(FREEZE)).unwrap();
    let election = at.elapsed();
    assert_ne!(elected, frozen, "a new leader while the old one is frozen");
    tokio::time::sleep(FREEZE.saturating_sub(election)).await;
    // Checked while it is still frozen: a replica whose watch was on it must have moved.
    report.fault(
        format!(
            "etcd leader m{frozen} SIGSTOPped for {FREEZE:?}, m{elected} leader {:.2} s later (checked before SIGCONT)",
            election.as_secs_f64()
        ),
        longest_gap(&seen, at).await,
        errors_since(&seen, &ports, &e0).await,
        check_views(&replicas, &etcd, &seen).await,
    );
    let e0 = errors(&seen, &ports).await;
    let at = Instant::now();
    etcd.freeze(frozen, false).unwrap();
    tokio::time::sleep(SETTLE).await;
    report.fault(
        format!("etcd m{frozen} SIGCONTed (rejoins as a follower)"),
        longest_gap(&seen, at).await,
        errors_since(&seen, &ports, &e0).await,
        check_views(&replicas, &etcd, &seen).await,
    );

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = t0.elapsed();
    let through_faults = faults_from.elapsed();
    let end = check_views(&replicas, &etcd, &seen).await;
    {
        let s = seen.lock().await;
        report.lines.push(format!(
            "{} allocations acknowledged in {:.1} s; through the faults {:.0}/s ({} in {:.1} s); errors seen by clients (then retried): {:?}",
            s.acked.len(),
            elapsed.as_secs_f64(),
            (s.acked.len() - n_faults_from) as f64 / through_faults.as_secs_f64(),
            s.acked.len() - n_faults_from,
            through_faults.as_secs_f64(),
            s.errors
        ));
    }
    if let Some(n) = seen
        .lock()
        .await
        .errors
        .get(nethouse_api::codes::ZONE_EXHAUSTED)
    {
        report.failed.push(format!(
            "{n} allocations found {CIDR} full: the test's subnet is too small for its load"
        ));
    }
    match end {
        Ok(s) => report.lines.push(format!("at the end: {s}")),
        Err(e) => report.failed.push(format!("at the end: {e:#}")),
    }
    for l in &report.lines {
        println!("{l}");
    }
    if !report.failed.is_empty() {
        etcd.keep_logs();
        let kept = dir.keep();
        panic!("{:#?}\nreplica logs in {}", report.failed, kept.display());
    }
}
