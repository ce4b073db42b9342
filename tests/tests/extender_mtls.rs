//! The real kube-scheduler calls the extender over mutual TLS, as the README documents: the
//! extender serves HTTPS and requires a client certificate its `--tls-client-ca` signed; the
//! scheduler's extender entry sets `enableHTTPS: true` and `tlsConfig` with `caFile` (the
//! extender's CA) and `certFile`/`keyFile` (its own client certificate). Fixed pods are placed
//! through those calls; a caller without the certificate is refused.

use std::time::Duration;

use nethouse::server::running::start_local;
use nethouse_e2e::cluster::{Cluster, ClusterOptions};
use nethouse_e2e::ports::free_port;
use nethouse_e2e::stack::{agent, apply_crd, fixed_statefulset, kube_client, wait_running};
use nethouse_runtime::tls::Tls;
use nethouse_scheduler_extender::metrics::VerbLabels;

#[path = "../../nethouse/tests/common/pki.rs"]
mod pki;

#[test]
fn the_scheduler_authenticates_to_the_extender_with_its_client_certificate() {
    let rt = nethouse_e2e::stack::runtime();
    let _enter = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    std::fs::create_dir_all(&pki_dir).unwrap();
    let (ca, cert, key) = pki::tls_files(&pki_dir);
    let (sched_crt, sched_key) = pki::client_files(&pki_dir, "kube-scheduler");
    let (nethouse, nh) = rt
        .block_on(start_local(
            dir.path().join("nethouse"),
            Duration::from_secs(600),
            &[("z1", "10.236.0.0/24")],
        ))
        .unwrap();

    // The configuration users apply, pointed at this extender over HTTPS with the scheduler's
    // client certificate.
    let port = free_port().unwrap();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/base/scheduler/kube-scheduler-config.yaml"
    ))
    .unwrap();
    let config = shipped.replace(
        "- urlPrefix: \"http://127.0.0.1:8888\"",
        &format!(
            "- urlPrefix: \"https://127.0.0.1:{port}\"\n  enableHTTPS: true\n  tlsConfig:\n    caFile: {}\n    certFile: {}\n    keyFile: {}",
            ca.display(),
            sched_crt.display(),
            sched_key.display()
        ),
    );
    assert_ne!(config, shipped, "the extender entry was found");
    let config_path = dir.path().join("kube-scheduler-config.yaml");
    std::fs::write(&config_path, config).unwrap();
    let mut cluster = Cluster::start(ClusterOptions {
        scheduler_config: Some(config_path),
        ..ClusterOptions::default()
    })
    .expect("control plane");
    apply_crd(&mut cluster).unwrap();

    let kube = rt.block_on(kube_client(&cluster.kubeconfig)).unwrap();
    let extender = rt
        .block_on(nethouse_scheduler_extender::start(
            kube.clone(),
            nh.clone(),
            nethouse_scheduler_extender::Options {
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                cluster: "e2e".into(),
                zones_refresh: Duration::from_secs(1),
                tls: Some(Tls {
                    cert,
                    key,
                    client_ca: Some(ca.clone()),
                }),
                http: Default::default(),
                max_body: nethouse_scheduler_extender::server::DEFAULT_MAX_BODY,
                max_concurrent: nethouse_scheduler_extender::server::DEFAULT_MAX_CONCURRENT,
            },
        ))
        .unwrap();
    let mut agent = agent(kube, &nethouse.url(), "e2e", "mt").unwrap();
    for node in ["z1-a", "z1-b"] {
        rt.block_on(agent.add_node(node, "z1")).unwrap();
    }
    cluster
        .kubectl_stdin(
            &["apply", "-f", "-"],
            Some(&fixed_statefulset("redis", 2, None, true)),
        )
        .unwrap();
    wait_running(&mut cluster, "app=redis", 2, None).unwrap();
    let decided = extender
        .metrics
        .requests
        .get_or_create(&VerbLabels {
            verb: "filter",
            result: "decided",
        })
        .get();
    assert!(
        decided >= 2,
        "the scheduler's filter calls reached the extender: {decided}"
    );

    // Without the client certificate the extender does not answer.
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&ca)
        .arg(format!("https://127.0.0.1:{port}/healthz"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    agent.shutdown();
    drop(extender);
    rt.block_on(nethouse.shutdown(Duration::from_secs(2)));
}
