//! `POST /v1/refusals` on a real `nethouse serve` process: a node's CNI plugin reports an ADD it
//! refused because no pod annotations reached it. NetHouse counts it in
//! `nethouse_cni_refused_total{reason="pod_annotations_missing"}` and creates no lease; the
//! node-credential rules of allocate hold (a bound token reports only for its own node), and a
//! bad report is a 400 naming the field that counts nothing.

mod common;

use common::{CTRL_TOKEN, NODE_A_TOKEN, Server, subnet};
use nethouse_api::{Attachment, Owner, RefusalReason, RefusalRecorded, RefusalReport};
use serde_json::{Value, json};

const REFUSED: &str = r#"nethouse_cni_refused_total{reason="pod_annotations_missing"}"#;
const OPS_OK: &str = r#"nethouse_operations_total{op="refusal",result="ok"}"#;

fn report(node: &str) -> RefusalReport {
    RefusalReport {
        reason: RefusalReason::PodAnnotationsMissing,
        zone: "z1".into(),
        owner: Owner {
            cluster: "k".into(),
            namespace: "db".into(),
            pod: "redis-0".into(),
        },
        attachment: Attachment {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            node: node.into(),
        },
    }
}

/// A report refused: (what, token, body, status, error code, error field).
type Refused<'a> = (
    &'a str,
    Option<&'a str>,
    Value,
    u16,
    &'a str,
    Option<&'a str>,
);

/// POSTs `body` with `token` (none: no header); returns the status and the JSON answer.
async fn post(server: &Server, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/v1/refusals", server.url))
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn a_refused_add_is_counted_and_creates_no_lease() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server
        .ctrl()
        .add_subnet(&subnet("z1", "10.21.0.0/24"))
        .await
        .unwrap();
    // The series is there before the first refusal, so that alerts on its rate see it.
    assert_eq!(server.metric(REFUSED).await, Some(0.0));

    // Node A reports its own refusal: counted, and logged with pod, node and the fix.
    let recorded: RefusalRecorded = server
        .client(NODE_A_TOKEN)
        .report_refusal(&report("node-a"))
        .await
        .unwrap();
    assert_eq!(recorded.reason, RefusalReason::PodAnnotationsMissing);
    assert_eq!(server.metric(REFUSED).await, Some(1.0));
    assert_eq!(server.metric(OPS_OK).await, Some(1.0));
    let log = server.log_text();
    assert!(
        log.contains("refused an ADD")
            && log.contains("k/db/redis-0")
            && log.contains("io.kubernetes.cri.pod-annotations"),
        "{log}"
    );

    // Refused reports: count nothing.
    let bad_reason = {
        let mut b = serde_json::to_value(report("node-a")).unwrap();
        b["reason"] = json!("bored");
        b
    };
    let bad_pod = {
        let mut b = serde_json::to_value(report("node-a")).unwrap();
        b["owner"]["pod"] = json!("a/b");
        b
    };
    let a_on_b = serde_json::to_value(report("node-b")).unwrap();
    let good = serde_json::to_value(report("node-a")).unwrap();
    #[rustfmt::skip]
    let cases: Vec<Refused> = vec![
        ("another node's", Some(NODE_A_TOKEN), a_on_b, 403, "forbidden", Some("attachment.node")),
        ("the controller role", Some(CTRL_TOKEN), good.clone(), 403, "forbidden", None),
        ("no token", None, good, 401, "unauthorized", None),
        ("an unknown reason", Some(NODE_A_TOKEN), bad_reason, 400, "invalid_json", Some("reason")),
        ("a bad pod name", Some(NODE_A_TOKEN), bad_pod, 400, "invalid_field", Some("owner.pod")),
    ];
    for (what, token, body, status, code, field) in cases {
        let (got, answer) = post(&server, token, &body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{what}: {answer}");
        assert_eq!(answer["error"]["field"].as_str(), field, "{what}: {answer}");
    }
    assert_eq!(server.metric(REFUSED).await, Some(1.0));

    // No lease was created, for the pod or at all.
    let leases = server
        .ctrl()
        .list_all_leases(&Default::default())
        .await
        .unwrap();
    assert!(leases.is_empty(), "{leases:?}");
    assert!(
        server
            .ctrl()
            .lease_by_owner(&report("node-a").owner)
            .await
            .is_err()
    );
}
