//! Runs the pods bound to one node: sandbox + Running status for new pods, CNI DEL and
//! finalization for pods being deleted, teardown for sandboxes whose pod is gone.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

use super::Sandboxes;
use super::cni::CniRunner;
use super::time::now_rfc3339;

/// How often the node looks at its pods (a kubelet reacts to a watch; polling keeps this small).
const RESYNC: Duration = Duration::from_millis(250);
/// Before retrying a pod whose sandbox could not be set up.
const RETRY: Duration = Duration::from_secs(2);

pub async fn run(client: kube::Client, node: String, cni: CniRunner, sandboxes: Sandboxes) {
    let pods: Api<Pod> = Api::all(client.clone());
    let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let mut retry_after: HashMap<String, Instant> = HashMap::new();
    loop {
        match pods.list(&params).await {
            Ok(list) => {
                reconcile(
                    &client,
                    &node,
                    &cni,
                    &sandboxes,
                    list.items,
                    &mut retry_after,
                )
                .await
            }
            Err(e) => tracing::warn!(node = %node, error = %e, "listing pods failed"),
        }
        tokio::time::sleep(RESYNC).await;
    }
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

fn take(sandboxes: &Sandboxes, uid: &str) -> Option<super::Sandbox> {
    sandboxes.lock().ok()?.remove(uid)
}

fn has(sandboxes: &Sandboxes, uid: &str) -> bool {
    sandboxes.lock().is_ok_and(|s| s.contains_key(uid))
}

async fn reconcile(
    client: &kube::Client,
    node: &str,
    cni: &CniRunner,
    sandboxes: &Sandboxes,
    pods: Vec<Pod>,
    retry_after: &mut HashMap<String, Instant>,
) {
    // Sandboxes whose pod object is gone (force-deleted, or deleted while this node was down).
    let live: HashSet<String> = pods.iter().map(uid).collect();
    let orphans: Vec<String> = sandboxes
        .lock()
        .map(|s| s.keys().filter(|u| !live.contains(*u)).cloned().collect())
        .unwrap_or_default();
    for u in orphans {
        if let Some(sb) = take(sandboxes, &u) {
            teardown(node, cni, sandboxes, sb).await;
        }
    }
    for pod in pods {
        let u = uid(&pod);
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if pod.metadata.deletion_timestamp.is_some() {
            if let Some(sb) = take(sandboxes, &u)
                && !teardown(node, cni, sandboxes, sb).await
            {
                continue;
            }
            // Containers are gone and the network is released: finalize, as kubelet does.
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(u.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            if let Err(e) = api.delete(&name, &dp).await {
                tracing::debug!(pod = %name, error = %e, "finalizing pod");
            }
            continue;
        }
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if terminal
            || has(sandboxes, &u)
            || retry_after.get(&u).is_some_and(|t| Instant::now() < *t)
        {
            continue;
        }
        match cni.add(&pod).await {
            Ok(sb) => {
                retry_after.remove(&u);
                let ips = sb.ips.clone();
                if let Ok(mut s) = sandboxes.lock() {
                    s.insert(u.clone(), sb);
                }
                if let Err(e) = report_running(&api, &pod, &ips).await {
                    tracing::warn!(pod = %name, error = %e, "reporting Running failed");
                }
                tracing::info!(node, pod = %format!("{ns}/{name}"), ips = ?ips, "pod running");
            }
            Err(e) => {
                retry_after.insert(u, Instant::now() + RETRY);
                tracing::warn!(node, pod = %format!("{ns}/{name}"), error = %e, "sandbox failed");
                event(client, &pod, node, "FailedCreatePodSandBox", &e.to_string()).await;
            }
        }
    }
}

/// CNI DEL and namespace removal; on failure the sandbox goes back for a retry.
async fn teardown(node: &str, cni: &CniRunner, sandboxes: &Sandboxes, sb: super::Sandbox) -> bool {
    match cni.del(&sb).await {
        Ok(()) => {
            tracing::info!(node, pod = %sb.pod, "sandbox removed");
            true
        }
        Err(e) => {
            tracing::warn!(node, pod = %sb.pod, error = %e, "CNI DEL failed; will retry");
            if let Ok(mut s) = sandboxes.lock() {
                s.insert(sb.uid.clone(), sb);
            }
            false
        }
    }
}

async fn report_running(api: &Api<Pod>, pod: &Pod, ips: &[String]) -> anyhow::Result<()> {
    let now = now_rfc3339();
    let containers: Vec<serde_json::Value> = pod
        .spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| {
                    json!({"name": c.name, "image": c.image.clone().unwrap_or_default(), "imageID": "",
                           "ready": true, "started": true, "restartCount": 0,
                           "state": {"running": {"startedAt": now}}})
                })
                .collect()
        })
        .unwrap_or_default();
    let condition = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
    let status = json!({"status": {
        "phase": "Running",
        "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": ips.first(),
        "podIPs": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
        "startTime": now,
        "conditions": [condition("PodScheduled"), condition("Initialized"), condition("ContainersReady"), condition("Ready")],
        "containerStatuses": containers
    }});
    let name = pod.metadata.name.clone().unwrap_or_default();
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
        .await?;
    Ok(())
}

async fn event(client: &kube::Client, pod: &Pod, node: &str, reason: &str, message: &str) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    let now = now_rfc3339();
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": format!("{}.", pod.metadata.name.clone().unwrap_or_default())},
        "involvedObject": {"kind": "Pod", "namespace": ns, "name": pod.metadata.name, "uid": pod.metadata.uid},
        "reason": reason, "message": message, "type": "Warning",
        "source": {"component": "kubelet", "host": node},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1
    });
    match serde_json::from_value(ev) {
        Ok(ev) => {
            if let Err(e) = events.create(&PostParams::default(), &ev).await {
                tracing::debug!(error = %e, "posting event");
            }
        }
        Err(e) => tracing::debug!(error = %e, "building event"),
    }
}
