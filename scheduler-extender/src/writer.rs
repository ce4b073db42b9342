//! Creates and updates the Location of every fixed pod once it runs: its IPs (from the pod
//! status, which the runtime filled from NetHouse), the zone of its node, the node, phase
//! Running, the owning StatefulSet, and the finalizer `nethouse.io/release-ip`.
//!
//! The window "NetHouse holds a lease but no Location exists yet" (between CNI ADD and this
//! writer seeing the Running pod) is closed from both sides: in it, the pod's node already pins
//! the lease's zone, a recreated pod can only get the IP in that zone (NetHouse refuses another
//! zone with `wrong_zone`, so a misplaced pod fails visibly and is rescheduled), and the location
//! controller's reconciliation creates the Location of any fixed lease that has none.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use nethouse_api::location::{FINALIZER, FIXED_IP_ANNOTATION, Location};
use serde_json::json;

use crate::index::{Index, View};

const MANAGER: &str = "nethouse-scheduler-extender";

/// What was last written for a pod, to write only on change.
type Written = HashMap<String, (Vec<String>, String)>;

fn fixed(p: &Pod) -> bool {
    p.annotations()
        .get(FIXED_IP_ANNOTATION)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

async fn write(
    client: &kube::Client,
    index: &Arc<RwLock<Index>>,
    cluster: &str,
    pod: &Pod,
    written: &mut Written,
) -> anyhow::Result<()> {
    let (Some(ns), name) = (pod.namespace(), pod.name_any()) else {
        return Ok(());
    };
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    let ips: Vec<String> = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ips.as_ref())
        .map(|ips| ips.iter().map(|i| i.ip.clone()).collect())
        .unwrap_or_default();
    if node.is_empty() || ips.is_empty() || pod.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let key = format!("{ns}/{name}");
    if written
        .get(&key)
        .is_some_and(|(i, n)| *i == ips && *n == node)
    {
        return Ok(());
    }
    let Some(Some(zone)) = index.node_zone(&node) else {
        anyhow::bail!("node {node} of {key} has no known zone yet");
    };
    let owner = pod
        .owner_references()
        .iter()
        .find(|o| o.kind == "StatefulSet" && o.controller == Some(true))
        .cloned();
    let mut meta = json!({"name": name, "namespace": ns, "finalizers": [FINALIZER]});
    if let Some(o) = &owner {
        meta["ownerReferences"] =
            json!([{"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid}]);
    }
    let location = json!({
        "apiVersion": "nethouse.io/v1alpha1", "kind": "Location",
        "metadata": meta,
        "spec": {"ips": ips, "zone": &*zone, "cluster": cluster, "statefulset": owner.as_ref().map(|o| o.name.clone())}
    });
    let api: Api<Location> = Api::namespaced(client.clone(), &ns);
    let pp = PatchParams::apply(MANAGER).force();
    api.patch(&name, &pp, &Patch::Apply(location)).await?;
    let status = json!({
        "apiVersion": "nethouse.io/v1alpha1", "kind": "Location",
        "status": {"node": node, "phase": "Running", "message": format!("pod {key} runs on {node}")}
    });
    api.patch_status(&name, &pp, &Patch::Apply(status)).await?;
    tracing::info!(pod = %key, node = %node, zone = %zone, ips = ?ips, "location written");
    written.insert(key, (ips, node));
    Ok(())
}

/// Watches pods and writes Locations until aborted.
pub async fn run(client: kube::Client, index: Arc<RwLock<Index>>, cluster: String) {
    let pods: Api<Pod> = Api::all(client.clone());
    let mut stream = watcher::watcher(pods, watcher::Config::default()).boxed();
    let mut written = Written::new();
    loop {
        match stream.try_next().await {
            Ok(Some(Event::Apply(p) | Event::InitApply(p))) if fixed(&p) => {
                if let Err(e) = write(&client, &index, &cluster, &p, &mut written).await {
                    tracing::warn!(pod = %p.name_any(), error = %e, "writing location failed");
                }
            }
            Ok(Some(Event::Delete(p))) => {
                written.remove(&format!(
                    "{}/{}",
                    p.namespace().unwrap_or_default(),
                    p.name_any()
                ));
            }
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "pod watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
