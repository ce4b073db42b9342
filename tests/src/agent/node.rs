//! A Node object and its heartbeats (the Lease the node-lifecycle controller watches, and the
//! Ready condition), the way a kubelet keeps them.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use nethouse_api::contract::ZONE_LABEL;
use serde_json::json;

use super::time::now_rfc3339;

const MANAGER: &str = "nethouse-node-agent";
const LEASE_SECONDS: i32 = 40;

fn status(name: &str) -> serde_json::Value {
    let now = now_rfc3339();
    let resources = json!({"cpu": "16", "memory": "64Gi", "pods": "250"});
    json!({
        "apiVersion": "v1", "kind": "Node",
        "status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "nethouse node agent is posting ready status",
                "lastHeartbeatTime": now, "lastTransitionTime": now
            }],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "nethouse-sim",
                "containerRuntimeVersion": "nethouse-sim://1", "kubeletVersion": "v1.35.8", "kubeProxyVersion": "",
                "operatingSystem": "linux", "architecture": "amd64"
            }
        }
    })
}

pub async fn register(client: &kube::Client, name: &str, zone: &str) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let pp = PatchParams::apply(MANAGER).force();
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            ZONE_LABEL: zone, "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"
        }}
    });
    nodes.patch(name, &pp, &Patch::Apply(node)).await?;
    nodes
        .patch_status(name, &pp, &Patch::Apply(status(name)))
        .await?;
    renew_lease(client, name).await?;
    Ok(())
}

async fn renew_lease(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let renew = now_rfc3339().replace('Z', ".000000Z");
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": renew}
    });
    leases
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(lease),
        )
        .await?;
    Ok(())
}

/// Renews the Lease every 2 s and the Ready condition every 10 s, until aborted (a killed node).
pub async fn heartbeat(client: kube::Client, name: String) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut tick = 0u64;
    loop {
        if let Err(e) = renew_lease(&client, &name).await {
            tracing::warn!(node = %name, error = %e, "lease renewal failed");
        }
        if tick.is_multiple_of(5)
            && let Err(e) = nodes
                .patch_status(
                    &name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(status(&name)),
                )
                .await
        {
            tracing::warn!(node = %name, error = %e, "node status update failed");
        }
        tick += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
