//! Pieces every end-to-end scenario (tests, demo, bench) assembles: a NetHouse in this process,
//! a kube client for the harness's cluster, a node agent wired to nethouse-cni, StatefulSet
//! manifests, and the questions asked of the cluster while waiting.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use nethouse::server::running::{Running, ServerOptions, start};
use nethouse_api::{Client, ClientConfig, SubnetSpec};

use crate::agent::{Agent, AgentConfig};
use crate::binaries::workspace_bin;
use crate::cluster::Cluster;

/// The runtime the scenarios drive NetHouse, the agent and kube clients with.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A NetHouse on loopback (embedded store under `dir`) with one subnet per `(zone, cidr)`.
pub async fn local_nethouse(
    dir: &Path,
    cooldown: Duration,
    subnets: &[(&str, &str)],
) -> anyhow::Result<(Running, Client)> {
    let mut opts = ServerOptions::local(dir.join("nethouse"));
    opts.default_cooldown = cooldown;
    let running = start(opts).await?;
    let client = Client::new(ClientConfig::new(running.url()))?;
    for (zone, cidr) in subnets {
        client
            .add_subnet(&SubnetSpec {
                zone: zone.to_string(),
                cidr: cidr.to_string(),
                ..Default::default()
            })
            .await?;
    }
    Ok((running, client))
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

/// `kubectl apply -k manifests/` (server-side) and waits until Locations can be listed.
pub fn apply_manifests(c: &mut Cluster) -> anyhow::Result<()> {
    c.kubectl(&[
        "apply",
        "-k",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests"),
        "--server-side",
    ])?;
    c.wait_for("the Location CRD", Duration::from_secs(30), |c| {
        c.kubectl(&["get", "loc"]).ok()
    })?;
    Ok(())
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
