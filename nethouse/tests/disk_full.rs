//! A full disk under allocation load (issue 11). The data directory is a small tmpfs and a filler
//! file takes the rest of it, so the store's commits fail with ENOSPC. Those calls must be
//! answered with a transient 503 and `/readyz` must name the cause; once the filler is deleted,
//! NetHouse must re-open its store by itself: allocations succeed again with no manual step,
//! every acknowledged lease is there with its addresses, no lease exists that was not
//! acknowledged, and the process never exited. Needs root (it mounts a tmpfs).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, subnet};
use nethouse_api::{
    AllocateRequest, Attachment, Client, ClientError, LeaseFilter, LeaseKind, Owner, codes,
};

const WORKERS: usize = 6;
const NAMESPACE: &str = "disk-full";
/// Far more allocations than the tmpfs can take once the filler is in place.
const MAX_ATTEMPTS: usize = 100_000;

/// A tmpfs mounted for the test; unmounted on drop, also when the test panics.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -t tmpfs {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a server that still has its store open must not keep the mount behind.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn require_root() {
    let out = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "this test mounts a tmpfs and needs root"
    );
}

/// Writes `path` until the file system is full; returns the bytes it took.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 64 << 10];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    written
}

fn request(pod: &str) -> AllocateRequest {
    AllocateRequest {
        zone: "z1".into(),
        kind: LeaseKind::Fixed,
        owner: Some(Owner {
            cluster: "k".into(),
            namespace: NAMESPACE.into(),
            pod: pod.into(),
        }),
        attachment: Attachment {
            container_id: format!("c-{pod}"),
            ifname: "eth0".into(),
            node: "n1".into(),
        },
    }
}

/// The addresses of an acknowledged allocation, sorted.
fn ips_of(resp: &nethouse_api::AllocateResponse) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = resp.lease.ips.iter().map(|i| i.ip).collect();
    ips.sort();
    ips
}

/// What the disk being full may answer: a transient 503 `unavailable`, never anything else.
fn assert_transient(pod: &str, e: &ClientError) {
    match e {
        ClientError::Api { status, error } => {
            assert!(
                e.is_transient() && status.as_u16() == 503 && error.code == codes::UNAVAILABLE,
                "{pod}: a full disk must be a transient 503 unavailable, got {e}"
            );
        }
        other => panic!("{pod}: no answer from the server ({other}); it must answer at once"),
    }
}

#[derive(Default)]
struct Outcomes {
    acked: BTreeMap<String, Vec<IpAddr>>,
    /// Refused while the disk was full; each was answered, so none may exist.
    failed: Vec<String>,
}

/// Allocates new pods until the disk refuses, then a few more (they must fail fast too).
async fn until_refused(client: Client, worker: usize, stop_at: Instant) -> Outcomes {
    let mut out = Outcomes::default();
    for i in 0..MAX_ATTEMPTS / WORKERS {
        let pod = format!("w{worker}-full-{i}");
        match client.allocate(&request(&pod)).await {
            Ok(resp) => {
                out.acked.insert(pod, ips_of(&resp));
            }
            Err(e) => {
                assert_transient(&pod, &e);
                out.failed.push(pod);
                if out.failed.len() >= 5 {
                    break;
                }
            }
        }
        if Instant::now() > stop_at {
            break;
        }
    }
    out
}

/// Allocates `pods`; each is retried (as the CNI runtime retries error 11) until `deadline`.
async fn allocate_retrying(
    client: &Client,
    pods: &[String],
    deadline: Instant,
) -> BTreeMap<String, Vec<IpAddr>> {
    let mut acked = BTreeMap::new();
    for pod in pods {
        loop {
            match client.allocate(&request(pod)).await {
                Ok(resp) => {
                    acked.insert(pod.clone(), ips_of(&resp));
                    break;
                }
                Err(e) => {
                    assert_transient(pod, &e);
                    assert!(
                        Instant::now() < deadline,
                        "{pod} still refused after the disk had room again: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    acked
}

async fn get(http: &reqwest::Client, url: String) -> (u16, String) {
    let resp = http.get(&url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// The value of the first sample of `metrics` whose name and labels start with `prefix`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Every lease of the test's namespace: pod -> sorted addresses; no address held twice.
async fn stored(ctrl: &Client) -> BTreeMap<String, Vec<IpAddr>> {
    let leases = ctrl
        .list_all_leases(&LeaseFilter {
            namespace: Some(NAMESPACE.into()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut seen = HashSet::new();
    let mut held = BTreeMap::new();
    for l in leases {
        let mut ips: Vec<IpAddr> = l.ips.iter().map(|i| i.ip).collect();
        for ip in &ips {
            assert!(seen.insert(*ip), "{ip} is held twice");
        }
        ips.sort();
        held.insert(l.owner.expect("a fixed lease has an owner").pod, ips);
    }
    held
}

/// Whether `pid` is still running (not gone, not a zombie waiting for us).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|rest| rest.trim().to_string()))
        .is_some_and(|rest| !rest.starts_with('Z'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_survived_without_a_restart() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Declared before the server, so the server is killed before the unmount.
    let _tmpfs = Tmpfs::mount(&data, "8m");
    let server = Server::start(dir.path(), &[]);
    let pid = server.pid();
    let (node, ctrl) = (server.node(), server.ctrl());
    let http = reqwest::Client::new();
    ctrl.add_subnet(&subnet("z1", "10.20.0.0/16"))
        .await
        .unwrap();

    let mut acked = BTreeMap::new();
    let before: Vec<String> = (0..50).map(|i| format!("before-{i}")).collect();
    acked.extend(allocate_retrying(&node, &before, Instant::now()).await);

    let filler = data.join("filler");
    let took = fill(&filler);
    println!("filler took {} KiB", took >> 10);
    let stop_at = Instant::now() + Duration::from_secs(120);
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(until_refused(node.clone(), w, stop_at)))
        .collect();
    let mut failed = Vec::new();
    for w in workers {
        let out = w.await.unwrap();
        acked.extend(out.acked);
        failed.extend(out.failed);
    }
    println!(
        "{} allocations acknowledged, {} refused",
        acked.len(),
        failed.len()
    );
    assert!(
        failed.len() >= WORKERS,
        "the disk never refused a commit: every worker must have been refused"
    );

    // While the disk is full the store cannot come back: every change is refused at once,
    // transient, and /readyz names the cause. Still live: a full disk alone must not get the
    // pod restarted while it may still recover in place.
    let outage = Instant::now() + Duration::from_secs(2);
    let mut i = 0;
    while Instant::now() < outage {
        let pod = format!("during-{i}");
        i += 1;
        let asked = Instant::now();
        let e = node.allocate(&request(&pod)).await.unwrap_err();
        assert_transient(&pod, &e);
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "refused after {:?}: a full disk must be refused at once",
            asked.elapsed()
        );
        failed.push(pod);
        let (status, body) = get(&http, format!("{}/readyz", server.url)).await;
        assert_eq!(status, 503, "/readyz while the disk is full: {body}");
        assert!(
            body.contains("No space left on device"),
            "/readyz must name the cause: {body}"
        );
        let (status, body) = get(&http, format!("{}/healthz", server.url)).await;
        assert_eq!(status, 200, "/healthz within the recovery bound: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, metrics) = get(&http, format!("{}/metrics", server.url)).await;
    assert_eq!(
        sample(&metrics, "nethouse_store_healthy "),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "nethouse_store_failures_total{kind=\"no_space\"}")
            .is_some_and(|n| n >= 2.0),
        "the failed commit and the failed attempts to re-open count: {metrics}"
    );

    std::fs::remove_file(&filler).unwrap();
    // No manual step: the server notices by itself that the disk has room again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(&http, format!("{}/readyz", server.url)).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {status} 30 s after the disk had room again: {body}\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What was acknowledged is there; what was refused is not.
    assert_eq!(stored(&ctrl).await, acked, "leases after the recovery");

    // The refused calls succeed when tried again, and new ones at the first attempt.
    acked.extend(allocate_retrying(&node, &failed, deadline).await);
    let after: Vec<String> = (0..50).map(|i| format!("after-{i}")).collect();
    for pod in &after {
        let resp = node
            .allocate(&request(pod))
            .await
            .unwrap_or_else(|e| panic!("{pod} after the recovery: {e}"));
        acked.insert(pod.clone(), ips_of(&resp));
    }
    assert_eq!(stored(&ctrl).await, acked, "leases at the end");

    let (status, body) = get(&http, format!("{}/healthz", server.url)).await;
    assert_eq!(status, 200, "/healthz after the recovery: {body}");
    let (_, metrics) = get(&http, format!("{}/metrics", server.url)).await;
    assert_eq!(
        sample(&metrics, "nethouse_store_healthy "),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "nethouse_store_reopens_total ").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    let log = server.log_text();
    assert!(
        log.contains("No space left on device"),
        "the log must name the cause:\n{log}"
    );
    assert!(
        log.contains("re-opened"),
        "the log must tell the recovery:\n{log}"
    );
    assert!(alive(pid), "the server process exited");
}
