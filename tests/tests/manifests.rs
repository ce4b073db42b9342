//! `manifests/` on the real apiserver: server-side dry-run, then a real apply, so a CRD schema
//! the apiserver rejects fails the build; then what operators see: `kubectl explain` and the
//! `kubectl get loc` columns.

use std::time::Duration;

use nethouse_e2e::cluster::{Cluster, ClusterOptions};

const LOCATION: &str = r#"
apiVersion: nethouse.io/v1alpha1
kind: Location
metadata: {name: redis-0, namespace: default}
spec: {ips: ["10.9.0.7"], zone: z1, cluster: default, statefulset: redis}
"#;

#[test]
fn manifests_apply_and_locations_read_well() {
    let mut cluster = Cluster::start(ClusterOptions::default()).expect("control plane");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests");
    // A dry-run creates no Namespace, so nothing inside the base's own could be admitted.
    cluster
        .kubectl(&["create", "namespace", "nethouse-system"])
        .unwrap();
    cluster
        .kubectl(&["apply", "-k", dir, "--server-side", "--dry-run=server"])
        .unwrap();
    cluster
        .kubectl(&["apply", "-k", dir, "--server-side"])
        .unwrap();
    cluster
        .wait_for(
            "the Location CRD to be established",
            Duration::from_secs(30),
            |c| {
                c.kubectl(&[
                    "wait",
                    "--for=condition=Established",
                    "crd/locations.nethouse.io",
                    "--timeout=5s",
                ])
                .ok()
            },
        )
        .unwrap();

    // The apiserver publishes the new schema to discovery and OpenAPI a moment after.
    let explain = cluster
        .wait_for(
            "the Location schema in OpenAPI",
            Duration::from_secs(60),
            |c| c.kubectl(&["explain", "location.spec"]).ok(),
        )
        .unwrap();
    assert!(
        explain.contains("network zone where the IPs live"),
        "{explain}"
    );

    cluster
        .kubectl_stdin(&["apply", "-f", "-"], Some(LOCATION))
        .unwrap();
    cluster
        .kubectl_stdin(
            &[
                "patch",
                "loc",
                "redis-0",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"node":"z1-a","phase":"Running"}}"#,
            ],
            None,
        )
        .unwrap();
    let table = cluster.kubectl(&["get", "loc"]).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        vec!["NAME", "IP", "ZONE", "NODE", "PHASE", "AGE"],
        "{table}"
    );
    let row = table.lines().nth(1).unwrap();
    for cell in ["redis-0", "10.9.0.7", "z1", "z1-a", "Running"] {
        assert!(row.contains(cell), "{table}");
    }
    // The schema is enforced: a Location without a zone is refused.
    let bad = LOCATION.replace("zone: z1, ", "");
    let refused = cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&bad.replace("redis-0", "redis-1")),
    );
    assert!(
        refused.is_err_and(|e| e.to_string().contains("zone")),
        "a Location without zone must be refused"
    );
}
