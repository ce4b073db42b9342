//! Every bad input gets a clear 4xx JSON error naming the problem, and changes nothing.

mod common;

use common::{CTRL_TOKEN, NODE_A_TOKEN, NODE_TOKEN, Server, subnet};
use serde_json::{Value, json};

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    token: Option<&'static str>,
    body: Option<String>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
    message_has: &'static str,
}

fn alloc_body(extra: Value) -> String {
    let mut base = json!({
        "zone": "z1", "kind": "fixed",
        "owner": {"cluster": "k", "namespace": "db", "pod": "redis-9"},
        "attachment": {"container_id": "c9", "ifname": "eth0", "node": "n1"}
    });
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if v.is_null() {
                b.remove(k);
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    base.to_string()
}

fn cases() -> Vec<Case> {
    let n = Some(NODE_TOKEN);
    let c = Some(CTRL_TOKEN);
    // Bound to node-a (`node:node-a TOKEN`); the lease set up below is on node n1.
    let node_a = Some(NODE_A_TOKEN);
    let sub = |v: Value| Some(v.to_string());
    vec![
        Case {
            name: "malformed JSON",
            method: "POST",
            path: "/v1/leases",
            token: n,
            body: Some("{\"zone\": ".into()),
            status: 400,
            code: "invalid_json",
            field: None,
            message_has: "EOF",
        },
        Case {
            name: "not JSON",
            method: "POST",
            path: "/v1/leases",
            token: n,
            body: Some("zone=z1".into()),
            status: 400,
            code: "invalid_json",
            field: None,
            message_has: "expected",
        },
        Case {
            name: "unknown field",
            method: "POST",
            path: "/v1/leases",
            token: n,
            body: Some(alloc_body(json!({"colour": "red"}))),
            status: 400,
            code: "invalid_json",
            field: Some("colour"),
            message_has: "unknown field `colour`",
        },
        Case {
            name: "unknown nested field",
            method: "POST",
            path: "/v1/leases",
            token: n,
            body: Some(alloc_body(
                json!({"attachment": {"container_id": "c9", "ifname": "eth0", "node": "n1", "uid": "x"}}),
            )),
            status: 400,
            code: "invalid_json",
            field: Some("attachment.uid"),
            message_has: "unknown field",
        },
        Case {
            name: "wrong type",
            method: "POST",
            path: "/v1/leases",
            token: n,
            body: Some(alloc_body(json!({"zone": 5}))),
            status: 400,
            code: "invalid_json",
            field: Some("zone"),
            message_has: "invalid type",
        },
        Case {
            name: "bad kind",
            method: "POST",
            path: "/v1/leases",
            token: n,
            body: Some(alloc_body(json!({"kind": "sticky"}))),
            status: 400,
            code: "invalid_json",
            field: Some("kind"),
            message_has: "sticky",
        },
        Case {
            name: "fixed without owner",
            method: "POST",
            path: "/v1/leases",
            token: n,
            body: Some(alloc_body(json!({"owner": null}))),
            status: 400,
            code: "invalid_field",
            field: Some("owner"),
            message_has: "required",
        },
        Case {
            name: "bad container id",
            method: "POST",
            path: "/v1/leases",
            token: n,
            body: Some(alloc_body(
                json!({"attachment": {"container_id": "../x", "ifname": "eth0", "node": "n1"}}),
            )),
            status: 400,
            code: "invalid_field",
            field: Some("attachment.container_id"),
            message_has: "must match",
        },
        Case {
            name: "unknown zone",
            method: "POST",
            path: "/v1/leases",
            token: n,
            body: Some(alloc_body(json!({"zone": "mars"}))),
            status: 404,
            code: "unknown_zone",
            field: Some("zone"),
            message_has: "mars",
        },
        Case {
            name: "invalid CIDR",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(json!({"zone": "z2", "cidr": "10.30.0.0/33"})),
            status: 400,
            code: "invalid_field",
            field: Some("cidr"),
            message_has: "/33",
        },
        Case {
            name: "CIDR with host bits",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(json!({"zone": "z2", "cidr": "10.30.0.7/24"})),
            status: 400,
            code: "invalid_field",
            field: Some("cidr"),
            message_has: "did you mean 10.30.0.0/24",
        },
        Case {
            name: "overlapping subnet",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(json!({"zone": "z2", "cidr": "10.10.0.128/25"})),
            status: 409,
            code: "subnet_overlap",
            field: Some("cidr"),
            message_has: "overlaps subnet \"10.10.0.0-24\"",
        },
        Case {
            name: "gateway outside",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(json!({"zone": "z2", "cidr": "10.30.0.0/24", "gateway": "10.31.0.1"})),
            status: 400,
            code: "invalid_field",
            field: Some("gateway"),
            message_has: "outside 10.30.0.0/24",
        },
        Case {
            name: "bad exclusion",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(
                json!({"zone": "z2", "cidr": "10.30.0.0/24", "exclude": ["10.30.0.5", "banana"]}),
            ),
            status: 400,
            code: "invalid_field",
            field: Some("exclude[1]"),
            message_has: "banana",
        },
        Case {
            name: "subnet named \".\" (unreachable as a URL path segment)",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(json!({"zone": "z2", "cidr": "10.30.0.0/24", "name": "."})),
            status: 400,
            code: "invalid_field",
            field: Some("name"),
            message_has: "not usable as a URL path segment",
        },
        Case {
            name: "subnet named \"..\"",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(json!({"zone": "z2", "cidr": "10.30.0.0/24", "name": ".."})),
            status: 400,
            code: "invalid_field",
            field: Some("name"),
            message_has: "not usable as a URL path segment",
        },
        Case {
            name: "zone \"..\"",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(json!({"zone": "..", "cidr": "10.30.0.0/24"})),
            status: 400,
            code: "invalid_field",
            field: Some("zone"),
            message_has: "not usable as a URL path segment",
        },
        Case {
            name: "multicast subnet",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(json!({"zone": "z2", "cidr": "239.1.0.0/24"})),
            status: 400,
            code: "invalid_field",
            field: Some("cidr"),
            message_has: "overlaps 224.0.0.0/4, IPv4 multicast",
        },
        Case {
            name: "link-local multicast subnet",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(json!({"zone": "z2", "cidr": "224.0.0.0/24"})),
            status: 400,
            code: "invalid_field",
            field: Some("cidr"),
            message_has: "link-local multicast",
        },
        Case {
            name: "loopback subnet",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(json!({"zone": "z2", "cidr": "127.0.0.0/24"})),
            status: 400,
            code: "invalid_field",
            field: Some("cidr"),
            message_has: "IPv4 loopback",
        },
        Case {
            name: "IPv6 loopback subnet",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(json!({"zone": "z2", "cidr": "::1/128"})),
            status: 400,
            code: "invalid_field",
            field: Some("cidr"),
            message_has: "IPv6 loopback",
        },
        Case {
            name: "IPv6 link-local multicast subnet",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(json!({"zone": "z2", "cidr": "ff02::/64"})),
            status: 400,
            code: "invalid_field",
            field: Some("cidr"),
            message_has: "IPv6 multicast",
        },
        Case {
            name: "IPv4-mapped IPv6 subnet",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(json!({"zone": "z2", "cidr": "::ffff:10.30.0.0/120"})),
            status: 400,
            code: "invalid_field",
            field: Some("cidr"),
            message_has: "IPv4-mapped IPv6",
        },
        Case {
            name: "DNS domain with a newline",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(
                json!({"zone": "z2", "cidr": "10.30.0.0/24", "dns": {"domain": "example.com\nnameserver 6.6.6.6"}}),
            ),
            status: 400,
            code: "invalid_field",
            field: Some("dns.domain"),
            message_has: "contains '\\n'",
        },
        Case {
            name: "DNS nameserver that is not an IP",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(
                json!({"zone": "z2", "cidr": "10.30.0.0/24", "dns": {"nameservers": ["10.30.0.10", "ns1.example"]}}),
            ),
            status: 400,
            code: "invalid_field",
            field: Some("dns.nameservers[1]"),
            message_has: "\"ns1.example\" is not an IP address",
        },
        Case {
            name: "DNS search entry of a megabyte",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(
                json!({"zone": "z2", "cidr": "10.30.0.0/24", "dns": {"search": ["x".repeat(1 << 20)]}}),
            ),
            status: 400,
            code: "invalid_field",
            field: Some("dns.search[0]"),
            message_has: "DNS name of 1 to 253 characters, got 1048576",
        },
        Case {
            name: "too many DNS search entries",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(
                json!({"zone": "z2", "cidr": "10.30.0.0/24", "dns": {"search": vec!["example.com"; 33]}}),
            ),
            status: 400,
            code: "invalid_field",
            field: Some("dns.search"),
            message_has: "at most 32 search domains, got 33",
        },
        Case {
            name: "DNS option with a control character",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(
                json!({"zone": "z2", "cidr": "10.30.0.0/24", "dns": {"options": ["ndots:5\r"]}}),
            ),
            status: 400,
            code: "invalid_field",
            field: Some("dns.options[0]"),
            message_has: "contains '\\r'",
        },
        Case {
            name: "too many routes",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(
                json!({"zone": "z2", "cidr": "10.30.0.0/24", "routes": vec![json!({"dst": "10.0.0.0/8"}); 129]}),
            ),
            status: 400,
            code: "invalid_field",
            field: Some("routes"),
            message_has: "at most 128 routes, got 129",
        },
        Case {
            name: "route gateway of the other family",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(
                json!({"zone": "z2", "cidr": "10.30.0.0/24", "routes": [{"dst": "0.0.0.0/0", "gw": "fd00::1"}]}),
            ),
            status: 400,
            code: "invalid_field",
            field: Some("routes[0].gw"),
            message_has: "fd00::1 is not IPv4",
        },
        Case {
            name: "route destination with a newline",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(
                json!({"zone": "z2", "cidr": "10.30.0.0/24", "routes": [{"dst": "0.0.0.0/0\n1.2.3.0/24"}]}),
            ),
            status: 400,
            code: "invalid_field",
            field: Some("routes[0].dst"),
            message_has: "not a prefix length",
        },
        Case {
            name: "subnet unknown field",
            method: "POST",
            path: "/v1/subnets",
            token: c,
            body: sub(json!({"zone": "z2", "cidr": "10.30.0.0/24", "vlan": 5})),
            status: 400,
            code: "invalid_json",
            field: Some("vlan"),
            message_has: "unknown field",
        },
        Case {
            name: "missing token",
            method: "POST",
            path: "/v1/leases",
            token: None,
            body: Some(alloc_body(json!({}))),
            status: 401,
            code: "unauthorized",
            field: None,
            message_has: "missing",
        },
        Case {
            name: "unknown token",
            method: "GET",
            path: "/v1/leases",
            token: Some("not-a-known-token-at-all"),
            body: None,
            status: 401,
            code: "unauthorized",
            field: None,
            message_has: "unknown token",
        },
        Case {
            name: "wrong role: node adds a subnet",
            method: "POST",
            path: "/v1/subnets",
            token: n,
            body: sub(json!({"zone": "z2", "cidr": "10.30.0.0/24"})),
            status: 403,
            code: "forbidden",
            field: None,
            message_has: "needs role controller",
        },
        Case {
            name: "wrong role: node releases",
            method: "POST",
            path: "/v1/leases/release",
            token: n,
            body: sub(json!({"owner": {"cluster": "k", "namespace": "db", "pod": "redis-0"}})),
            status: 403,
            code: "forbidden",
            field: None,
            message_has: "needs role controller",
        },
        Case {
            name: "release: an address that is not one",
            method: "POST",
            path: "/v1/leases/release",
            token: c,
            body: sub(
                json!({"owner": {"cluster": "k", "namespace": "db", "pod": "redis-0"}, "ips": ["10.0.0.300"]}),
            ),
            status: 400,
            code: "invalid_json",
            field: Some("ips[0]"),
            message_has: "invalid IP address",
        },
        Case {
            name: "wrong role: controller allocates",
            method: "POST",
            path: "/v1/leases",
            token: c,
            body: Some(alloc_body(json!({}))),
            status: 403,
            code: "forbidden",
            field: None,
            message_has: "needs role node",
        },
        Case {
            name: "subnet in use",
            method: "DELETE",
            path: "/v1/subnets/10.10.0.0-24",
            token: c,
            body: None,
            status: 409,
            code: "subnet_in_use",
            field: None,
            message_has: "1 lease",
        },
        Case {
            name: "bad IP in path",
            method: "GET",
            path: "/v1/leases/by-ip/10.10.0.300",
            token: n,
            body: None,
            status: 400,
            code: "invalid_field",
            field: Some("ip"),
            message_has: "not an IP",
        },
        Case {
            name: "bad limit",
            method: "GET",
            path: "/v1/leases?limit=many",
            token: n,
            body: None,
            status: 400,
            code: "invalid_field",
            field: Some("limit"),
            message_has: "invalid digit",
        },
        Case {
            name: "limit too large",
            method: "GET",
            path: "/v1/leases?limit=999999",
            token: n,
            body: None,
            status: 400,
            code: "invalid_field",
            field: Some("limit"),
            message_has: "1..=5000",
        },
        Case {
            name: "unknown query parameter",
            method: "GET",
            path: "/v1/leases?colour=red",
            token: n,
            body: None,
            status: 400,
            code: "invalid_field",
            field: Some("colour"),
            message_has: "unknown field",
        },
        Case {
            name: "body too large",
            method: "POST",
            path: "/v1/gc",
            token: n,
            body: Some(format!(
                "{{\"node\":\"n1\",\"valid_attachments\":[],\"pad\":\"{}\"}}",
                "x".repeat(5 << 20)
            )),
            status: 413,
            code: "payload_too_large",
            field: None,
            message_has: "length limit",
        },
        Case {
            name: "wrong method",
            method: "PUT",
            path: "/v1/leases",
            token: n,
            body: None,
            status: 405,
            code: "method_not_allowed",
            field: None,
            message_has: "not allowed",
        },
        Case {
            name: "no such route",
            method: "GET",
            path: "/v2/leases",
            token: n,
            body: None,
            status: 404,
            code: "not_found",
            field: None,
            message_has: "no such route",
        },
        Case {
            name: "bad gc list",
            method: "POST",
            path: "/v1/gc",
            token: n,
            body: sub(
                json!({"node": "n1", "valid_attachments": [{"container_id": "", "ifname": "eth0"}]}),
            ),
            status: 400,
            code: "invalid_field",
            field: Some("valid_attachments[0].container_id"),
            message_has: "must match",
        },
        Case {
            name: "another node's allocation",
            method: "POST",
            path: "/v1/leases",
            token: node_a,
            body: Some(alloc_body(json!({}))),
            status: 403,
            code: "forbidden",
            field: Some("attachment.node"),
            message_has: r#"bound to node "node-a" and may not allocate on node "n1""#,
        },
        Case {
            name: "another node's detach",
            method: "POST",
            path: "/v1/leases/detach",
            token: node_a,
            body: sub(
                json!({"container_id": "c9", "ifname": "eth0", "owner": {"cluster": "k", "namespace": "db", "pod": "redis-0"}}),
            ),
            status: 403,
            code: "forbidden",
            field: Some("container_id"),
            message_has: r#"may not detach attachment c9/eth0 on node "n1""#,
        },
        Case {
            name: "another node's gc",
            method: "POST",
            path: "/v1/gc",
            token: node_a,
            body: sub(json!({"node": "n1", "valid_attachments": []})),
            status: 403,
            code: "forbidden",
            field: Some("node"),
            message_has: r#"may not garbage-collect on node "n1""#,
        },
    ]
}

async fn snapshot(server: &Server) -> (Value, Value) {
    let ctrl = server.ctrl();
    let subnets = serde_json::to_value(ctrl.list_subnets().await.unwrap()).unwrap();
    let leases =
        serde_json::to_value(ctrl.list_all_leases(&Default::default()).await.unwrap()).unwrap();
    (subnets, leases)
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server
        .ctrl()
        .add_subnet(&subnet("z1", "10.10.0.0/24"))
        .await
        .unwrap();
    let body = alloc_body(json!({"owner": {"cluster": "k", "namespace": "db", "pod": "redis-0"}}));
    let http = reqwest::Client::new();
    let ok = http
        .post(format!("{}/v1/leases", server.url))
        .bearer_auth(NODE_TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);

    let before = snapshot(&server).await;
    let mut failures = Vec::new();
    for case in cases() {
        let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
        let mut req = http.request(method, format!("{}{}", server.url, case.path));
        if let Some(t) = case.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = &case.body {
            req = req
                .header("content-type", "application/json")
                .body(b.clone());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => {
                failures.push(format!("{}: body is not JSON: {text}", case.name));
                continue;
            }
        };
        let err = &body["error"];
        let field = err["field"].as_str();
        let message = err["message"].as_str().unwrap_or_default();
        if status != case.status
            || err["code"] != case.code
            || field != case.field
            || !message.contains(case.message_has)
        {
            failures.push(format!(
                "{}: got {status} {body}; want {} {} field {:?} message containing {:?}",
                case.name, case.status, case.code, case.field, case.message_has
            ));
        }
        assert_eq!(
            snapshot(&server).await,
            before,
            "{} changed the state",
            case.name
        );
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// RFC 7235: the auth scheme is case-insensitive, so `bearer` and `BEARER` are `Bearer`; a
/// header that is no `Bearer <token>` at all is still a clear 401.
#[tokio::test]
async fn the_auth_scheme_is_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let http = reqwest::Client::new();
    let get = |auth: String| {
        http.get(format!("{}/v1/subnets", server.url))
            .header("authorization", auth)
            .send()
    };
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let resp = get(format!("{scheme} {NODE_TOKEN}")).await.unwrap();
        assert_eq!(
            resp.status(),
            200,
            "{scheme}: {}",
            resp.text().await.unwrap()
        );
    }
    for bad in [format!("Bearer{NODE_TOKEN}"), "bearer ".to_string()] {
        let resp = get(bad.clone()).await.unwrap();
        assert_eq!(resp.status(), 401, "{bad:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("not `Bearer <token>`"), "{body}");
    }
}

/// A store file that exists but is empty is not a new store (that is a data dir without one):
/// `nethouse serve` refuses to start, names the file, and leaves it as it was.
#[test]
fn an_empty_store_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("nethouse.redb");
    std::fs::write(&store, b"").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nethouse"))
        .args([
            "serve",
            "--insecure-no-auth",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("nethouse serve started on an empty store file");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains(&store.display().to_string()), "{stderr}");
    assert!(stderr.contains("is empty"), "{stderr}");
    assert_eq!(
        std::fs::metadata(&store).unwrap().len(),
        0,
        "the file was left alone"
    );
}
