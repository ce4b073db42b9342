//! The `Location` custom resource (`locations.nethouse.io/v1alpha1`, short name `loc`): where a
//! fixed pod's IP lives. One per fixed pod, named after the pod, in the pod's namespace. The
//! scheduler extender keeps pods with a Location on nodes of its zone; the location controller
//! releases the IP through NetHouse only after the Location is deleted and the pod is truly gone.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::contract::{FINALIZER, FIXED_IP_ANNOTATION, RETENTION_ANNOTATION, ZONE_LABEL};

/// Where a fixed pod's IP lives.
// kube's documented form repeats `printcolumn(...)`; clippy reads the repeats as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "nethouse.io",
    version = "v1alpha1",
    kind = "Location",
    plural = "locations",
    singular = "location",
    shortname = "loc",
    namespaced,
    status = "LocationStatus",
    printcolumn(
        name = "IP",
        type_ = "string",
        json_path = ".spec.ips[*]",
        description = "Addresses NetHouse holds for the pod"
    ),
    printcolumn(
        name = "ZONE",
        type_ = "string",
        json_path = ".spec.zone",
        description = "Network zone where the IPs live"
    ),
    printcolumn(
        name = "NODE",
        type_ = "string",
        json_path = ".status.node",
        description = "Node the pod runs or last ran on"
    ),
    printcolumn(name = "PHASE", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LocationSpec {
    /// The pod's IP addresses (one per family), held for the pod by NetHouse.
    pub ips: Vec<String>,
    /// The network zone where the IPs live: the pod may only run on nodes labelled
    /// `nethouse.io/network-zone` with this value.
    pub zone: String,
    /// The cluster name that is part of the pod's identity in NetHouse.
    pub cluster: String,
    /// The StatefulSet that owns the pod, if any (its scale-down and deletion start the
    /// retention period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statefulset: Option<String>,
}

/// What happened to the Location most recently.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocationStatus {
    /// The node the pod runs on, or last ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `Pending` (IP held, pod not running), `Running`, `Retained` (pod gone, IP kept for the
    /// retention period), `Releasing` (being deleted, release pending), `LeaseLost` (NetHouse no
    /// longer holds the IP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<LocationPhase>,
    /// Human-readable detail of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the retention period of a retained Location ends (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_until: Option<String>,
    /// The retention period that applies (the StatefulSet's `nethouse.io/ip-retention`, else the
    /// controller's default), recorded so it still applies after the StatefulSet is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LocationPhase {
    Pending,
    Running,
    Retained,
    Releasing,
    LeaseLost,
}

/// The CRD as the YAML (JSON is YAML) that `manifests/` ships.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let mut text = serde_json::to_string_pretty(&Location::crd()).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn contract_names() {
        let crd = Location::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("locations.nethouse.io"));
        assert_eq!(crd.spec.names.short_names, Some(vec!["loc".to_string()]));
        assert_eq!(crd.spec.scope, "Namespaced");
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().is_some_and(|s| s.status.is_some()));
        let cols: Vec<&str> = v
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(cols, vec!["IP", "ZONE", "NODE", "PHASE", "AGE"]);
    }

    /// `manifests/base/crd/location.yaml` is generated: `cargo run -p nethouse-api --features crd
    /// --example crdgen > manifests/base/crd/location.yaml` rewrites it.
    #[test]
    fn shipped_crd_is_current() {
        let shipped = include_str!("../../manifests/base/crd/location.yaml");
        assert!(
            shipped == crd_yaml(),
            "manifests/base/crd/location.yaml is stale: regenerate it with \
             `cargo run -q -p nethouse-api --features crd --example crdgen > manifests/base/crd/location.yaml`"
        );
    }
}
