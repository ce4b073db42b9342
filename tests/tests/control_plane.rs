//! The harness brings up a real control plane: the apiserver answers with RBAC on, the real
//! StatefulSet controller creates pods, the real scheduler reports it cannot place them (no
//! nodes yet), and stopping leaves no process behind.

use std::time::Duration;

use nethouse_e2e::cluster::{Cluster, ClusterOptions};

const STS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: redis, namespace: default}
spec:
  serviceName: redis
  replicas: 2
  selector: {matchLabels: {app: redis}}
  template:
    metadata:
      labels: {app: redis}
      annotations: {nethouse.io/fixed-ip: "true"}
    spec:
      containers: [{name: redis, image: redis:7}]
"#;

#[test]
fn control_plane_comes_up_runs_controllers_and_stops_cleanly() {
    let mut cluster = Cluster::start(ClusterOptions::default()).expect("control plane starts");
    assert_eq!(
        cluster
            .kubectl(&["get", "--raw", "/readyz"])
            .unwrap()
            .trim(),
        "ok"
    );
    let version = cluster.kubectl(&["version", "-o", "json"]).unwrap();
    assert!(version.contains("\"gitVersion\": \"v1.35"), "{version}");

    // RBAC is on: a pod's default service account may not read secrets.
    let denied = cluster.kubectl(&[
        "auth",
        "can-i",
        "list",
        "secrets",
        "--as=system:serviceaccount:default:default",
    ]);
    assert!(denied.is_err(), "RBAC must deny: {denied:?}");

    // The real StatefulSet controller creates redis-0; the real scheduler cannot place it.
    cluster
        .kubectl_stdin(&["apply", "-f", "-"], Some(STS))
        .unwrap();
    cluster
        .wait_for("redis-0 to be created", Duration::from_secs(60), |c| {
            c.kubectl(&["get", "pod", "redis-0", "-o", "name"]).ok()
        })
        .unwrap();
    let reason = cluster
        .wait_for("a FailedScheduling event", Duration::from_secs(60), |c| {
            let ev = c
                .kubectl(&[
                    "get",
                    "events",
                    "--field-selector",
                    "reason=FailedScheduling,involvedObject.name=redis-0",
                    "-o",
                    "jsonpath={.items[*].message}",
                ])
                .ok()?;
            (!ev.is_empty()).then_some(ev)
        })
        .unwrap();
    assert!(
        reason.contains("no nodes available") || reason.contains("0/0 nodes"),
        "{reason}"
    );

    let pids = cluster.pids();
    drop(cluster);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid),
            "process {pid} left behind"
        );
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}
