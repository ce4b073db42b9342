//! Issue 11, defect 5, on the real control plane: `nethouse serve --node-token-review` takes the
//! CNI DaemonSet's kind of credential — a ServiceAccount token of nethouse-system/nethouse-cni
//! with audience `nethouse`, bound to a pod on a node — as that node's, and that node's only.
//! Tokens are minted by kube-apiserver (`kubectl create token --bound-object-kind Pod`) for
//! pods bound to z1-a and z1-b; NetHouse asks the same kube-apiserver (TokenReview). A token of
//! z1-a on z1-b's attachments is 403 for allocate, detach and gc, changing nothing; z1-a's own
//! calls and the re-attach of a fixed pod's lease from z1-b work; tokens that are no node's
//! are 401. No kubelet runs the pods: only their binding to a node matters.

use std::path::Path;
use std::process::Child;

use nethouse_api::{
    AllocateRequest, Attachment, Client, ClientConfig, DetachRequest, GcRequest, Lease, LeaseKind,
    Owner, SubnetSpec,
};
use nethouse_e2e::binaries::workspace_bin;
use nethouse_e2e::cluster::{Cluster, ClusterOptions};

// The one way to spawn `nethouse serve` (a test file of that crate, so included).
#[allow(dead_code)]
#[path = "../../nethouse/tests/common/serve_process.rs"]
mod serve_process;
use serve_process::Serve;

const NS: &str = "nethouse-system";
const CTRL_TOKEN: &str = "controller-token-0123456789abcdef";

/// Two nodes of zone z1, and on each a pod of the CNI DaemonSet's ServiceAccount.
const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: nethouse-system}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: nethouse-cni, namespace: nethouse-system}
---
apiVersion: v1
kind: Node
metadata: {name: z1-a, labels: {nethouse.io/network-zone: z1}}
---
apiVersion: v1
kind: Node
metadata: {name: z1-b, labels: {nethouse.io/network-zone: z1}}
---
apiVersion: v1
kind: Pod
metadata: {name: cni-a, namespace: nethouse-system}
spec:
  serviceAccountName: nethouse-cni
  nodeName: z1-a
  containers: [{name: keep-token, image: registry.k8s.io/pause:3.10}]
---
apiVersion: v1
kind: Pod
metadata: {name: cni-b, namespace: nethouse-system}
spec:
  serviceAccountName: nethouse-cni
  nodeName: z1-b
  containers: [{name: keep-token, image: registry.k8s.io/pause:3.10}]
"#;

/// The token of `kubectl create token SA -n NS` plus `args`.
fn mint(c: &Cluster, sa: &str, ns: &str, args: &[&str]) -> String {
    let mut all = vec!["create", "token", sa, "-n", ns, "--duration=1h"];
    all.extend_from_slice(args);
    c.kubectl(&all).unwrap().trim().to_string()
}

/// A token bound to pod `pod` of nethouse-cni, for NetHouse.
fn node_token(c: &Cluster, pod: &str) -> String {
    let uid = c
        .kubectl(&[
            "get",
            "pod",
            pod,
            "-n",
            NS,
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .unwrap();
    mint(
        c,
        "nethouse-cni",
        NS,
        &[
            "--audience=nethouse",
            "--bound-object-kind=Pod",
            &format!("--bound-object-name={pod}"),
            &format!("--bound-object-uid={}", uid.trim()),
        ],
    )
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, kubeconfig: &Path) -> Server {
    let auth = dir.join("auth");
    std::fs::write(&auth, format!("controller {CTRL_TOKEN}\n")).unwrap();
    let served = Serve::new(workspace_bin("nethouse").unwrap(), dir.join("ready"))
        .args(["--listen", "127.0.0.1:0", "--node-token-review"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--auth-file")
        .arg(&auth)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        // Debug: what the reviews log must hold no token even then.
        .env("RUST_LOG", "debug")
        .log(dir.join("nethouse.log"))
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    Server {
        child: served.child,
        url: format!("http://{}", served.addr),
    }
}

fn client(url: &str, token: &str) -> Client {
    let mut cfg = ClientConfig::new(url.to_string());
    cfg.token = Some(token.to_string());
    Client::new(cfg).unwrap()
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

fn owner(pod: &str) -> Owner {
    Owner {
        cluster: "e2e".into(),
        namespace: "db".into(),
        pod: pod.into(),
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

/// Asserts a refusal of `status` whose message holds each of `has`.
fn refused<T: std::fmt::Debug>(
    got: Result<T, nethouse_api::ClientError>,
    status: u16,
    has: &[&str],
) {
    let e = got.expect_err("refused");
    assert_eq!(e.status().map(|s| s.as_u16()), Some(status), "{e}");
    for h in has {
        assert!(e.to_string().contains(h), "{h:?} in {e}");
    }
}

#[test]
fn reviewed_node_tokens_act_only_for_their_node() {
    let rt = nethouse_e2e::stack::runtime();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(ClusterOptions::default()).expect("control plane");
    cluster
        .kubectl_stdin(&["apply", "-f", "-"], Some(OBJECTS))
        .unwrap();
    let (token_a, token_b) = (node_token(&cluster, "cni-a"), node_token(&cluster, "cni-b"));
    let server = serve(dir.path(), &cluster.kubeconfig);
    let (ctrl, a, b) = (
        client(&server.url, CTRL_TOKEN),
        client(&server.url, &token_a),
        client(&server.url, &token_b),
    );
    let leases = || -> Vec<Lease> {
        rt.block_on(ctrl.list_all_leases(&Default::default()))
            .unwrap()
    };
    rt.block_on(ctrl.add_subnet(&SubnetSpec {
        zone: "z1".into(),
        cidr: "10.30.0.0/24".into(),
        ..Default::default()
    }))
    .unwrap();

    // z1-b's pods, allocated with z1-b's token.
    let redis = rt
        .block_on(b.allocate(&alloc(LeaseKind::Fixed, Some("redis-0"), "cb0", "z1-b")))
        .unwrap();
    rt.block_on(b.allocate(&alloc(LeaseKind::Ephemeral, None, "cb1", "z1-b")))
        .unwrap();
    let before = leases();
    assert_eq!(before.len(), 2);

    // z1-a's token on z1-b's attachments: 403 naming both nodes, nothing changed.
    let names_both = [r#"bound to node "z1-a" and may not"#, r#"on node "z1-b""#];
    for got in [
        rt.block_on(a.allocate(&alloc(LeaseKind::Fixed, Some("web-0"), "ca9", "z1-b")))
            .map(|_| ()),
        rt.block_on(a.allocate(&alloc(LeaseKind::Ephemeral, None, "cb1", "z1-a")))
            .map(|_| ()),
        rt.block_on(a.detach(&detach("cb0", Some("redis-0"))))
            .map(|_| ()),
        rt.block_on(a.detach(&detach("cb1", None))).map(|_| ()),
        rt.block_on(a.gc(&gc("z1-b"))).map(|_| ()),
    ] {
        refused(got, 403, &names_both);
        assert_eq!(leases(), before, "a refused call changed leases");
    }

    // z1-a's own calls work; the fixed pod of dead z1-b comes back on z1-a with its address.
    let mine = rt
        .block_on(a.allocate(&alloc(LeaseKind::Ephemeral, None, "ca1", "z1-a")))
        .unwrap();
    assert_eq!(mine.lease.attachment.unwrap().node, "z1-a");
    let swept = rt.block_on(a.gc(&gc("z1-a"))).unwrap();
    assert_eq!(swept.released, 1, "{swept:?}");
    let back = rt
        .block_on(a.allocate(&alloc(LeaseKind::Fixed, Some("redis-0"), "ca0", "z1-a")))
        .unwrap();
    assert_eq!(back.lease.ips, redis.lease.ips);
    assert_eq!(back.lease.attachment.unwrap().node, "z1-a");
    // z1-b's token is not a controller's.
    refused(
        rt.block_on(b.release(&redis.lease.owner.clone().unwrap())),
        403,
        &["role node may not do this"],
    );

    // Tokens that are no node's: 401, whatever the route.
    let unbound = mint(&cluster, "nethouse-cni", NS, &["--audience=nethouse"]);
    let other_account = mint(&cluster, "default", "default", &["--audience=nethouse"]);
    let other_audience = mint(&cluster, "nethouse-cni", NS, &[]);
    for (token, why) in [
        (unbound.as_str(), "names no node"),
        (other_account.as_str(), "not the node ServiceAccount"),
        (other_audience.as_str(), "did not authenticate the token"),
        ("node-token-0123456789abcdef", "unknown token"),
    ] {
        let c = client(&server.url, token);
        refused(rt.block_on(c.zones()), 401, &[why]);
        refused(rt.block_on(c.gc(&gc("z1-b"))), 401, &[why]);
    }
    assert_eq!(rt.block_on(b.gc(&gc("z1-b"))).unwrap().released, 1);

    // Reviews are counted, and a token is reviewed once while its verdict is kept.
    let metrics = rt.block_on(metrics_text(&server.url));
    for line in [
        r#"nethouse_token_reviews_total{result="accepted"} 2"#,
        r#"nethouse_token_reviews_total{result="refused"} 3"#,
        r#"nethouse_token_reviews_total{result="error"} 0"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    let log = std::fs::read_to_string(dir.path().join("nethouse.log")).unwrap();
    for token in [
        &token_a,
        &token_b,
        &unbound,
        &other_account,
        &other_audience,
    ] {
        assert!(!log.contains(token.as_str()), "a token in NetHouse's log");
    }
    assert!(log.contains("reviewed by the Kubernetes API"), "{log}");
}

/// `GET /metrics` (public; the API client has no call for it), as HTTP/1.0 so that the
/// answer is not chunked.
async fn metrics_text(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}
