//! The blocking client (what nethouse-cni uses) against a real `nethouse serve`: plain and TLS,
//! tokens, several servers tried in order, and a deadline that holds against a server that
//! accepts and never answers.

mod common;

use std::time::{Duration, Instant};

use common::{CTRL_TOKEN, NODE_TOKEN, Server, subnet};
use nethouse_api::{
    AllocateRequest, Attachment, BlockingClient, ClientConfig, ClientError, DetachRequest,
    LeaseKind, codes,
};

fn allocate_request(cid: &str) -> AllocateRequest {
    AllocateRequest {
        zone: "z1".into(),
        kind: LeaseKind::Ephemeral,
        owner: None,
        attachment: Attachment {
            container_id: cid.into(),
            ifname: "eth0".into(),
            node: "n1".into(),
        },
    }
}

fn config(urls: &[&str], token: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new(String::new());
    cfg.urls = urls.iter().map(|u| u.to_string()).collect();
    cfg.token = Some(token.into());
    cfg
}

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

async fn add_zone(server: &Server, cidr: &str) {
    server.ctrl().add_subnet(&subnet("z1", cidr)).await.unwrap();
}

#[tokio::test]
async fn lease_life_cycle_over_tls_with_the_operators_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (server, ca) = common::start_tls(dir.path());
    let mut ctrl = ClientConfig::new(server.url.clone());
    ctrl.token = Some(CTRL_TOKEN.into());
    ctrl.ca_pem = Some(std::fs::read(&ca).unwrap());
    nethouse_api::Client::new(ctrl)
        .unwrap()
        .add_subnet(&subnet("z1", "10.71.0.0/24"))
        .await
        .unwrap();

    // The async client honours the same pinning.
    let mut pinned = ClientConfig::new(server.url.replace("127.0.0.1", "nethouse.test"));
    pinned.ca_pem = Some(std::fs::read(&ca).unwrap());
    pinned.hosts = vec![("nethouse.test".into(), "127.0.0.1".parse().unwrap())];
    nethouse_api::Client::new(pinned)
        .unwrap()
        .ready()
        .await
        .unwrap();

    let url = server.url.clone();
    let ca_pem = std::fs::read(&ca).unwrap();
    let ca_path = ca.clone();
    tokio::task::spawn_blocking(move || {
        let mut cfg = config(&[&url], NODE_TOKEN);
        cfg.ca_pem = Some(ca_pem);
        let client = BlockingClient::new(cfg).unwrap();
        client.ready().unwrap();
        let got = client.allocate(&allocate_request("tls1")).unwrap();
        let ip = got.lease.ips[0].ip;
        let lease = client.lease_by_ip(ip).unwrap();
        assert_eq!(lease.attachment.unwrap().container_id, "tls1");
        client
            .detach(&DetachRequest {
                container_id: "tls1".into(),
                ifname: "eth0".into(),
                owner: None,
            })
            .unwrap();
        let gone = client.lease_by_ip(ip).unwrap_err();
        assert_eq!(gone.api_code(), Some(codes::NOT_FOUND), "{gone}");

        // A name the resolver does not know, pinned to the address: connects there, and TLS
        // verifies the name (the certificate has it), as the CNI plugin does on a node with
        // `ipam.hosts` for an in-cluster Service name.
        let port = url.rsplit(':').next().unwrap();
        let mut pinned = config(&[&format!("https://nethouse.test:{port}")], NODE_TOKEN);
        pinned.ca_pem = Some(std::fs::read(&ca_path).unwrap());
        pinned.hosts = vec![("nethouse.test".into(), "127.0.0.1".parse().unwrap())];
        BlockingClient::new(pinned.clone())
            .unwrap()
            .ready()
            .unwrap();
        // Pinned to an address whose certificate does not name it: refused.
        pinned.urls = vec![format!("https://other.test:{port}")];
        pinned.hosts = vec![("other.test".into(), "127.0.0.1".parse().unwrap())];
        let e = BlockingClient::new(pinned).unwrap().ready().unwrap_err();
        assert!(e.to_string().contains("certificate"), "{e}");

        // The platform's roots do not include the operator's CA: refused, as unreachable.
        let untrusted = BlockingClient::new(config(&[&url], NODE_TOKEN)).unwrap();
        let e = untrusted.ready().unwrap_err();
        assert!(
            matches!(e, ClientError::Unreachable { .. }) && e.to_string().contains("certificate"),
            "{e}"
        );
        // A bundle with no certificate is a configuration error, reported before any I/O.
        let mut bad = config(&[&url], NODE_TOKEN);
        bad.ca_pem = Some(b"not a certificate".to_vec());
        let e = BlockingClient::new(bad).unwrap_err();
        assert!(matches!(e, ClientError::Config { .. }), "{e}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn tokens_and_roles_are_answered_as_api_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    add_zone(&server, "10.72.0.0/24").await;
    let url = server.url.clone();
    tokio::task::spawn_blocking(move || {
        let wrong = BlockingClient::new(config(&[&url], "no-such-token")).unwrap();
        let e = wrong.allocate(&allocate_request("t1")).unwrap_err();
        assert_eq!(e.status().map(|s| s.as_u16()), Some(401), "{e}");
        assert!(!e.is_transient());
        // The controller role may not allocate: 403, final.
        let ctrl = BlockingClient::new(config(&[&url], CTRL_TOKEN)).unwrap();
        let e = ctrl.allocate(&allocate_request("t1")).unwrap_err();
        assert_eq!(e.status().map(|s| s.as_u16()), Some(403), "{e}");
        // A refusal names its reason: an unknown zone.
        let node = BlockingClient::new(config(&[&url], NODE_TOKEN)).unwrap();
        let mut req = allocate_request("t1");
        req.zone = "nowhere".into();
        let e = node.allocate(&req).unwrap_err();
        assert_eq!(e.status().map(|s| s.as_u16()), Some(404), "{e}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn servers_are_tried_in_order_until_one_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    add_zone(&server, "10.73.0.0/24").await;
    let (dead, url) = (closed_port_url(), server.url.clone());
    tokio::task::spawn_blocking(move || {
        let client = BlockingClient::new(config(&[&dead, &url], NODE_TOKEN)).unwrap();
        let got = client.allocate(&allocate_request("o1")).unwrap();
        assert_eq!(got.lease.attachment.unwrap().container_id, "o1");

        let all_dead = BlockingClient::new(config(&[&dead, &dead], NODE_TOKEN)).unwrap();
        let e = all_dead.ready().unwrap_err();
        assert!(e.is_transient(), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("unreachable") && text.matches("Connection refused").count() == 2,
            "{text}"
        );
    })
    .await
    .unwrap();
}

#[test]
fn a_server_that_never_answers_is_given_up_at_the_deadline() {
    // Accepts the connection (the kernel does) and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut cfg = config(&[&url], NODE_TOKEN);
    cfg.timeout = Duration::from_secs(30);
    let start = Instant::now();
    let client = BlockingClient::new(cfg)
        .unwrap()
        .with_deadline(start + Duration::from_millis(400));
    let e = client.ready().unwrap_err();
    let took = start.elapsed();
    assert!(
        e.is_transient() && e.to_string().contains("timed out"),
        "{e}"
    );
    assert!(took < Duration::from_secs(3), "gave up after {took:?}");
    // Each request also has its own timeout, without a deadline.
    let mut cfg = config(&[&url], NODE_TOKEN);
    cfg.timeout = Duration::from_millis(300);
    let start = Instant::now();
    let e = BlockingClient::new(cfg).unwrap().ready().unwrap_err();
    assert!(e.to_string().contains("timed out"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(3));
    drop(listener);
}
