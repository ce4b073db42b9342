//! Issue 11, defect 5: one node's credential must not act on another node's attachments. With
//! `node:<node-name>` tokens, node A's token on node B's attachments is a 403 naming both nodes
//! for allocate, detach and gc, and nothing changes; node A's own calls work, and so does the
//! re-attach of a fixed pod's lease that is attached on node B (its old, dead node). A real
//! `nethouse serve` process.

mod common;

use common::{NODE_A_TOKEN, NODE_B_TOKEN, NODE_TOKEN, Server, subnet};
use nethouse_api::{
    AllocateRequest, Attachment, AttachmentRef, DetachRequest, GcRequest, Lease, LeaseKind, Owner,
};
use serde_json::Value;

fn owner(pod: &str) -> Owner {
    Owner {
        cluster: "k".into(),
        namespace: "db".into(),
        pod: pod.into(),
    }
}

fn alloc(kind: LeaseKind, pod: Option<&str>, cid: &str, node: &str) -> AllocateRequest {
    AllocateRequest {
        zone: "z1".into(),
        kind,
        owner: pod.map(owner),
        attachment: Attachment {
            container_id: cid.into(),
            ifname: "eth0".into(),
            node: node.into(),
        },
    }
}

fn detach(cid: &str, pod: Option<&str>) -> DetachRequest {
    DetachRequest {
        container_id: cid.into(),
        ifname: "eth0".into(),
        owner: pod.map(owner),
    }
}

fn gc(node: &str) -> GcRequest {
    GcRequest {
        node: node.into(),
        valid_attachments: Vec::new(),
    }
}

fn to_json<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).expect("request types serialize")
}

async fn leases(server: &Server) -> Vec<Lease> {
    server
        .ctrl()
        .list_all_leases(&Default::default())
        .await
        .unwrap()
}

/// POSTs `body` with node A's token; expects a 403 whose message names both nodes.
async fn refused(server: &Server, path: &str, body: Value, field: &str) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", server.url))
        .bearer_auth(NODE_A_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let got: Value = resp.json().await.unwrap();
    assert_eq!(status, 403, "{path} {body}: {got}");
    let err = &got["error"];
    assert_eq!(err["code"], "forbidden", "{got}");
    assert_eq!(err["field"], field, "{got}");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(r#"bound to node "node-a""#) && message.contains(r#"on node "node-b""#),
        "{path}: {message}"
    );
}

#[tokio::test]
async fn a_node_credential_acts_only_on_its_own_nodes_attachments() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server
        .ctrl()
        .add_subnet(&subnet("z1", "10.20.0.0/24"))
        .await
        .unwrap();
    let a = server.client(NODE_A_TOKEN);
    let b = server.client(NODE_B_TOKEN);

    // Node B's pods: a fixed one and an ordinary one.
    let redis = b
        .allocate(&alloc(LeaseKind::Fixed, Some("redis-0"), "cb0", "node-b"))
        .await
        .unwrap();
    b.allocate(&alloc(LeaseKind::Ephemeral, None, "cb1", "node-b"))
        .await
        .unwrap();
    let before = leases(&server).await;
    assert_eq!(before.len(), 2);

    // Node A's token on node B's attachments: refused, and nothing changed.
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/v1/leases",
            to_json(&alloc(LeaseKind::Fixed, Some("web-0"), "ca9", "node-b")),
            "attachment.node",
        ),
        (
            "/v1/leases",
            to_json(&alloc(LeaseKind::Ephemeral, None, "cb1", "node-b")),
            "attachment.node",
        ),
        // Node B's ephemeral lease asked for as node A's own: not taken over.
        (
            "/v1/leases",
            to_json(&alloc(LeaseKind::Ephemeral, None, "cb1", "node-a")),
            "attachment.container_id",
        ),
        (
            "/v1/leases/detach",
            to_json(&detach("cb0", Some("redis-0"))),
            "container_id",
        ),
        (
            "/v1/leases/detach",
            to_json(&detach("cb1", None)),
            "container_id",
        ),
        ("/v1/gc", to_json(&gc("node-b")), "node"),
        (
            "/v1/gc",
            to_json(&GcRequest {
                node: "node-b".into(),
                valid_attachments: vec![AttachmentRef {
                    container_id: "cb0".into(),
                    ifname: "eth0".into(),
                }],
            }),
            "node",
        ),
    ];
    for (path, body, field) in cases {
        refused(&server, path, body.clone(), field).await;
        assert_eq!(
            leases(&server).await,
            before,
            "{path} {body} changed leases"
        );
    }

    // Node A's own calls work: allocate, gc of its node, detach.
    let mine = a
        .allocate(&alloc(LeaseKind::Ephemeral, None, "ca1", "node-a"))
        .await
        .unwrap();
    assert_eq!(mine.lease.attachment.unwrap().node, "node-a");
    let swept = a.gc(&gc("node-a")).await.unwrap();
    assert_eq!((swept.detached, swept.released), (0, 1), "{swept:?}");
    a.allocate(&alloc(LeaseKind::Ephemeral, None, "ca2", "node-a"))
        .await
        .unwrap();
    assert_eq!(
        a.detach(&detach("ca2", None)).await.unwrap().outcome,
        "released"
    );
    assert_eq!(
        leases(&server).await,
        before,
        "node A's own leases are gone"
    );

    // The re-attach rule: node B died; redis-0 comes back on node A and gets the same address,
    // its lease moving from node B's attachment to node A's.
    let back = a
        .allocate(&alloc(LeaseKind::Fixed, Some("redis-0"), "ca0", "node-a"))
        .await
        .unwrap();
    assert_eq!(back.lease.ips, redis.lease.ips);
    let now_on = back.lease.attachment.clone().unwrap();
    assert_eq!(
        (now_on.node.as_str(), now_on.container_id.as_str()),
        ("node-a", "ca0")
    );
    // Node B's late DEL of its old sandbox no longer names the lease's attachment: allowed, and
    // a no-op. Node A may now detach its own.
    assert_eq!(
        b.detach(&detach("cb0", Some("redis-0")))
            .await
            .unwrap()
            .outcome,
        "not_attached_here"
    );
    assert_eq!(
        a.detach(&detach("ca0", Some("redis-0")))
            .await
            .unwrap()
            .outcome,
        "detached"
    );

    // The unbound `node` token still acts for every node (existing installs keep working).
    let shared = server.client(NODE_TOKEN);
    let swept = shared.gc(&gc("node-b")).await.unwrap();
    assert_eq!((swept.detached, swept.released), (0, 1), "{swept:?}");
    assert!(
        server.log_text().contains("unbound `node` tokens"),
        "the start-up warning:\n{}",
        server.log_text()
    );
}

/// `--node-token-review` needs a Kubernetes client; without one the server does not start, and
/// says which flag to fix.
#[test]
fn node_token_review_without_a_kubeconfig_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth");
    std::fs::write(&auth, "controller controller-token-0123456789\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nethouse"))
        .args(["serve", "--listen", "127.0.0.1:0", "--node-token-review"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--auth-file")
        .arg(&auth)
        .args(["--kubeconfig", "/nonexistent/kubeconfig"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--node-token-review: --kubeconfig /nonexistent/kubeconfig: "),
        "{stderr}"
    );
}
