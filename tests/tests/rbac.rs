//! Least privilege of `manifests/`, on the real apiserver: the base is applied server-side, then
//! `kubectl auth can-i --list` is asked as each component's ServiceAccount. What remains after
//! dropping what every authenticated user gets must be EXACTLY the set written here: a
//! permission added to `manifests/base/rbac.yaml` without updating this test fails, and so does one
//! taken away. (No kubelet runs the pods; only the RBAC objects matter here.)

use std::collections::{BTreeMap, BTreeSet};

use nethouse_e2e::cluster::{Cluster, ClusterOptions};

const NS: &str = "nethouse-system";

/// `resource` (with `[names]` when the rule names objects) → verbs.
type Perms = BTreeMap<String, BTreeSet<String>>;

/// Rules every authenticated user gets (system:basic-user and friends).
const EVERYONE: &[&str] = &[
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
    "selfsubjectreviews.authentication.k8s.io",
];

/// Parses the table of `kubectl auth can-i --list` (columns Resources, Non-Resource URLs,
/// Resource Names, Verbs, aligned by kubectl's tabwriter). Non-resource URL rows and
/// [`EVERYONE`]'s rows are dropped; several rules for one resource are merged.
fn parse_can_i(table: &str) -> Perms {
    let mut lines = table.lines();
    let header = lines.next().expect("a header line");
    let col = |name: &str| {
        header
            .find(name)
            .unwrap_or_else(|| panic!("no {name:?} column in {header:?}"))
    };
    let (urls, names, verbs) = (
        col("Non-Resource URLs"),
        col("Resource Names"),
        col("Verbs"),
    );
    assert!(header.starts_with("Resources") && urls < names && names < verbs);
    let cell = |line: &str, from: usize, to: usize| -> String {
        let to = to.min(line.len());
        line.get(from.min(to)..to).unwrap_or("").trim().to_string()
    };
    let mut perms = Perms::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let resource = cell(line, 0, urls);
        if resource.is_empty() || EVERYONE.contains(&resource.as_str()) {
            continue; // a non-resource URL rule, or what everyone may do
        }
        let names = cell(line, names, verbs);
        let key = if names == "[]" {
            resource
        } else {
            format!("{resource}{names}")
        };
        let verbs = cell(line, verbs, usize::MAX);
        let verbs = verbs
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or_else(|| panic!("verbs cell {verbs:?} in {line:?}"));
        perms
            .entry(key)
            .or_default()
            .extend(verbs.split_whitespace().map(str::to_string));
    }
    perms
}

fn perms(spec: &[(&str, &[&str])]) -> Perms {
    spec.iter()
        .map(|(r, v)| (r.to_string(), v.iter().map(|s| s.to_string()).collect()))
        .collect()
}

fn can_i_list(c: &Cluster, sa: &str, ns: &str) -> Perms {
    let table = c
        .kubectl(&[
            "auth",
            "can-i",
            "--list",
            &format!("--as=system:serviceaccount:{NS}:{sa}"),
            "-n",
            ns,
        ])
        .unwrap();
    eprintln!("--- {sa} in {ns}:\n{table}");
    parse_can_i(&table)
}

/// `kubectl auth can-i VERB RESOURCE ...` as `sa`: exit 0 "yes", exit 1 "no"; anything else fails.
fn can_i(c: &Cluster, sa: &str, args: &[&str]) -> bool {
    let out = std::process::Command::new(c.bin.kubectl())
        .arg(format!("--kubeconfig={}", c.kubeconfig.display()))
        .args(["auth", "can-i"])
        .args(args)
        .arg(format!("--as=system:serviceaccount:{NS}:{sa}"))
        .output()
        .expect("running kubectl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    match (out.status.code(), stdout.split_whitespace().next()) {
        (Some(0), Some("yes")) => true,
        (Some(1), Some("no")) => false,
        _ => panic!(
            "kubectl auth can-i {} as {sa}: {:?} {stdout} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn parses_the_can_i_table() {
    let table = "\
Resources                                       Non-Resource URLs   Resource Names         Verbs
selfsubjectreviews.authentication.k8s.io        []                  []                     [create]
leases.coordination.k8s.io                      []                  [nethouse-scheduler]   [get update]
leases.coordination.k8s.io                      []                  []                     [create]
nodes                                           []                  []                     [list watch]
nodes                                           []                  []                     [get]
                                                [/api/*]            []                     [get]
";
    assert_eq!(
        parse_can_i(table),
        perms(&[
            ("leases.coordination.k8s.io", &["create"]),
            (
                "leases.coordination.k8s.io[nethouse-scheduler]",
                &["get", "update"]
            ),
            ("nodes", &["get", "list", "watch"]),
        ])
    );
}

#[test]
fn every_service_account_has_exactly_its_permissions() {
    let cluster = Cluster::start(ClusterOptions::default()).expect("control plane");
    // The whole base, whatever stack::apply_manifests applies for the other tests.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests");
    cluster
        .kubectl(&["apply", "-k", dir, "--server-side"])
        .unwrap();
    let c = &cluster;

    // NetHouse asks the Kubernetes API one thing: which node a node token is (TokenReview).
    // Its ServiceAccount mounts no token by default; NetHouse's pod asks for it.
    let nethouse = perms(&[("tokenreviews.authentication.k8s.io", &["create"])]);
    for ns in [NS, "default"] {
        assert_eq!(can_i_list(c, "nethouse", ns), nethouse, "nethouse in {ns}");
    }
    let automount = c
        .kubectl(&[
            "get",
            "serviceaccount",
            "nethouse",
            "-n",
            NS,
            "-o",
            "jsonpath={.automountServiceAccountToken}",
        ])
        .unwrap();
    assert_eq!(automount.trim(), "false");

    // The CNI install reads its node's zone label, nothing else.
    let cni = perms(&[("nodes", &["get"])]);
    for ns in [NS, "default"] {
        assert_eq!(
            can_i_list(c, "nethouse-cni", ns),
            cni,
            "nethouse-cni in {ns}"
        );
    }

    // The extender: watch caches, and Locations written by server-side apply.
    let extender = perms(&[
        ("nodes", &["list", "watch"]),
        ("pods", &["list", "watch"]),
        (
            "locations.nethouse.io",
            &["create", "list", "patch", "watch"],
        ),
        ("locations.nethouse.io/status", &["patch"]),
    ]);
    for ns in [NS, "default"] {
        assert_eq!(
            can_i_list(c, "nethouse-scheduler-extender", ns),
            extender,
            "nethouse-scheduler-extender in {ns}"
        );
    }

    // The location controller; its leader-election Lease only in its own namespace.
    let mut controller = perms(&[
        (
            "locations.nethouse.io",
            &["delete", "list", "patch", "watch"],
        ),
        ("locations.nethouse.io/status", &["patch"]),
        ("pods", &["get", "list", "watch"]),
        ("statefulsets.apps", &["list", "watch"]),
        ("events.events.k8s.io", &["create", "patch"]),
    ]);
    assert_eq!(
        can_i_list(c, "nethouse-location-controller", "default"),
        controller,
        "nethouse-location-controller in default"
    );
    controller.extend(perms(&[(
        "leases.coordination.k8s.io",
        &["create", "get", "patch"],
    )]));
    assert_eq!(
        can_i_list(c, "nethouse-location-controller", NS),
        controller,
        "nethouse-location-controller in {NS}"
    );

    // The second kube-scheduler: the built-in roles (not listed here), plus its own Lease in
    // its namespace — and nothing at all on Locations.
    let lease = "leases.coordination.k8s.io[nethouse-scheduler]";
    let home = can_i_list(c, "nethouse-scheduler", NS);
    assert_eq!(
        home.get(lease),
        Some(&["get", "update"].iter().map(|s| s.to_string()).collect()),
        "nethouse-scheduler's Lease in {NS}: {home:?}"
    );
    assert!(
        home.get("leases.coordination.k8s.io")
            .is_some_and(|v| v.contains("create")),
        "{home:?}"
    );
    let elsewhere = can_i_list(c, "nethouse-scheduler", "default");
    assert!(!elsewhere.contains_key(lease), "{elsewhere:?}");
    for p in [&home, &elsewhere] {
        assert!(
            p.keys().all(|r| !r.starts_with("locations.nethouse.io")),
            "nethouse-scheduler may touch Locations: {p:?}"
        );
    }
    // The built-in bindings took effect: binding pods, volume scheduling, delegated authn.
    let sched = "nethouse-scheduler";
    assert!(can_i(
        c,
        sched,
        &["create", "pods", "--subresource=binding", "-n", "default"]
    ));
    assert!(can_i(c, sched, &["update", "persistentvolumes"]));
    assert!(can_i(
        c,
        sched,
        &[
            "get",
            "configmaps/extension-apiserver-authentication",
            "-n",
            "kube-system"
        ]
    ));
    assert!(can_i(
        c,
        sched,
        &["update", "leases/nethouse-scheduler", "-n", NS]
    ));
    assert!(!can_i(
        c,
        sched,
        &["update", "leases/nethouse-scheduler", "-n", "default"]
    ));
    assert!(!can_i(
        c,
        sched,
        &["get", "locations.nethouse.io", "-n", "default"]
    ));
    // A few refusals spelled out, so a broken parser cannot make the sets above pass by luck.
    assert!(!can_i(c, "nethouse-scheduler-extender", &["get", "nodes"]));
    assert!(!can_i(c, "nethouse-cni", &["list", "nodes"]));
    assert!(!can_i(c, "nethouse", &["get", "nodes"]));
    assert!(!can_i(
        c,
        "nethouse-location-controller",
        &["get", "leases", "-n", "default"]
    ));
}
