//! Pieces every end-to-end scenario (tests, demo, bench) assembles: a NetHouse in this process,
//! a kube client for the harness's cluster, a node agent wired to nethouse-cni, StatefulSet
//! manifests, and the questions asked of the cluster while waiting.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use nethouse::server::running::{Running, start_local};
use nethouse_api::Client;

use crate::agent::{Agent, AgentConfig};
use crate::binaries::workspace_bin;
use crate::cluster::Cluster;

/// Logs of the in-process components on stderr, filtered by `RUST_LOG` (default: warnings).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .try_init();
}

/// The runtime the scenarios drive NetHouse, the agent and kube clients with.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Where the control-plane scenarios start: a NetHouse under `dir` with one subnet per
/// `(zone, cidr)` and a 10-minute cooldown (no released address comes back during a test), and
/// a control plane with the Location CRD applied.
pub fn nethouse_and_cluster(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    subnets: &[(&str, &str)],
) -> anyhow::Result<(Running, Client, Cluster)> {
    let (nethouse, nh) = rt.block_on(start_local(
        dir.join("nethouse"),
        Duration::from_secs(600),
        subnets,
    ))?;
    let mut cluster = Cluster::start(crate::cluster::ClusterOptions::default())?;
    apply_crd(&mut cluster)?;
    Ok((nethouse, nh, cluster))
}

pub async fn kube_client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(cfg)?)
}

/// A node agent whose nodes run pods through Debian's bridge + this workspace's nethouse-cni.
/// `tag` (2 letters) keeps its namespaces and bridges apart from other runs'.
pub fn agent(
    kube: kube::Client,
    nethouse_url: &str,
    cluster: &str,
    tag: &str,
) -> anyhow::Result<Agent> {
    let cni = workspace_bin("nethouse-cni")?;
    let dir = cni
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Ok(Agent::new(
        kube,
        AgentConfig {
            nethouse_urls: vec![nethouse_url.to_string()],
            nethouse_token_file: None,
            cni_path: format!("/usr/lib/cni:{dir}"),
            cluster: cluster.to_string(),
            prefix: format!("nh{tag}{}", std::process::id() % 1000),
        },
    ))
}

/// The scheduler extender (and its Location writer) in this process for `cluster`, on
/// `127.0.0.1:port`, reading zone capacity every second.
pub async fn extender(
    kube: kube::Client,
    nh: &Client,
    cluster: &str,
    port: u16,
) -> anyhow::Result<nethouse_scheduler_extender::Running> {
    nethouse_scheduler_extender::start(
        kube,
        nh.clone(),
        nethouse_scheduler_extender::Options {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            cluster: cluster.to_string(),
            zones_refresh: Duration::from_secs(1),
            tls: None,
            http: Default::default(),
            max_body: nethouse_scheduler_extender::server::DEFAULT_MAX_BODY,
            max_concurrent: nethouse_scheduler_extender::server::DEFAULT_MAX_CONCURRENT,
        },
    )
    .await
    .map_err(|e| anyhow::Error::new(e).context("starting the scheduler extender"))
}

/// The KubeSchedulerConfiguration users apply (`manifests/base/scheduler/`), written under `dir`
/// with its extender URL pointed at `127.0.0.1:port`.
pub fn scheduler_config(dir: &Path, port: u16) -> anyhow::Result<std::path::PathBuf> {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/base/scheduler/kube-scheduler-config.yaml"
    ))?;
    let path = dir.join("kube-scheduler-config.yaml");
    std::fs::write(
        &path,
        shipped.replace("http://127.0.0.1:8888", &format!("http://127.0.0.1:{port}")),
    )?;
    Ok(path)
}

/// The location controller in this process (no leader election) for `cluster`, with the
/// given default retention and a short reconciliation period.
pub fn location_controller(
    kube: kube::Client,
    nh: &Client,
    cluster: &str,
    default_retention: Duration,
) -> tokio::task::JoinHandle<()> {
    nethouse_location_controller::start(controller_context(kube, nh, cluster, default_retention))
}

pub fn controller_context(
    kube: kube::Client,
    nh: &Client,
    cluster: &str,
    default_retention: Duration,
) -> std::sync::Arc<nethouse_location_controller::Context> {
    nethouse_location_controller::Context::new(
        kube,
        nh.clone(),
        nethouse_location_controller::Options {
            cluster: cluster.to_string(),
            default_retention,
            orphan_grace: Duration::from_secs(5),
            sweep_every: Duration::from_secs(2),
            instance: None,
        },
    )
}

/// The `nethouse-location-controller` binary as its own process (leader election on a Lease in
/// `default`, 4 s lease), logging to `log`; killed with SIGKILL when the child is killed.
pub fn controller_process(
    kubeconfig: &Path,
    nethouse_url: &str,
    identity: &str,
    health_port: u16,
    log: &Path,
) -> anyhow::Result<std::process::Child> {
    let bin = workspace_bin("nethouse-location-controller")?;
    let out = std::fs::File::create(log)?;
    Ok(std::process::Command::new(bin)
        .args(["--kubeconfig", &kubeconfig.display().to_string()])
        .args(["--nethouse", nethouse_url, "--cluster", "e2e"])
        .args([
            "--identity",
            identity,
            "--leader-lease-namespace",
            "default",
        ])
        .args([
            "--leader-lease-duration",
            "4s",
            "--leader-renew-before",
            "2s",
        ])
        .args(["--sweep-interval", "2s", "--orphan-grace", "5s"])
        .args(["--health-listen", &format!("127.0.0.1:{health_port}")])
        .env("RUST_LOG", "info,kube_lease_manager=warn")
        .stdout(std::process::Stdio::null())
        .stderr(out)
        .spawn()?)
}

/// A StatefulSet `name` of fixed-IP pods labelled `app: name`; `zone` pins it with a
/// nodeSelector (for runs without the extender).
pub fn fixed_statefulset(name: &str, replicas: u32, zone: Option<&str>, parallel: bool) -> String {
    let selector = zone
        .map(|z| format!("      nodeSelector: {{nethouse.io/network-zone: {z}}}\n"))
        .unwrap_or_default();
    let policy = if parallel {
        "  podManagementPolicy: Parallel\n"
    } else {
        ""
    };
    format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  serviceName: {name}\n  replicas: {replicas}\n{policy}\
         \x20 selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n      annotations: {{nethouse.io/fixed-ip: \"true\"}}\n    spec:\n{selector}\
         \x20     terminationGracePeriodSeconds: 5\n      containers: [{{name: {name}, image: redis:7}}]\n"
    )
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRow {
    pub uid: String,
    pub node: String,
    pub ip: String,
}

/// Running pods with an IP matching `selector`, by name.
pub fn running_pods(c: &Cluster, selector: &str) -> BTreeMap<String, PodRow> {
    let out = c
        .kubectl(&[
            "get",
            "pods",
            "-l",
            selector,
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name} {.metadata.uid} {.spec.nodeName} {.status.phase} {.status.podIP}{"\n"}{end}"#,
        ])
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 5 && f[3] == "Running").then(|| {
                (
                    f[0].to_string(),
                    PodRow {
                        uid: f[1].to_string(),
                        node: f[2].to_string(),
                        ip: f[4].to_string(),
                    },
                )
            })
        })
        .collect()
}

/// Waits until `n` pods of `selector` run — with `replaced` (pod, old uid): that pod recreated.
pub fn wait_running(
    c: &mut Cluster,
    selector: &str,
    n: usize,
    replaced: Option<(&str, &str)>,
) -> anyhow::Result<BTreeMap<String, PodRow>> {
    c.wait_for(
        &format!("{n} pods of {selector} running"),
        Duration::from_secs(180),
        |c| {
            let pods = running_pods(c, selector);
            let fresh =
                replaced.is_none_or(|(pod, uid)| pods.get(pod).is_some_and(|r| r.uid != uid));
            (pods.len() == n && fresh).then_some(pods)
        },
    )
}

/// Waits until the control plane marks `node` NotReady (its heartbeats stopped).
pub fn wait_node_not_ready(c: &mut Cluster, node: &str) -> anyhow::Result<()> {
    c.wait_for(&format!("{node} NotReady"), Duration::from_secs(120), |c| {
        let s = c
            .kubectl(&[
                "get",
                "node",
                node,
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
            ])
            .ok()?;
        (s.trim() == "Unknown").then_some(())
    })
}

/// The Location CRD from `manifests/base/crd/` (server-side), and waits until Locations can be
/// listed. Scenarios run the components in-process; the full base (`kubectl apply -k
/// manifests/`, with its Deployments and DaemonSet) is what `manifests.rs` and `rbac.rs` test.
pub fn apply_crd(c: &mut Cluster) -> anyhow::Result<()> {
    c.kubectl(&[
        "apply",
        "-f",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../manifests/base/crd/location.yaml"
        ),
        "--server-side",
    ])?;
    c.wait_for("the Location CRD", Duration::from_secs(30), |c| {
        c.kubectl(&["get", "loc"]).ok()
    })?;
    Ok(())
}

/// Waits until the garbage collector collects Locations: it discovers a new resource type on
/// a 30 s period, so in a young cluster a Location whose owner is deleted may not be collected
/// yet. Probes with a ConfigMap owning a Location.
pub fn wait_gc_collects_locations(c: &mut Cluster) -> anyhow::Result<()> {
    c.kubectl(&["create", "configmap", "gc-probe"])?;
    let uid = c.kubectl(&["get", "cm", "gc-probe", "-o", "jsonpath={.metadata.uid}"])?;
    c.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: nethouse.io/v1alpha1\nkind: Location\nmetadata: {{name: gc-probe, namespace: default, \
             ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: gc-probe, uid: {}}}]}}\n\
             spec: {{ips: [\"192.0.2.1\"], zone: probe, cluster: probe}}\n",
            uid.trim()
        )),
    )?;
    c.kubectl(&["delete", "cm", "gc-probe"])?;
    c.wait_for(
        "the garbage collector to collect Locations",
        Duration::from_secs(90),
        |c| {
            c.kubectl(&["get", "loc", "gc-probe"])
                .is_err()
                .then_some(())
        },
    )
}

/// `n` fixed leases in `zone` and their Locations (finalizer included, as the writer makes
/// them) for pods `{prefix}-{i}` that do not exist: each one's release is due once deleted.
pub async fn orphan_locations(
    nh: &Client,
    c: &Cluster,
    zone: &str,
    cluster: &str,
    prefix: &str,
    n: usize,
) -> anyhow::Result<()> {
    let mut manifest = String::new();
    for i in 0..n {
        let lease = nh
            .allocate(&nethouse_api::AllocateRequest {
                zone: zone.into(),
                kind: nethouse_api::LeaseKind::Fixed,
                owner: Some(nethouse_api::Owner {
                    cluster: cluster.into(),
                    namespace: "default".into(),
                    pod: format!("{prefix}-{i}"),
                }),
                attachment: nethouse_api::Attachment {
                    container_id: format!("{prefix}{i}"),
                    ifname: "eth0".into(),
                    node: "gone".into(),
                },
            })
            .await?;
        manifest.push_str(&format!(
            "apiVersion: nethouse.io/v1alpha1\nkind: Location\nmetadata: {{name: {prefix}-{i}, namespace: default, finalizers: [nethouse.io/release-ip]}}\n\
             spec: {{ips: [\"{}\"], zone: {zone}, cluster: {cluster}}}\n---\n",
            lease.lease.ips[0].ip
        ));
    }
    c.kubectl_stdin(&["apply", "-f", "-"], Some(&manifest))?;
    Ok(())
}
