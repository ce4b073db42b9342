//! Waiting for workloads (DaemonSets, StatefulSets, Deployments) to be Ready, as `kubectl
//! rollout status` judges them, with what the pods and events said when they were not.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cluster::Cluster;

/// `kind/name` → (ready, desired), for every DaemonSet, StatefulSet and Deployment of
/// `namespace`.
pub fn counts(cluster: &Cluster, namespace: &str) -> anyhow::Result<Vec<(String, i64, i64)>> {
    let out = cluster.kubectl(&["-n", namespace, "get", "ds,sts,deploy", "-o", "json"])?;
    let list: Value = serde_json::from_str(&out).context("kubectl get ds,sts,deploy")?;
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    Ok(list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|w| {
            let kind = w["kind"].as_str().unwrap_or_default().to_lowercase();
            let name = w["metadata"]["name"].as_str().unwrap_or_default();
            let (ready, desired) = match kind.as_str() {
                "daemonset" => (
                    n(&w["status"]["numberReady"]),
                    n(&w["status"]["desiredNumberScheduled"]),
                ),
                _ => (n(&w["status"]["readyReplicas"]), n(&w["spec"]["replicas"])),
            };
            (format!("{kind}/{name}"), ready, desired)
        })
        .collect())
}

/// Waits until each of `wanted` (`kind/name`, lower case) exists with every replica Ready (at
/// least one); returns how long it took. On timeout the error shows the counts, the pods and
/// the latest events of `namespace`.
pub fn wait_ready(
    cluster: &mut Cluster,
    namespace: &str,
    wanted: &[&str],
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let now = counts(cluster, namespace)?;
        let ready = |w: &&str| now.iter().any(|(name, r, d)| name == w && *d > 0 && r == d);
        if wanted.iter().all(ready) {
            return Ok(start.elapsed());
        }
        cluster.check_alive()?;
        if start.elapsed() > timeout {
            bail!(
                "not Ready after {timeout:?}: {:?}\n{}",
                wanted.iter().filter(|w| !ready(w)).collect::<Vec<_>>(),
                describe(cluster, namespace)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Workload counts, pods and the latest events of `namespace`, for an error message.
pub fn describe(cluster: &Cluster, namespace: &str) -> String {
    let get = |args: &[&str]| {
        cluster
            .kubectl(args)
            .unwrap_or_else(|e| format!("({e:#})\n"))
    };
    let events = get(&["-n", namespace, "get", "events", "--sort-by=.lastTimestamp"]);
    let tail: Vec<&str> = events.lines().rev().take(25).collect();
    format!(
        "{}\n{}\nlatest events:\n{}\nlogs:\n{}",
        get(&["-n", namespace, "get", "ds,sts,deploy"]),
        get(&["-n", namespace, "get", "pods", "-o", "wide"]),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        logs(cluster, namespace)
    )
}

/// The last lines of every container (init containers too) of every pod of `namespace`; a
/// container that has not started yet has none.
fn logs(cluster: &Cluster, namespace: &str) -> String {
    let Ok(pods) = cluster.kubectl(&[
        "-n",
        namespace,
        "get",
        "pods",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name}{range .spec.initContainers[*]} {.name}{end}{range .spec.containers[*]} {.name}{end}{"\n"}{end}"#,
    ]) else {
        return String::new();
    };
    let mut out = String::new();
    for line in pods.lines() {
        let mut f = line.split_whitespace();
        let Some(pod) = f.next() else { continue };
        for c in f {
            if let Ok(text) = cluster.kubectl(&["-n", namespace, "logs", pod, "-c", c, "--tail=4"])
            {
                for l in text.lines() {
                    out.push_str(&format!("[{pod}/{c}] {l}\n"));
                }
            }
        }
    }
    out
}
