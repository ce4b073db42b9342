//! JSON bodies of the NetHouse API. Requests reject unknown fields so a typo in a client is an
//! error naming the field, not a silently ignored setting.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The identity that owns a fixed lease: the pod NAME, never its UID or container, because a
/// StatefulSet pod recreated with the same name must get the same address.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    pub cluster: String,
    pub namespace: String,
    pub pod: String,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.cluster, self.namespace, self.pod)
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum LeaseKind {
    /// Owned by the pod identity; survives CNI DEL; ended only by an explicit release.
    Fixed,
    /// Owned by the attachment; ends at CNI DEL.
    Ephemeral,
}

impl LeaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseKind::Fixed => "fixed",
            LeaseKind::Ephemeral => "ephemeral",
        }
    }
}

/// One network attachment as the CNI runtime names it: (container ID, ifname) on a node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
    pub node: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AllocateRequest {
    pub zone: String,
    pub kind: LeaseKind,
    /// Required for `fixed`; informational for `ephemeral`.
    #[serde(default)]
    pub owner: Option<Owner>,
    pub attachment: Attachment,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DetachRequest {
    pub container_id: String,
    pub ifname: String,
    /// The pod identity, when the runtime knows it; lets NetHouse find a fixed lease.
    #[serde(default)]
    pub owner: Option<Owner>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub owner: Owner,
    /// When present, the lease is ended only if it holds exactly these addresses; a lease the
    /// owner got since (other addresses) is left alone and `released` is null. This makes a
    /// repeated release, e.g. after the caller crashed between releasing and recording it, safe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ips: Option<Vec<std::net::IpAddr>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRef {
    pub container_id: String,
    pub ifname: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GcRequest {
    pub node: String,
    pub valid_attachments: Vec<AttachmentRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct GcResponse {
    /// Fixed leases whose stale attachment was dropped (the IP stays with its owner).
    pub detached: u64,
    /// Ephemeral leases ended.
    pub released: u64,
    pub errors: Vec<String>,
}

/// Why a CNI plugin refused an ADD instead of asking for an address; a short, fixed label value
/// of `nethouse_cni_refused_total`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// A Kubernetes pod whose sandbox came with neither pod annotations nor sandbox labels: the
    /// node's conflist does not declare the pod-annotations capability, so the plugin cannot
    /// tell whether the pod keeps its IP. An ordinary IP could cost a fixed pod its address.
    PodAnnotationsMissing,
}

impl RefusalReason {
    /// Every reason, so that each series exists (at 0) before the first refusal.
    pub const ALL: &'static [RefusalReason] = &[RefusalReason::PodAnnotationsMissing];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::PodAnnotationsMissing => "pod_annotations_missing",
        }
    }

    /// What the operator changes so that these refusals stop.
    pub fn fix(self) -> String {
        match self {
            RefusalReason::PodAnnotationsMissing => format!(
                "the main plugin's entry in plugins[] of the node's CNI conflist needs \"capabilities\": {{\"{}\": true}}",
                crate::contract::POD_ANNOTATIONS_CAPABILITY
            ),
        }
    }
}

/// `POST /v1/refusals`: a CNI ADD that the plugin refused, reported so that NetHouse counts
/// it where every node's refusals are seen together. It changes no lease.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RefusalReport {
    pub reason: RefusalReason,
    /// The zone of the node that refused.
    pub zone: String,
    /// The pod that got no address.
    pub owner: Owner,
    /// The attachment that was not made; `attachment.node` is the reporting node.
    pub attachment: Attachment,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RefusalRecorded {
    /// The reason counted.
    pub reason: RefusalReason,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LeaseIp {
    pub ip: IpAddr,
    pub subnet: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub kind: LeaseKind,
    pub owner: Option<Owner>,
    pub zone: String,
    pub ips: Vec<LeaseIp>,
    /// `None` for a fixed lease whose pod is not running anywhere (retained).
    pub attachment: Option<Attachment>,
    pub created_unix_ms: u64,
    pub updated_unix_ms: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// What a node needs to configure one address of a lease.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct IpConfig {
    /// Address with the subnet's prefix length, e.g. `10.9.0.7/24`.
    pub address: String,
    pub gateway: Option<IpAddr>,
    pub routes: Vec<Route>,
    pub dns: Dns,
    pub subnet: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AllocateResponse {
    pub lease: Lease,
    pub ips: Vec<IpConfig>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DetachResponse {
    /// `detached` (fixed, retained), `released` (ephemeral), `not_found` or `not_attached_here`.
    pub outcome: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReleaseResponse {
    /// The lease that was ended, or `None` when there was none (release is idempotent).
    pub released: Option<Lease>,
}

/// A subnet as an operator declares it. Addresses are strings so the server can name the exact
/// field when one is wrong.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct SubnetSpec {
    /// Defaults to the CIDR with `/` replaced by `-`.
    #[serde(default)]
    pub name: Option<String>,
    pub zone: String,
    pub cidr: String,
    /// Defaults to the first host address; `"none"` for no gateway.
    #[serde(default)]
    pub gateway: Option<String>,
    /// Addresses (`10.0.0.5`), ranges (`10.0.0.10-10.0.0.20`) or CIDRs never handed out.
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
    /// Overrides the server's default cooldown for addresses released from this subnet.
    #[serde(default)]
    pub cooldown_seconds: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SubnetUsage {
    /// Addresses that can ever be handed out (CIDR minus network, broadcast, gateway, exclusions).
    pub capacity: u128,
    /// Leases attached to a running pod.
    pub attached: u64,
    /// Fixed leases kept for a pod that is not running.
    pub retained: u64,
    /// Released addresses still in their cooldown.
    pub cooling: u64,
    /// Addresses that can be handed out now.
    pub free: u128,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub name: String,
    pub zone: String,
    pub cidr: String,
    pub gateway: Option<IpAddr>,
    pub exclude: Vec<String>,
    pub routes: Vec<Route>,
    pub dns: Dns,
    pub cooldown_seconds: u64,
    pub usage: SubnetUsage,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub subnets: Vec<String>,
    /// Addresses a new IPv4 lease could get now (`None` when the zone has no IPv4 subnet).
    pub free_v4: Option<u128>,
    pub free_v6: Option<u128>,
    /// Whether a new lease can be allocated in this zone right now (every family has a free address).
    pub can_allocate: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LeaseList {
    pub items: Vec<Lease>,
    /// Pass as `continue` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Filters of `GET /v1/leases`. Every field is optional.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct LeaseFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<LeaseKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `true`: only fixed leases with no attachment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    #[serde(default, rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_from: Option<String>,
}

/// Every error body: `{"error": {"code": ..., "message": ..., "field": ...}}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// Stable machine-readable code, e.g. `zone_exhausted`, `invalid_field`, `unauthorized`.
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} ({}, field `{}`)", self.message, self.code, field),
            None => write!(f, "{} ({})", self.message, self.code),
        }
    }
}

/// Error codes the server uses; clients match on these rather than on messages.
pub mod codes {
    pub const INVALID_JSON: &str = "invalid_json";
    pub const INVALID_FIELD: &str = "invalid_field";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NOT_FOUND: &str = "not_found";
    pub const UNKNOWN_ZONE: &str = "unknown_zone";
    pub const ZONE_EXHAUSTED: &str = "zone_exhausted";
    pub const WRONG_ZONE: &str = "wrong_zone";
    pub const SUBNET_OVERLAP: &str = "subnet_overlap";
    pub const SUBNET_EXISTS: &str = "subnet_exists";
    pub const SUBNET_IN_USE: &str = "subnet_in_use";
    pub const CONFLICT: &str = "conflict";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    pub const UNAVAILABLE: &str = "unavailable";
    pub const INTERNAL: &str = "internal";

    /// Every code above (the OpenAPI document lists the same set; a test keeps them equal).
    pub const ALL: &[&str] = &[
        INVALID_JSON,
        INVALID_FIELD,
        UNAUTHORIZED,
        FORBIDDEN,
        NOT_FOUND,
        UNKNOWN_ZONE,
        ZONE_EXHAUSTED,
        WRONG_ZONE,
        SUBNET_OVERLAP,
        SUBNET_EXISTS,
        SUBNET_IN_USE,
        CONFLICT,
        METHOD_NOT_ALLOWED,
        PAYLOAD_TOO_LARGE,
        UNAVAILABLE,
        INTERNAL,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reason_is_its_label_on_the_wire() {
        for reason in RefusalReason::ALL {
            let wire = serde_json::to_value(reason).expect("serializes");
            assert_eq!(wire, serde_json::Value::from(reason.as_str()));
            let back: RefusalReason = serde_json::from_value(wire).expect("deserializes");
            assert_eq!(back, *reason);
        }
        assert!(
            RefusalReason::PodAnnotationsMissing
                .fix()
                .ends_with(r#""capabilities": {"io.kubernetes.cri.pod-annotations": true}"#)
        );
    }
}
