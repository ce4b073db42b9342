//! The extender on a control plane that fails under it: a watch lost across a kube-apiserver
//! restart, with objects deleted meanwhile, is listed again and the deleted Node and Location
//! are forgotten (a stale Location would pin a pod to its old zone for good); a Location the
//! writer cannot write yet — its node's zone label comes later, the apiserver is away — is
//! written once it can be.

use std::time::{Duration, Instant};

use nethouse_e2e::cluster::{Cluster, ClusterOptions};
use nethouse_e2e::ports::free_port;
use nethouse_e2e::stack::{apply_crd, extender, kube_client};
use nethouse_scheduler_extender::index::View;
use nethouse_scheduler_extender::metrics::WriteLabels;

/// Nobody listens there: zone capacity stays unknown, which these tests do not need.
fn no_nethouse() -> nethouse_api::Client {
    nethouse_api::Client::new(nethouse_api::ClientConfig::new("http://127.0.0.1:9")).unwrap()
}

fn cluster() -> Cluster {
    let mut c = Cluster::start(ClusterOptions {
        // Nodes here have no kubelet: keep the node lifecycle controller from touching their
        // pods while a test runs.
        node_monitor_grace: Duration::from_secs(600),
        ..ClusterOptions::default()
    })
    .expect("control plane");
    apply_crd(&mut c).unwrap();
    c
}

fn node(c: &Cluster, name: &str, zone: Option<&str>) {
    let labels = zone
        .map(|z| format!("labels: {{nethouse.io/network-zone: {z}}}"))
        .unwrap_or_default();
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, {labels}}}\n"
        )),
    )
    .unwrap();
}

fn wait(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A filter call for the fixed pod `default/<pod>` over `nodes`: (kept, failed, unresolvable).
fn filter(url: &str, pod: &str, nodes: &[&str]) -> serde_json::Value {
    let body = serde_json::json!({
        "Pod": {"metadata": {"name": pod, "namespace": "default",
                "annotations": {"nethouse.io/fixed-ip": "true"}}},
        "NodeNames": nodes,
    });
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data-binary",
        ])
        .arg(body.to_string())
        .arg(format!("{url}/filter"))
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_relist_forgets_the_node_and_location_deleted_while_the_watch_was_down() {
    let rt = nethouse_e2e::stack::runtime();
    let _enter = rt.enter();
    let mut c = cluster();
    node(&c, "keep-a", Some("z1"));
    node(&c, "gone-b", Some("z2"));
    for (name, zone) in [("db-keep", "z1"), ("db-gone", "z2")] {
        c.kubectl_stdin(
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: nethouse.io/v1alpha1\nkind: Location\nmetadata: {{name: {name}, namespace: default}}\n\
                 spec: {{ips: [\"192.0.2.7\"], zone: {zone}, cluster: e2e}}\n"
            )),
        )
        .unwrap();
    }
    let kube = rt.block_on(kube_client(&c.kubeconfig)).unwrap();
    let ext = rt
        .block_on(extender(kube, &no_nethouse(), "e2e", free_port().unwrap()))
        .unwrap();
    let view = ext.index.clone();
    wait("the extender to list", Duration::from_secs(30), || {
        view.ready()
            && view.location("default/db-gone").is_some()
            && view.node_zone("gone-b").is_some()
    });
    // The Location pins db-gone to z2: keep-a (z1) is refused for it.
    let before = filter(&ext.url(), "db-gone", &["keep-a", "gone-b"]);
    assert_eq!(
        before["NodeNames"],
        serde_json::json!(["gone-b"]),
        "{before}"
    );

    // While kube-apiserver is down, the Node and the Location go (behind its back, in etcd),
    // and etcd forgets the history: the extender's watch cannot resume, it must list again.
    c.restart_apiserver(|c| {
        c.etcdctl(&["del", "/registry/minions/gone-b"])?;
        c.etcdctl(&["del", "/registry/nethouse.io/locations/default/db-gone"])?;
        let status: serde_json::Value =
            serde_json::from_str(&c.etcdctl(&["get", "x", "-w", "json"])?)?;
        let rev = status["header"]["revision"].as_i64().unwrap_or_default();
        c.etcdctl(&["compact", &rev.to_string()])?;
        Ok(())
    })
    .unwrap();

    wait(
        "the extender to forget gone-b and db-gone after its re-list",
        Duration::from_secs(60),
        || view.node_zone("gone-b").is_none() && view.location("default/db-gone").is_none(),
    );
    assert_eq!(view.node_zone("keep-a").flatten().as_deref(), Some("z1"));
    assert!(view.location("default/db-keep").is_some());
    assert!(view.ready());
    // db-gone has no Location any more: it may go anywhere; gone-b is unknown (retryable).
    let after = filter(&ext.url(), "db-gone", &["keep-a", "gone-b"]);
    assert_eq!(after["NodeNames"], serde_json::json!(["keep-a"]), "{after}");
    assert!(after["FailedNodes"]["gone-b"].is_string(), "{after}");
}

fn running_fixed_pod(c: &Cluster, name: &str, node: &str, ip: &str) {
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default, \
             annotations: {{nethouse.io/fixed-ip: \"true\"}}}}\n\
             spec: {{nodeName: {node}, containers: [{{name: c, image: pause}}]}}\n"
        )),
    )
    .unwrap();
    // No kubelet here: report the pod running with its IP as a kubelet would.
    c.kubectl(&[
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}]}}}}"#),
    ])
    .unwrap();
}

fn location(c: &Cluster, name: &str) -> Option<String> {
    c.kubectl(&[
        "get",
        "loc",
        name,
        "-o",
        "jsonpath={.spec.ips[0]} {.spec.zone} {.status.node} {.status.phase}",
    ])
    .ok()
}

#[test]
fn a_location_that_cannot_be_written_yet_is_written_once_it_can() {
    let rt = nethouse_e2e::stack::runtime();
    let _enter = rt.enter();
    let mut c = cluster();
    let kube = rt.block_on(kube_client(&c.kubeconfig)).unwrap();
    let ext = rt
        .block_on(extender(kube, &no_nethouse(), "e2e", free_port().unwrap()))
        .unwrap();
    let view = ext.index.clone();
    let metrics = ext.metrics.clone();
    let writes = move |result: &'static str| {
        metrics
            .location_writes
            .get_or_create(&WriteLabels { result })
            .get()
    };
    wait("the extender to list", Duration::from_secs(30), || {
        view.ready()
    });

    // A fixed pod runs on a node whose zone label is not there yet: nothing can be written.
    node(&c, "late-a", None);
    running_fixed_pod(&c, "db-0", "late-a", "192.0.2.10");
    wait("failed attempts", Duration::from_secs(30), || {
        writes("zone_unknown") >= 2
    });
    assert_eq!(location(&c, "db-0"), None);
    // The label comes: the next attempt writes the Location.
    c.kubectl(&["label", "node", "late-a", "nethouse.io/network-zone=z1"])
        .unwrap();
    c.wait_for("db-0's Location", Duration::from_secs(60), |c| {
        (location(c, "db-0")? == "192.0.2.10 z1 late-a Running").then_some(())
    })
    .unwrap();

    // Another one, and kube-apiserver goes away just as its write becomes possible: the
    // attempts in the outage fail, one after it lands.
    node(&c, "late-b", None);
    let failed = writes("zone_unknown");
    running_fixed_pod(&c, "db-1", "late-b", "192.0.2.11");
    // Its attempts come at 0, 0.5 and 1.5 s, the next at 3.5 s: label it right after the third.
    wait("db-1's first attempts", Duration::from_secs(30), || {
        writes("zone_unknown") >= failed + 3
    });
    c.kubectl(&["label", "node", "late-b", "nethouse.io/network-zone=z1"])
        .unwrap();
    wait(
        "the extender to see late-b's zone",
        Duration::from_secs(10),
        || view.node_zone("late-b").flatten().is_some(),
    );
    let api_failures = writes("api");
    c.restart_apiserver(|_| {
        std::thread::sleep(Duration::from_secs(8));
        Ok(())
    })
    .unwrap();
    assert!(
        writes("api") > api_failures,
        "an attempt during the outage failed and was retried"
    );
    c.wait_for(
        "db-1's Location after the restart",
        Duration::from_secs(60),
        |c| (location(c, "db-1")? == "192.0.2.11 z1 late-b Running").then_some(()),
    )
    .unwrap();
    assert!(writes("written") >= 2);
}
