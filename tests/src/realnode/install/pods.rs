//! The pods of the fixed-IP story on an install: a StatefulSet of fixed pods placed by the
//! shipped second scheduler, one ordinary client pod per zone to reach them from, and reading
//! back where each pod runs and with which IP.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::InstallStack;
use crate::cluster::Cluster;
use crate::realnode::images;

/// The StatefulSet's name and its pods' label `app`.
pub const STS: &str = "db";
/// Where the story runs.
pub const NAMESPACE: &str = "default";

/// A container that exits at once on SIGTERM (a shell as PID 1 ignores it otherwise).
const SLEEP: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

/// A Running pod: where it is and with which address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub uid: String,
    pub ip: String,
    pub node: String,
    pub zone: String,
}

/// Pod name → row.
pub type Rows = BTreeMap<String, Row>;

/// `replicas` fixed pods (`nethouse.io/fixed-ip: "true"`) on `nethouse-scheduler`, no
/// nodeSelector (the extender places them), with a retention for scale-downs.
pub fn statefulset(replicas: usize, retention: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: {STS}\n  namespace: {NAMESPACE}\n\
         \x20 annotations: {{nethouse.io/ip-retention: {retention:?}}}\n\
         spec:\n  serviceName: {STS}\n  replicas: {replicas}\n  podManagementPolicy: Parallel\n\
         \x20 selector: {{matchLabels: {{app: {STS}}}}}\n  template:\n    metadata:\n      labels: {{app: {STS}}}\n\
         \x20     annotations: {{nethouse.io/fixed-ip: \"true\"}}\n    spec:\n      schedulerName: nethouse-scheduler\n\
         \x20     terminationGracePeriodSeconds: 2\n      automountServiceAccountToken: false\n      enableServiceLinks: false\n\
         \x20     containers:\n      - name: main\n        image: {image}\n        imagePullPolicy: Never\n\
         \x20       command: [\"sh\", \"-c\", {SLEEP:?}]\n",
        image = images::BUSYBOX,
    )
}

pub fn client_name(zone: &str) -> String {
    format!("client-{zone}")
}

/// An ordinary pod of `zone` (default scheduler) to reach the fixed pods from.
fn client(zone: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\n\
         spec:\n  nodeSelector: {{nethouse.io/network-zone: {zone}}}\n  terminationGracePeriodSeconds: 1\n\
         \x20 automountServiceAccountToken: false\n  enableServiceLinks: false\n\
         \x20 containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: Never\n\
         \x20   command: [\"sh\", \"-c\", {SLEEP:?}]\n",
        name = client_name(zone),
        image = images::BUSYBOX,
    )
}

/// (uid, IP, node) of a Running pod of [`NAMESPACE`].
pub fn running(c: &Cluster, pod: &str) -> Option<(String, String, String)> {
    let out = c
        .kubectl(&[
            "-n",
            NAMESPACE,
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.status.phase} {.metadata.uid} {.status.podIP} {.spec.nodeName}",
        ])
        .ok()?;
    let f: Vec<&str> = out.split_whitespace().collect();
    (f.len() == 4 && f[0] == "Running").then(|| (f[1].into(), f[2].into(), f[3].into()))
}

/// The row of `pod` once it runs with a UID other than `not_uid` (a recreated pod).
pub fn wait_row(
    s: &mut InstallStack,
    pod: &str,
    not_uid: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Row> {
    let (uid, ip, node) = s
        .cluster
        .wait_for(&format!("{pod} Running"), timeout, |c| {
            running(c, pod).filter(|(u, _, _)| Some(u.as_str()) != not_uid)
        })?;
    let zone = s.nodes.get(&node)?.zone.clone();
    Ok(Row {
        uid,
        ip,
        node,
        zone,
    })
}

/// Pods `STS-0 … STS-(replicas-1)`.
pub fn names(replicas: usize) -> Vec<String> {
    (0..replicas).map(|i| format!("{STS}-{i}")).collect()
}

/// Every client pod Running: created for a zone that has none (first call, or its node died
/// and took it).
pub fn ensure_clients(s: &mut InstallStack) -> anyhow::Result<()> {
    let zones: Vec<String> = s.fabric.zones.iter().map(|z| z.name.clone()).collect();
    for zone in &zones {
        let name = client_name(zone);
        let exists = s
            .cluster
            .kubectl(&["-n", NAMESPACE, "get", "pod", &name, "-o", "name"])
            .is_ok();
        if !exists {
            s.cluster
                .kubectl_stdin(&["create", "-f", "-"], Some(&client(zone)))?;
        }
    }
    for zone in &zones {
        wait_row(s, &client_name(zone), None, Duration::from_secs(90))?;
    }
    Ok(())
}

/// How long until `ip` answers a ping from the client pod of `zone` (ARP caches may still
/// name the pod's previous MAC for a moment), or the last error after `timeout`.
pub fn reach(c: &Cluster, zone: &str, ip: &str, timeout: Duration) -> anyhow::Result<Duration> {
    let t = Instant::now();
    loop {
        let r = c.kubectl(&[
            "-n",
            NAMESPACE,
            "exec",
            &client_name(zone),
            "--",
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            ip,
        ]);
        match r {
            Ok(_) => return Ok(t.elapsed()),
            Err(e) if t.elapsed() > timeout => {
                return Err(e.context(format!("{ip} from {} in {zone}", client_name(zone))));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
