//! The extender binary as a process: it stops the way Kubernetes stops a pod (on SIGTERM
//! `/readyz` turns 503 while connections are still taken, then the listener closes, a request
//! already in flight is answered, and the process exits 0), and slow or idle clients cannot
//! hold it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.get(9..12)?.parse().ok()?;
    Some((status, text.split("\r\n\r\n").nth(1)?.to_string()))
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The extender binary on a free loopback port with `extra` flags; no API server and no
/// NetHouse answer (serving and stopping need neither). Returns the process and its address.
fn spawn(dir: &std::path::Path, extra: &[&str]) -> (std::process::Child, String) {
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n\
         users: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_nethouse-scheduler-extender"))
        .args(["--listen", &addr, "--nethouse", "http://127.0.0.1:9"])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("/healthz", Duration::from_secs(20), || {
        get(&addr, "/healthz").is_some_and(|(s, _)| s == 200)
    });
    (child, addr)
}

#[test]
fn sigterm_turns_readyz_red_then_finishes_in_flight_requests_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn(
        dir.path(),
        &["--shutdown-delay", "1500ms", "--shutdown-grace", "10s"],
    );
    // Before the stop, /readyz waits for the caches (there is no API server to list from).
    assert_eq!(
        get(&addr, "/readyz"),
        Some((503, "caches not synced yet".into()))
    );

    // A filter call whose body is half sent when the signal comes.
    let body = r#"{"Pod":{"metadata":{"name":"web-1","namespace":"web"}},"NodeNames":["n1"]}"#;
    let (head, tail) = body.split_at(20);
    let mut slow = TcpStream::connect(&addr).unwrap();
    write!(
        slow,
        "POST /filter HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{head}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let stopped_at = Instant::now();
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());

    wait_until(
        "/readyz to say shutting down",
        Duration::from_secs(1),
        || get(&addr, "/readyz") == Some((503, "shutting down".into())),
    );
    assert_eq!(child.try_wait().unwrap(), None, "still running, draining");
    wait_until("the listener to close", Duration::from_secs(5), || {
        TcpStream::connect(&addr).is_err()
    });
    assert!(
        stopped_at.elapsed() >= Duration::from_millis(1400),
        "the listener stays open for --shutdown-delay"
    );

    slow.write_all(tail.as_bytes()).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""NodeNames":["n1"]"#), "{answer}");

    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn slow_and_idle_clients_are_cut_off_and_others_served() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn(
        dir.path(),
        &[
            "--http-header-timeout",
            "1s",
            "--http-max-connections",
            "20",
        ],
    );
    // 10 heads trickling in, a line every 300 ms: cut off at the header timeout, while fresh
    // connections are served meanwhile.
    let trickling: Vec<_> = (0..10)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(&addr).unwrap();
                let start = Instant::now();
                let _ = c.write_all(b"POST /filter HTTP/1.1\r\n");
                for i in 0..40 {
                    if write!(c, "x-{i}: y\r\n").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
                start.elapsed()
            })
        })
        .collect();
    for _ in 0..10 {
        assert_eq!(get(&addr, "/healthz").map(|(s, _)| s), Some(200));
        std::thread::sleep(Duration::from_millis(150));
    }
    for t in trickling {
        let held = t.join().unwrap();
        assert!(
            held < Duration::from_secs(4),
            "a trickling head held {held:?}"
        );
    }
    // 60 connections that never speak: past the limit closed at once, the rest at the
    // header timeout; then everyone is served again.
    let idle: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut b = [0u8; 1];
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
    }
    assert_eq!(get(&addr, "/healthz").map(|(s, _)| s), Some(200));
    let (_, metrics) = get(&addr, "/metrics").unwrap();
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("nethouse_extender_http_connections_refused_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    assert!(refused >= 40.0, "{metrics}");
    let _ = child.kill();
    let _ = child.wait();
}

/// A Node as the scheduler sends it with `nodeCacheCapable: false`: labels, conditions,
/// addresses, node info and the image list the kubelet reports (up to 50 images) — about 13 KB.
fn realistic_node(i: usize) -> String {
    let images: Vec<String> = (0..50)
        .map(|k| {
            format!(
                r#"{{"names":["registry.example.com/team-{k}/service-{k}@sha256:{h:064x}","registry.example.com/team-{k}/service-{k}:v1.{k}.{i}"],"sizeBytes":{s}}}"#,
                h = (i * 50 + k) as u128 * 0x9e37_79b9_7f4a_7c15,
                s = 10_000_000 + k * 1000
            )
        })
        .collect();
    let conditions: Vec<String> = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready", "NetworkUnavailable"]
        .iter()
        .map(|t| format!(r#"{{"type":"{t}","status":"False","lastHeartbeatTime":"2026-11-30T05:00:00Z","lastTransitionTime":"2026-11-01T05:00:00Z","reason":"Kubelet{t}","message":"kubelet reports {t} as expected on this node"}}"#))
        .collect();
    format!(
        r#"{{"metadata":{{"name":"node-{i:05}","uid":"{i:08x}-1111-2222-3333-444455556666","resourceVersion":"{i}","labels":{{"kubernetes.io/hostname":"node-{i:05}","kubernetes.io/os":"linux","kubernetes.io/arch":"amd64","node.kubernetes.io/instance-type":"m5.2xlarge","topology.kubernetes.io/zone":"dc1-row{r}","topology.kubernetes.io/region":"dc1","nethouse.io/network-zone":"z{r}"}},"annotations":{{"node.alpha.kubernetes.io/ttl":"0","volumes.kubernetes.io/controller-managed-attach-detach":"true"}}}},"spec":{{"podCIDR":"10.{a}.{b}.0/24","providerID":"baremetal://dc1/node-{i:05}"}},"status":{{"capacity":{{"cpu":"8","memory":"32827220Ki","pods":"110","ephemeral-storage":"203056560Ki"}},"allocatable":{{"cpu":"7910m","memory":"31676244Ki","pods":"110","ephemeral-storage":"187136816276"}},"conditions":[{c}],"addresses":[{{"type":"InternalIP","address":"10.{a}.{b}.10"}},{{"type":"Hostname","address":"node-{i:05}"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":10250}}}},"nodeInfo":{{"machineID":"{i:032x}","systemUUID":"{i:032x}","bootID":"{i:032x}","kernelVersion":"6.1.0-28-amd64","osImage":"Debian GNU/Linux 12 (bookworm)","containerRuntimeVersion":"containerd://1.7.24","kubeletVersion":"v1.35.8","kubeProxyVersion":"","operatingSystem":"linux","architecture":"amd64"}},"images":[{img}]}}}}"#,
        r = i % 4,
        a = i / 250,
        b = i % 250,
        c = conditions.join(","),
        img = images.join(","),
    )
}

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        / 1024
}

/// Eight concurrent filter calls carrying 5,000 full Nodes each, for a fixed pod (every Node is
/// read and the kept ones copied into the answer): all answered, and the process's peak memory
/// stays well under the 1 Gi the manifests give it (a probe took it to 1.47 GB without a bound).
#[test]
fn eight_calls_with_five_thousand_full_nodes_stay_under_the_memory_limit() {
    let nodes: Vec<String> = (0..5000).map(realistic_node).collect();
    let per_node = nodes.iter().map(String::len).sum::<usize>() / nodes.len();
    assert!(
        per_node > 11_000,
        "a realistic Node is ~13 KB, this one {per_node}"
    );
    let body = std::sync::Arc::new(format!(
        r#"{{"Pod":{{"metadata":{{"name":"redis-0","namespace":"db","annotations":{{"nethouse.io/fixed-ip":"true"}}}}}},"Nodes":{{"items":[{}]}}}}"#,
        nodes.join(",")
    ));
    drop(nodes);
    assert!(body.len() < nethouse_scheduler_extender::server::DEFAULT_MAX_BODY);
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn(dir.path(), &[]);
    let before = peak_rss_mib(child.id());
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (addr, body) = (addr.clone(), body.clone());
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(&addr).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                write!(
                    c,
                    "POST /filter HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                )
                .unwrap();
                c.write_all(body.as_bytes()).unwrap();
                let mut answer = Vec::new();
                c.read_to_end(&mut answer).unwrap();
                answer
            })
        })
        .collect();
    // The health endpoints do not wait behind the calls.
    assert_eq!(get(&addr, "/healthz").map(|(s, _)| s), Some(200));
    for call in calls {
        let answer = call.join().unwrap();
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer[..200.min(answer.len())])
        );
        assert!(answer.len() > body.len() / 2, "the kept Nodes come back");
    }
    let peak = peak_rss_mib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    eprintln!(
        "extender peak RSS: {before} MiB idle, {peak} MiB after 8 calls of {} MB",
        body.len() >> 20
    );
    // Two calls are decided at a time (--max-concurrent-requests): ~350 MiB here; all eight at
    // once took ~720 MiB, and with bodies at --max-body-bytes past the 1 Gi limit.
    assert!(peak < 512, "peak RSS {peak} MiB");
}
