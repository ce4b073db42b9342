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
