//! The real `nethouse-cni` binary against a real NetHouse, as a runtime calls it (IPAM only):
//! every verb's semantics, result shapes per version, exact error JSON, deadlines, and 200
//! concurrent ADDs from 200 processes.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{Cni, Nethouse, conf, subnet};
use nethouse_api::{Dns, Owner, Route, codes};
use serde_json::{Value, json};

const VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

fn owner(pod: &str) -> Owner {
    Owner {
        cluster: "test".into(),
        namespace: "db".into(),
        pod: pod.into(),
    }
}

#[test]
fn version_lists_every_supported_version() {
    for v in VERSIONS {
        let out = Cni::new("VERSION", "").run(&json!({"cniVersion": v}).to_string());
        out.ok();
        assert_eq!(
            out.json(),
            json!({"cniVersion": v, "supportedVersions": VERSIONS})
        );
    }
}

#[test]
fn add_result_shape_for_every_version() {
    let nh = Nethouse::start(Duration::from_secs(60));
    let mut s = subnet("z1", "10.91.0.0/24");
    s.routes = vec![Route {
        dst: "0.0.0.0/0".into(),
        gw: None,
    }];
    s.dns = Dns {
        nameservers: vec!["10.91.0.10".into()],
        search: vec!["svc.local".into()],
        ..Default::default()
    };
    nh.add_subnet(s);
    nh.add_subnet(subnet("z1", "fd00:91::/64"));
    for (i, v) in VERSIONS.iter().enumerate() {
        let cid = format!("shape{i}");
        let out = Cni::new("ADD", &cid).run(&conf(v, &nh.url, "z1", "n1", None).to_string());
        out.ok();
        let r = out.json();
        assert_eq!(r["cniVersion"], *v);
        assert!(
            r.get("interfaces").is_none(),
            "an IPAM result has no interfaces: {r}"
        );
        let ips = r["ips"].as_array().unwrap();
        assert_eq!(ips.len(), 2, "dual-stack: {r}");
        assert!(ips[0]["address"].as_str().unwrap().starts_with("10.91.0."));
        assert_eq!(ips[0]["gateway"], "10.91.0.1");
        assert!(ips[1]["address"].as_str().unwrap().starts_with("fd00:91::"));
        if v.starts_with("0.") {
            assert_eq!(
                (ips[0]["version"].as_str(), ips[1]["version"].as_str()),
                (Some("4"), Some("6")),
                "{v}"
            );
        } else {
            assert!(ips.iter().all(|ip| ip.get("version").is_none()), "{v}: {r}");
        }
        assert_eq!(r["routes"], json!([{"dst": "0.0.0.0/0"}]));
        assert_eq!(
            r["dns"],
            json!({"nameservers": ["10.91.0.10"], "search": ["svc.local"]})
        );
        Cni::new("DEL", &cid)
            .run(&conf(v, &nh.url, "z1", "n1", None).to_string())
            .ok();
    }
}

#[test]
fn error_codes_are_exact_json_on_stdout() {
    let good = conf("1.0.0", &closed_port_url(), "z1", "n1", None);
    let not_a_ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_a_ca.path(), "not a certificate\n").unwrap();
    let mut bad_ca = conf("1.0.0", "https://127.0.0.1:1", "z1", "n1", None);
    bad_ca["ipam"]["caFile"] = json!(not_a_ca.path());
    let spaced_token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(spaced_token.path(), "node token\n").unwrap();
    let mut bad_token = good.clone();
    bad_token["ipam"]["tokenFile"] = json!(spaced_token.path());
    let cases: Vec<(&str, Cni, String, Value)> = vec![
        (
            "a CA file without a certificate is invalid config, not a NetHouse refusal",
            Cni::new("ADD", "c1"),
            bad_ca.to_string(),
            json!({"cniVersion": "1.0.0", "code": 7, "msg": "ipam.caFile: invalid NetHouse client configuration: CA bundle: no certificate in it"}),
        ),
        (
            "a token that cannot go into a header names the token file",
            Cni::new("ADD", "c1"),
            bad_token.to_string(),
            json!({"cniVersion": "1.0.0", "code": 7, "msg": "ipam.tokenFile: invalid NetHouse client configuration: token: empty, or has spaces or control characters"}),
        ),
        (
            "incompatible version",
            Cni::new("ADD", "c1"),
            json!({"cniVersion": "0.2.0", "name": "n"}).to_string(),
            json!({"cniVersion": "1.1.0", "code": 1, "msg": "incompatible CNI version \"0.2.0\"; nethouse-cni supports 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"}),
        ),
        (
            "missing env",
            Cni { ifname: "", ..Cni::new("ADD", "c1") },
            good.to_string(),
            json!({"cniVersion": "1.0.0", "code": 4, "msg": "required environment variables missing for ADD: CNI_IFNAME"}),
        ),
        (
            "bad container id",
            Cni::new("ADD", "../c1"),
            good.to_string(),
            json!({"cniVersion": "1.0.0", "code": 4, "msg": "CNI_CONTAINERID \"../c1\" must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"}),
        ),
        (
            "undecodable config",
            Cni::new("ADD", "c1"),
            "{not json".to_string(),
            json!({"cniVersion": "1.1.0", "code": 6, "msg": "network config is not JSON: key must be a string at line 1 column 2"}),
        ),
        (
            "invalid config",
            Cni::new("ADD", "c1"),
            json!({"cniVersion": "0.4.0", "name": "n", "ipam": {"type": "nethouse-cni", "servers": ["http://h:1"]}}).to_string(),
            json!({"cniVersion": "0.4.0", "code": 7, "msg": "ipam: missing field `zone`"}),
        ),
        (
            "unknown ipam key",
            Cni::new("ADD", "c1"),
            json!({"cniVersion": "1.1.0", "name": "n", "ipam": {"type": "nethouse-cni", "servers": ["http://h:1"], "zone": "z", "subnet": "x"}}).to_string(),
            json!({"cniVersion": "1.1.0", "code": 7, "msg": "ipam.subnet: unknown field `subnet`, expected one of `type`, `servers`, `hosts`, `tokenFile`, `caFile`, `zone`, `node`, `cluster`, `timeoutSeconds`, `requestTimeoutSeconds`, `logFile`"}),
        ),
        (
            "unknown CNI_ARGS",
            Cni { args: "K8S_POD_NAME=a;COLOUR=red".into(), ..Cni::new("ADD", "c1") },
            good.to_string(),
            json!({"cniVersion": "1.0.0", "code": 4, "msg": "CNI_ARGS: unknown keys COLOUR (set IgnoreUnknown=1 to allow them)"}),
        ),
    ];
    for (name, call, stdin, want) in cases {
        let out = call.run(&stdin);
        assert_ne!(out.code, 0, "{name}");
        assert_eq!(out.json(), want, "{name}: stdout {}", out.stdout);
    }
    // Unreachable NetHouse: 11 (try again later), with the transport error in details.
    let out = Cni::new("ADD", "c1").run(&good.to_string());
    let e = out.err(11);
    assert_eq!(e["msg"], "ADD: NetHouse not available, try again later");
    assert!(
        e["details"].as_str().unwrap().contains("unreachable"),
        "{e}"
    );
    assert_eq!(e["cniVersion"], "1.0.0");
    // ... and the same for DEL: never a silent leak.
    Cni::new("DEL", "c1").run(&good.to_string()).err(11);
    // STATUS without NetHouse: 50.
    let mut status = good.clone();
    status["cniVersion"] = json!("1.1.0");
    let e = Cni::new("STATUS", "").run(&status.to_string()).err(50);
    assert_eq!(e["msg"], "NetHouse is not available");
}

#[test]
fn fixed_pod_keeps_its_ip_with_a_new_sandbox_even_without_del() {
    let nh = Nethouse::start(Duration::from_secs(60));
    nh.add_subnet(subnet("z1", "10.92.0.0/24"));
    let c = |node: &str| conf("1.0.0", &nh.url, "z1", node, Some(true)).to_string();
    let first = Cni::new("ADD", "sandbox1")
        .pod("db", "redis-0")
        .run(&c("n1"))
        .ip();
    Cni::new("DEL", "sandbox1")
        .pod("db", "redis-0")
        .run(&c("n1"))
        .ok();
    let lease = nh
        .rt
        .block_on(nh.client().lease_by_owner(&owner("redis-0")))
        .unwrap();
    assert!(
        lease.attachment.is_none(),
        "DEL of a fixed pod detaches, keeps the lease"
    );
    let second = Cni::new("ADD", "sandbox2")
        .pod("db", "redis-0")
        .run(&c("n1"))
        .ip();
    assert_eq!(first, second);
    // Node n1 dies without DEL; the pod comes back on n2.
    let third = Cni::new("ADD", "sandbox3")
        .pod("db", "redis-0")
        .run(&c("n2"))
        .ip();
    assert_eq!(first, third);
    // The dead sandbox's late DEL does not detach the new one.
    Cni::new("DEL", "sandbox2")
        .pod("db", "redis-0")
        .run(&c("n1"))
        .ok();
    let lease = nh
        .rt
        .block_on(nh.client().lease_by_owner(&owner("redis-0")))
        .unwrap();
    assert_eq!(lease.attachment.unwrap().container_id, "sandbox3");
    // A label works as well as the annotation.
    let mut labelled = conf("1.0.0", &nh.url, "z1", "n1", None);
    labelled["args"] =
        json!({"cni": {"labels": [{"key": "nethouse.io/fixed-ip", "value": "true"}]}});
    let l1 = Cni::new("ADD", "lab1")
        .pod("db", "zk-0")
        .run(&labelled.to_string())
        .ip();
    Cni::new("DEL", "lab1")
        .pod("db", "zk-0")
        .run(&labelled.to_string())
        .ok();
    let l2 = Cni::new("ADD", "lab2")
        .pod("db", "zk-0")
        .run(&labelled.to_string())
        .ip();
    assert_eq!(l1, l2);
    // Wrong zone is refused with our code 101.
    let e = Cni::new("ADD", "sandbox4")
        .pod("db", "redis-0")
        .run(&conf("1.0.0", &nh.url, "z2", "n9", Some(true)).to_string());
    e.err(101);
}

#[test]
fn ordinary_pod_ip_is_released_and_cools_down() {
    let nh = Nethouse::start(Duration::from_secs(3600));
    nh.add_subnet(subnet("z1", "10.93.0.0/29")); // .2 .. .6 usable
    let c = conf("1.0.0", &nh.url, "z1", "n1", None).to_string();
    let ip = Cni::new("ADD", "e0").pod("web", "nginx-abc").run(&c).ip();
    Cni::new("DEL", "e0").pod("web", "nginx-abc").run(&c).ok();
    let gone = nh.rt.block_on(nh.client().lease_by_ip(ip.parse().unwrap()));
    assert!(gone.is_err(), "ephemeral lease ends at DEL");
    let mut others = HashSet::new();
    for i in 1..=4 {
        others.insert(Cni::new("ADD", &format!("e{i}")).run(&c).ip());
    }
    assert!(
        !others.contains(&ip),
        "the released IP is not reused inside its cooldown"
    );
    let e = Cni::new("ADD", "e5").run(&c).err(100);
    assert!(e["msg"].as_str().unwrap().contains("1 cooling down"), "{e}");
}

#[test]
fn over_https_the_operators_ca_is_trusted_and_nothing_else() {
    let nh = Nethouse::start_tls(Duration::from_secs(60));
    assert!(nh.url.starts_with("https://"), "{}", nh.url);
    nh.add_subnet(subnet("z1", "10.94.0.0/29"));
    let ca = nh.ca.clone().unwrap();
    let mut c = conf("1.0.0", &nh.url, "z1", "n1", Some(true));
    c["ipam"]["caFile"] = json!(ca);
    let c = c.to_string();
    // Each call is a fresh process: a TLS handshake apiece, TLS set up from nothing each time.
    let ip = Cni::new("ADD", "t0").pod("db", "redis-0").run(&c).ip();
    Cni::new("DEL", "t0").pod("db", "redis-0").run(&c).ok();
    let again = Cni::new("ADD", "t1").pod("db", "redis-0").run(&c).ip();
    assert_eq!(again, ip, "the fixed pod's IP, over https");

    // Refused, and nothing allocated: without a caFile (the platform's roots do not know the
    // test CA), and with the caFile of another CA.
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = common::tls_files(other.path());
    let mut other_conf = conf("1.0.0", &nh.url, "z1", "n1", Some(true));
    other_conf["ipam"]["caFile"] = json!(other_ca);
    let platform = conf("1.0.0", &nh.url, "z1", "n1", Some(true));
    for (case, c) in [("platform roots", platform), ("another CA", other_conf)] {
        let call = Cni::new("ADD", "t2")
            .pod("db", "redis-1")
            .run(&c.to_string());
        assert_ne!(call.code, 0, "{case}: {call:?}");
        let msg = call.json()["details"].to_string() + &call.json()["msg"].to_string();
        assert!(
            msg.to_lowercase().contains("certificate"),
            "{case}: {call:?}"
        );
        let held = nh
            .rt
            .block_on(nh.client().lease_by_owner(&owner("redis-1")))
            .expect_err("no lease for redis-1");
        assert_eq!(held.api_code(), Some(codes::NOT_FOUND), "{case}: {held}");
    }
}

#[test]
fn a_service_name_the_host_cannot_resolve_is_reached_through_ipam_hosts() {
    let nh = Nethouse::start(Duration::from_secs(60));
    nh.add_subnet(subnet("z1", "10.92.0.0/24"));
    // `.invalid` never resolves (RFC 6761): without the pinned address the call fails with 11.
    let by_name = nh
        .url
        .replace("127.0.0.1", "nethouse.nethouse-system.invalid");
    let mut c = conf("1.0.0", &by_name, "z1", "n1", None);
    let e = Cni::new("ADD", "h0").run(&c.to_string()).err(11);
    assert!(e["details"].as_str().unwrap().contains("resolving"), "{e}");
    c["ipam"]["hosts"] = json!({"nethouse.nethouse-system.invalid": "127.0.0.1"});
    let ip = Cni::new("ADD", "h0").run(&c.to_string()).ip();
    assert!(ip.starts_with("10.92.0."), "{ip}");
    Cni::new("DEL", "h0").run(&c.to_string()).ok();
}

#[test]
fn del_is_idempotent_and_needs_no_netns() {
    let nh = Nethouse::start(Duration::from_secs(60));
    nh.add_subnet(subnet("z1", "10.94.0.0/24"));
    let c = conf("1.0.0", &nh.url, "z1", "n1", Some(true)).to_string();
    Cni::new("ADD", "d1").pod("db", "redis-0").run(&c).ok();
    let del = || Cni {
        netns: "",
        ..Cni::new("DEL", "d1").pod("db", "redis-0")
    };
    del().run(&c).ok();
    del().run(&c).ok();
    // After the controller released the lease, DEL still succeeds.
    nh.rt
        .block_on(nh.client().release(&owner("redis-0")))
        .unwrap();
    del().run(&c).ok();
    // DEL of a container NetHouse never saw.
    Cni::new("DEL", "never-seen").run(&c).ok();
    assert_eq!(del().run(&c).stdout, "", "DEL prints nothing");
}

#[test]
fn check_passes_then_fails_once_the_lease_is_released() {
    let nh = Nethouse::start(Duration::from_secs(60));
    nh.add_subnet(subnet("z1", "10.95.0.0/24"));
    let c = conf("1.0.0", &nh.url, "z1", "n1", Some(true));
    let add = Cni::new("ADD", "k1")
        .pod("db", "redis-0")
        .run(&c.to_string());
    let mut with_prev = c.clone();
    with_prev["prevResult"] = add.json();
    let ok = Cni::new("CHECK", "k1")
        .pod("db", "redis-0")
        .run(&with_prev.to_string());
    ok.ok();
    assert_eq!(ok.stdout, "");
    // Another container of the same pod took the lease: CHECK of the old one fails.
    Cni::new("CHECK", "k-other")
        .pod("db", "redis-0")
        .run(&with_prev.to_string())
        .err(110);
    nh.rt
        .block_on(nh.client().release(&owner("redis-0")))
        .unwrap();
    let e = Cni::new("CHECK", "k1")
        .pod("db", "redis-0")
        .run(&with_prev.to_string())
        .err(110);
    assert!(e["msg"].as_str().unwrap().contains("no lease"), "{e}");
    // Without prevResult: invalid config.
    Cni::new("CHECK", "k1").run(&c.to_string()).err(7);
}

#[test]
fn gc_drops_only_stale_ephemeral_attachments() {
    let nh = Nethouse::start(Duration::from_secs(60));
    nh.add_subnet(subnet("z1", "10.96.0.0/24"));
    let eph = conf("1.1.0", &nh.url, "z1", "n1", None);
    let fixed = conf("1.1.0", &nh.url, "z1", "n1", Some(true));
    let keep = Cni::new("ADD", "keep").run(&eph.to_string()).ip();
    let stale = Cni::new("ADD", "stale").run(&eph.to_string()).ip();
    let f = Cni::new("ADD", "fixed1")
        .pod("db", "redis-0")
        .run(&fixed.to_string())
        .ip();
    let other_node = Cni::new("ADD", "elsewhere")
        .run(&conf("1.1.0", &nh.url, "z1", "n2", None).to_string())
        .ip();

    // Without a valid list (cnitool gc) nothing happens.
    Cni::new("GC", "").run(&eph.to_string()).ok();
    let client = nh.client();
    for ip in [&keep, &stale, &f, &other_node] {
        assert!(
            nh.rt
                .block_on(client.lease_by_ip(ip.parse().unwrap()))
                .is_ok()
        );
    }

    let mut gc = eph.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    let out = Cni::new("GC", "").run(&gc.to_string());
    out.ok();
    assert_eq!(out.stdout, "");
    let lookup = |ip: &str| nh.rt.block_on(client.lease_by_ip(ip.parse().unwrap()));
    assert!(lookup(&keep).is_ok(), "valid attachment kept");
    assert!(lookup(&stale).is_err(), "stale ephemeral released");
    assert!(lookup(&other_node).is_ok(), "other nodes untouched");
    let fl = lookup(&f).expect("a fixed lease is never released by GC");
    assert!(
        fl.attachment.is_none(),
        "but its stale attachment is dropped"
    );
}

#[test]
fn status_follows_nethouse() {
    let mut nh = Nethouse::start(Duration::from_secs(60));
    let c = conf("1.1.0", &nh.url, "z1", "n1", None).to_string();
    let up = Cni::new("STATUS", "").run(&c);
    up.ok();
    assert_eq!(up.stdout, "");
    nh.stop();
    Cni::new("STATUS", "").run(&c).err(50);
    nh.restart();
    Cni::new("STATUS", "").run(&c).ok();
}

#[test]
fn a_hanging_nethouse_never_hangs_the_plugin() {
    // Accepts connections, never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut c = conf("1.0.0", &url, "z1", "n1", None);
    c["ipam"]["timeoutSeconds"] = json!(1.5);
    c["ipam"]["requestTimeoutSeconds"] = json!(5);
    let start = Instant::now();
    let e = Cni::new("ADD", "h1").run(&c.to_string()).err(11);
    let took = start.elapsed();
    assert!(
        e["msg"].as_str().unwrap().contains("did not finish within"),
        "{e}"
    );
    assert!(took < Duration::from_secs(4), "ADD took {took:?}");
    drop(listener);
}

/// A server that sends a status line and then nothing (a stalled answer): the outcome is
/// unknown, so the plugin tries the next server, and with none left says "try again" (11) —
/// never "refused" (102), which a runtime would not retry.
#[test]
fn a_stalled_answer_is_error_11_and_the_next_server_is_asked() {
    use std::io::{Read, Write};
    let stalling = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stalled_url = format!("http://{}", stalling.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in stalling.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 500\r\n\r\n{\"lease\"");
                std::thread::sleep(Duration::from_secs(30));
            });
        }
    });
    let mut alone = conf("1.0.0", &stalled_url, "z1", "n1", Some(true));
    alone["ipam"]["timeoutSeconds"] = json!(1.5);
    alone["ipam"]["requestTimeoutSeconds"] = json!(1);
    let e = Cni::new("ADD", "st1")
        .pod("db", "redis-0")
        .run(&alone.to_string())
        .err(11);
    assert!(
        e["details"]
            .as_str()
            .unwrap_or_default()
            .contains("broke off after status 200"),
        "{e}"
    );

    let nh = Nethouse::start(Duration::from_secs(60));
    nh.add_subnet(subnet("z1", "10.99.0.0/24"));
    let mut both = alone.clone();
    both["ipam"]["servers"] = json!([stalled_url, nh.url]);
    both["ipam"]["timeoutSeconds"] = json!(5);
    let ip = Cni::new("ADD", "st2")
        .pod("db", "redis-1")
        .run(&both.to_string())
        .ip();
    assert!(ip.starts_with("10.99.0."), "{ip}");
}

#[test]
fn two_hundred_concurrent_adds_from_two_hundred_processes() {
    let nh = Nethouse::start(Duration::from_secs(60));
    nh.add_subnet(subnet("z1", "10.97.0.0/24"));
    let c = conf("1.0.0", &nh.url, "z1", "n1", Some(true)).to_string();
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let c = c.clone();
            std::thread::spawn(move || {
                let cid = format!("par{i}");
                let pod = format!("kafka-{i}");
                Cni::new("ADD", &cid).pod("db", &pod).run(&c).ip()
            })
        })
        .collect();
    let ips: HashSet<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(ips.len(), 200, "200 distinct IPs");
}

#[test]
fn logs_go_to_the_log_file_never_to_stdout() {
    let nh = Nethouse::start(Duration::from_secs(60));
    nh.add_subnet(subnet("z1", "10.90.0.0/24"));
    let log = nh.dir.path().join("cni.log");
    let mut c = conf("1.0.0", &nh.url, "z1", "n1", Some(true));
    c["ipam"]["logFile"] = json!(log);
    let add = Cni::new("ADD", "log1")
        .pod("db", "redis-0")
        .run(&c.to_string());
    let ip = add.ip();
    assert_eq!(add.stderr, "", "with logFile nothing goes to stderr");
    assert!(
        add.json().get("ts_ms").is_none(),
        "stdout carries only the result"
    );
    let failed = Cni::new("ADD", "log2")
        .pod("db", "redis-1")
        .run(&conf("1.0.0", &nh.url, "nope", "n1", Some(true)).to_string());
    failed.err(102);
    assert!(
        failed.stderr.contains("\"result\":\"error\""),
        "without logFile the line goes to stderr: {}",
        failed.stderr
    );
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["command"], "ADD");
    assert_eq!(lines[0]["pod"], "db/redis-0");
    assert_eq!(lines[0]["result"], "ok");
    assert!(
        lines[0]["ips"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with(&ip)
    );
}
