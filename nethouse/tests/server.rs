//! The server as a process: health endpoints and metrics, graceful shutdown, TLS, and how a
//! start that fails is reported.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, subnet};
use nethouse_api::{AllocateRequest, Attachment, Client, ClientConfig, LeaseKind, Owner};

fn alloc(pod: &str) -> AllocateRequest {
    AllocateRequest {
        zone: "z1".into(),
        kind: LeaseKind::Fixed,
        owner: Some(Owner {
            cluster: "k".into(),
            namespace: "ns".into(),
            pod: pod.into(),
        }),
        attachment: Attachment {
            container_id: format!("c-{pod}"),
            ifname: "eth0".into(),
            node: "n1".into(),
        },
    }
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let http = reqwest::Client::new();
    for (path, want) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let r = http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains(want));
    }
    server
        .ctrl()
        .add_subnet(&subnet("z1", "10.50.0.0/24"))
        .await
        .unwrap();
    server.node().allocate(&alloc("a")).await.unwrap();
    let _ = server.node().allocate(&alloc("a")).await.unwrap();
    let text = http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"nethouse_subnet_capacity_addresses{subnet="10.50.0.0-24",zone="z1"} 253"#,
        r#"nethouse_subnet_attached_leases{subnet="10.50.0.0-24",zone="z1"} 1"#,
        r#"nethouse_subnet_free_addresses{subnet="10.50.0.0-24",zone="z1"} 252"#,
        r#"nethouse_operations_total{op="allocate",result="ok"} 2"#,
        r#"nethouse_operation_duration_seconds_count{op="allocate"} 2"#,
        "nethouse_mutations_in_flight 0",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    // The subnet and the first allocation were committed one after the other: at least two
    // commits, each carrying one state change.
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("missing {name} in\n{text}"))
    };
    let commits = value("nethouse_store_commit_duration_seconds_count");
    assert!(commits >= 2.0, "{commits} commits");
    assert!(value("nethouse_store_commit_duration_seconds_sum") > 0.0);
    assert_eq!(
        value("nethouse_store_transactions_per_commit_count"),
        commits
    );
    assert_eq!(value("nethouse_store_transactions_per_commit_sum"), commits);
}

#[tokio::test]
async fn sigterm_turns_readyz_red_while_still_serving_then_closes() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--shutdown-delay", "1500ms"]);
    server
        .ctrl()
        .add_subnet(&subnet("z1", "10.61.0.0/24"))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let readyz = format!("{}/readyz", server.url);
    assert_eq!(http.get(&readyz).send().await.unwrap().status(), 200);
    let started = std::time::Instant::now();
    server.signal_term();
    // The Service's endpoints learn it from /readyz while the server still answers.
    loop {
        let r = http.get(&readyz).send().await.unwrap();
        if r.status() == 503 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "still ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        http.get(format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.node().allocate(&alloc("late-0")).await.unwrap();
    let status = server.wait();
    assert!(status.success(), "{status}: {}", server.log_text());
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "the listener stayed open for --shutdown-delay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_keeps_every_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    server
        .ctrl()
        .add_subnet(&subnet("z1", "10.60.0.0/16"))
        .await
        .unwrap();
    let acked: Arc<Mutex<HashMap<String, std::net::IpAddr>>> = Default::default();
    let workers: Vec<_> = (0..32)
        .map(|w| {
            let node = server.node();
            let acked = acked.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let pod = format!("w{w}-{i}");
                    match node.allocate(&alloc(&pod)).await {
                        Ok(r) => {
                            acked.lock().unwrap().insert(pod, r.lease.ips[0].ip);
                        }
                        // After shutdown starts: refused connections, never a broken answer.
                        Err(e) => return e,
                    }
                }
                unreachable!()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = server.terminate();
    assert!(
        status.success(),
        "exit status {status}: {}",
        server.log_text()
    );
    for w in workers {
        let e = w.await.unwrap();
        assert!(
            e.is_transient(),
            "a request failed other than by the server going away: {e}"
        );
    }
    assert!(
        server.log_text().contains("stopped"),
        "{}",
        server.log_text()
    );
    let server = Server::start(dir.path(), &[]);
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "load too light: {}", acked.len());
    let node = server.node();
    for (pod, ip) in &acked {
        let l = node
            .lease_by_owner(&Owner {
                cluster: "k".into(),
                namespace: "ns".into(),
                pod: pod.clone(),
            })
            .await
            .unwrap();
        assert_eq!(l.ips[0].ip, *ip);
    }
}

#[tokio::test]
async fn serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (server, ca) = common::start_tls(dir.path());
    let mut cfg = ClientConfig::new(server.url.clone());
    cfg.token = Some(common::CTRL_TOKEN.into());
    cfg.ca_pem = Some(std::fs::read(&ca).unwrap());
    let client = Client::new(cfg).unwrap();
    client.ready().await.unwrap();
    client
        .add_subnet(&subnet("z1", "10.70.0.0/24"))
        .await
        .unwrap();
    // Without trusting the CA the connection is refused.
    let mut untrusted = ClientConfig::new(server.url.clone());
    untrusted.token = Some(common::CTRL_TOKEN.into());
    assert!(
        Client::new(untrusted)
            .unwrap()
            .list_subnets()
            .await
            .is_err()
    );
}

/// Slow and idle clients (a probe held 200 trickling and 1,100 idle connections open for good,
/// and /healthz timed out for everyone): heads trickling in are cut off at the header timeout
/// while others are served; connections past the limit are closed at once; once the timeout
/// has passed every slot is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off_and_others_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--http-header-timeout",
            "1s",
            "--http-max-connections",
            "40",
        ],
    );
    server
        .ctrl()
        .add_subnet(&subnet("z1", "10.62.0.0/24"))
        .await
        .unwrap();
    let addr = server.url.trim_start_matches("http://").to_string();
    let healthz = format!("{}/healthz", server.url);

    // 20 clients trickle a header line every 300 ms, below the connection limit.
    let trickling: Vec<_> = (0..20)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
                let start = std::time::Instant::now();
                let _ = c.write_all(b"GET /healthz HTTP/1.1\r\n").await;
                for i in 0..40 {
                    if c.write_all(format!("x-{i}: y\r\n").as_bytes())
                        .await
                        .is_err()
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                let mut rest = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(15), c.read_to_end(&mut rest)).await;
                start.elapsed()
            })
        })
        .collect();
    // Everyone else is served meanwhile, on fresh connections.
    for _ in 0..10 {
        let fresh = reqwest::Client::new();
        assert_eq!(fresh.get(&healthz).send().await.unwrap().status(), 200);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    for t in trickling {
        let held = t.await.unwrap();
        assert!(
            held < Duration::from_secs(4),
            "a trickling head held {held:?}"
        );
    }

    // 100 idle connections: past the limit they are closed at once.
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let metrics = || async {
        reqwest::get(format!("{}/metrics", server.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // After the header timeout the idle ones are gone and everyone is served again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let text = metrics().await;
    let refused: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("nethouse_http_connections_refused_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    assert!(refused >= 60.0, "{text}");
    let mut closed = 0;
    for c in &mut idle {
        let mut b = [0u8; 1];
        if matches!(
            tokio::time::timeout(Duration::from_millis(200), c.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        ) {
            closed += 1;
        }
    }
    assert_eq!(closed, 100, "every idle connection was closed");
    let fresh = reqwest::Client::new();
    assert_eq!(fresh.get(&healthz).send().await.unwrap().status(), 200);
    server.node().allocate(&alloc("after-0")).await.unwrap();
}

#[test]
fn a_server_that_exits_before_it_is_ready_is_reported_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_nethouse");
    let err = common::serve_process::Serve::new(bin, dir.path().join("ready"))
        .args(["--insecure-no-auth", "--listen", "nowhere", "--data-dir"])
        .arg(dir.path().join("data"))
        .log(dir.path().join("log"))
        .spawn()
        .map(|mut s| s.child.kill())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("nethouse serve exited with exit status: "),
        "{err}"
    );
    assert!(err.contains("--listen"), "the log is quoted: {err}");
}
