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

    node_credentials_fit_together(&cluster);
    install_command_parses(&cluster);
    ha_overlay_replaces_the_single_replica(&cluster);

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

/// The DaemonSet's init container runs a command line the install accepts (it once wrote
/// `--flag=value`, which the install refused on every node).
fn install_command_parses(c: &Cluster) {
    let out = c
        .kubectl(&[
            "get",
            "daemonset/nethouse-cni",
            "-n",
            "nethouse-system",
            "-o",
            "jsonpath={.spec.template.spec.initContainers[0].command}",
        ])
        .unwrap();
    let command: Vec<String> = serde_json::from_str(&out).unwrap();
    assert_eq!(command[..2], ["nethouse-cni", "install"], "{command:?}");
    let env = |k: &str| (k == "NODE_NAME").then(|| "node-1".to_string());
    let args = nethouse_cni::install::parse_args(&command[2..], &env)
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(args.resolve_servers, "{args:?}");
    assert_eq!(args.zone, nethouse_cni::install::ZoneSource::FromNode);
}

/// The node credential's way through the base: the DaemonSet projects its ServiceAccount token
/// for NetHouse's audience, its main container keeps it where the conflist's `tokenFile` points
/// on the host, and NetHouse reviews such tokens (its default audience is `nethouse`).
fn node_credentials_fit_together(c: &Cluster) {
    let get = |what: &str| -> serde_json::Value {
        let out = c
            .kubectl(&["get", what, "-n", "nethouse-system", "-o", "json"])
            .unwrap();
        serde_json::from_str(&out).unwrap()
    };
    let ds = get("daemonset/nethouse-cni");
    let pod = &ds["spec"]["template"]["spec"];
    let volumes = pod["volumes"].as_array().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap();
    let token = volume("credentials")["projected"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|s| s.get("serviceAccountToken"))
        .expect("a projected ServiceAccount token");
    assert_eq!(token["audience"], "nethouse", "{token}");
    assert_eq!(token["expirationSeconds"], 3600, "{token}");
    assert_eq!(token["path"], "node.token", "{token}");
    assert_eq!(
        volume("host-credentials")["hostPath"]["path"],
        "/etc/nethouse-cni"
    );
    let keep: Vec<&str> = pod["containers"][0]["command"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        keep,
        [
            "nethouse-cni",
            "install",
            "--keep-token",
            "/etc/nethouse-cni/credentials/node.token",
            "/host/etc/nethouse-cni/node.token"
        ]
    );
    for template in ["bridge", "macvlan"] {
        let path = format!(
            "{}/../manifests/base/cni/{template}.conflist.tmpl",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(r#""tokenFile": "/etc/nethouse-cni/node.token""#),
            "{path}"
        );
    }
    let sts = get("statefulset/nethouse");
    let nethouse = &sts["spec"]["template"]["spec"];
    assert_eq!(nethouse["automountServiceAccountToken"], true);
    let args = nethouse["containers"][0]["args"].to_string();
    assert!(
        args.contains("--node-token-review")
            && args.contains("--node-service-account=nethouse-system/nethouse-cni"),
        "{args}"
    );
}

/// `manifests/ha/` on top of the applied base: admitted by the apiserver (server-side dry-run);
/// NetHouse a Deployment of 3 replicas, one per node, on etcd, with its PodDisruptionBudget; no
/// StatefulSet or volume of the single replica left in what it renders.
fn ha_overlay_replaces_the_single_replica(cluster: &Cluster) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/ha");
    cluster
        .kubectl(&[
            "apply",
            "-k",
            dir,
            "--server-side",
            "--dry-run=server",
            "--force-conflicts",
        ])
        .unwrap();
    let rendered = cluster.kubectl(&["kustomize", dir]).unwrap();
    let docs: Vec<serde_json::Value> = rendered
        .split("\n---\n")
        .map(|d| {
            let json = cluster
                .kubectl_stdin(
                    &["create", "--dry-run=client", "-o", "json", "-f", "-"],
                    Some(d),
                )
                .unwrap();
            serde_json::from_str(&json).unwrap()
        })
        .collect();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .cloned()
    };
    assert!(
        find("StatefulSet", "nethouse").is_none(),
        "the single replica is still there"
    );
    assert!(find("Service", "nethouse-headless").is_none());
    let d = find("Deployment", "nethouse").expect("the nethouse Deployment");
    assert_eq!(d["spec"]["replicas"], 3);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    let args: Vec<&str> = pod["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(args.contains(&"--store=etcd"), "{args:?}");
    assert!(
        args.contains(&"--etcd-endpoints=$(ETCD_ENDPOINTS)"),
        "{args:?}"
    );
    let anti =
        &pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
    let pdb = find("PodDisruptionBudget", "nethouse").expect("the PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 2);
    // The Service the clients use selects the Deployment's pods.
    let svc = find("Service", "nethouse").expect("the nethouse Service");
    assert_eq!(
        svc["spec"]["selector"]["app.kubernetes.io/name"],
        d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
    );
}
