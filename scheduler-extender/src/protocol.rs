//! The kube-scheduler extender wire format (`k8s.io/kube-scheduler/extender/v1`). The scheduler
//! sends Go field names without JSON tags (`Pod`, `Nodes`, `NodeNames`) and decodes answers
//! case-insensitively, ignoring unknown keys; older senders use lowercase keys. So top-level
//! keys are read case-insensitively, `null` is accepted everywhere, and answers are written in
//! PascalCase. Node objects are borrowed as raw JSON: a pod that is not ours gets its nodes
//! back byte for byte, never deserialized.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use nethouse_api::location::FIXED_IP_ANNOTATION;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ProtocolError(pub String);

fn bad(msg: impl Into<String>) -> ProtocolError {
    ProtocolError(msg.into())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    /// Asked for a fixed IP (`nethouse.io/fixed-ip: "true"`).
    pub fixed: bool,
}

impl PodRef {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The candidate nodes, in the form the scheduler sent them.
#[derive(Debug)]
pub enum Candidates<'a> {
    /// `nodeCacheCapable: true`: names only.
    Names(Vec<String>),
    /// `nodeCacheCapable: false`: whole Node objects, kept as raw JSON.
    Nodes(Vec<&'a RawValue>),
    /// Both `null`.
    None,
}

#[derive(Debug)]
pub struct ExtenderArgs<'a> {
    pub pod: PodRef,
    pub candidates: Candidates<'a>,
}

#[derive(Deserialize)]
struct Top<'a>(#[serde(borrow)] HashMap<Cow<'a, str>, &'a RawValue>);

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct Object {
    #[serde(default)]
    metadata: Option<Meta>,
}

#[derive(Deserialize)]
struct RawList<'a> {
    #[serde(borrow, default, alias = "Items")]
    items: Option<Vec<&'a RawValue>>,
}

fn field<'a>(top: &Top<'a>, name: &str) -> Option<&'a RawValue> {
    top.0
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
        .filter(|v| v.get() != "null")
}

pub fn parse_args(body: &[u8]) -> Result<ExtenderArgs<'_>, ProtocolError> {
    let top: Top<'_> = serde_json::from_slice(body).map_err(|e| bad(format!("body: {e}")))?;
    let pod_raw = field(&top, "Pod").ok_or_else(|| bad("Pod: missing or null"))?;
    let pod: Object = serde_json::from_str(pod_raw.get()).map_err(|e| bad(format!("Pod: {e}")))?;
    let meta = pod.metadata.unwrap_or_default();
    let name = meta
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("Pod.metadata.name: missing"))?;
    let fixed = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(FIXED_IP_ANNOTATION))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let pod = PodRef {
        namespace: meta.namespace.unwrap_or_else(|| "default".into()),
        name,
        fixed,
    };
    let candidates = if let Some(names) = field(&top, "NodeNames") {
        Candidates::Names(
            serde_json::from_str(names.get()).map_err(|e| bad(format!("NodeNames: {e}")))?,
        )
    } else if let Some(nodes) = field(&top, "Nodes") {
        let list: RawList<'_> =
            serde_json::from_str(nodes.get()).map_err(|e| bad(format!("Nodes: {e}")))?;
        Candidates::Nodes(list.items.unwrap_or_default())
    } else {
        Candidates::None
    };
    Ok(ExtenderArgs { pod, candidates })
}

/// Name and zone label of a raw Node (only its metadata is read).
pub fn node_name_and_zone(
    raw: &RawValue,
    zone_label: &str,
) -> Result<(String, Option<String>), ProtocolError> {
    let node: Object =
        serde_json::from_str(raw.get()).map_err(|e| bad(format!("Nodes.items: {e}")))?;
    let meta = node.metadata.unwrap_or_default();
    let name = meta
        .name
        .ok_or_else(|| bad("Nodes.items[].metadata.name: missing"))?;
    let zone = meta.labels.and_then(|mut l| l.remove(zone_label));
    Ok((name, zone))
}

/// The nodes that pass, in the form they came.
pub enum Kept<'a> {
    Names(Vec<String>),
    Nodes(Vec<&'a RawValue>),
    None,
}

/// node name -> reason; reasons are shared between nodes of one zone.
pub type Reasons = Vec<(String, std::sync::Arc<str>)>;

struct ReasonMap<'a>(&'a Reasons);

impl Serialize for ReasonMap<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Thousands of nodes share a handful of reasons (one per zone): each distinct reason
        // is JSON-escaped once and then copied as raw JSON, instead of escaped per node.
        let mut escaped: HashMap<usize, Box<RawValue>> = HashMap::new();
        for (_, v) in self.0 {
            let key = v.as_ptr() as usize;
            if let std::collections::hash_map::Entry::Vacant(slot) = escaped.entry(key) {
                slot.insert(
                    serde_json::to_string(&**v)
                        .and_then(RawValue::from_string)
                        .map_err(serde::ser::Error::custom)?,
                );
            }
        }
        s.collect_map(
            self.0
                .iter()
                .map(|(name, v)| (name, escaped.get(&(v.as_ptr() as usize)))),
        )
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct FilterResult<'a> {
    nodes: Option<RawNodeList<'a>>,
    node_names: Option<Vec<String>>,
    failed_nodes: ReasonMap<'a>,
    failed_and_unresolvable_nodes: ReasonMap<'a>,
    error: &'a str,
}

#[derive(Serialize)]
struct RawNodeList<'a> {
    items: Vec<&'a RawValue>,
}

pub fn filter_result(
    kept: Kept<'_>,
    failed: &Reasons,
    unresolvable: &Reasons,
    error: &str,
) -> String {
    let (nodes, node_names) = match kept {
        Kept::Names(n) => (None, Some(n)),
        Kept::Nodes(items) => (Some(RawNodeList { items }), None),
        Kept::None => (None, None),
    };
    serde_json::to_string(&FilterResult {
        nodes,
        node_names,
        failed_nodes: ReasonMap(failed),
        failed_and_unresolvable_nodes: ReasonMap(unresolvable),
        error,
    })
    .unwrap_or_else(|e| format!(r#"{{"Error":"encoding the answer: {e}"}}"#))
}

#[derive(Serialize, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct HostPriority {
    pub host: String,
    pub score: i64,
}

pub fn priority_result(list: &[HostPriority]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}
