//! The kube-scheduler extender wire format (`k8s.io/kube-scheduler/extender/v1`). The scheduler
//! sends Go field names without JSON tags (`Pod`, `Nodes`, `NodeNames`) and decodes answers
//! case-insensitively, ignoring unknown keys; older senders use lowercase keys. So top-level
//! keys are read case-insensitively, `null` is accepted everywhere, and answers are written in
//! PascalCase. Node objects are borrowed as raw JSON: a pod that is not ours gets its nodes
//! back byte for byte, never deserialized.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use nethouse_api::contract::FIXED_IP_ANNOTATION;

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

/// A node name as the scheduler sent it: borrowed from the request body unless it had escapes.
pub type Name<'a> = Cow<'a, str>;

#[derive(Deserialize)]
struct BorrowedName<'a>(#[serde(borrow)] Cow<'a, str>);

/// The candidate nodes, in the form the scheduler sent them.
#[derive(Debug)]
pub enum Candidates<'a> {
    /// `nodeCacheCapable: true`: names only.
    Names(Vec<Name<'a>>),
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

/// The top-level keys in the order sent, duplicates kept: a map would keep one of `Pod` and
/// `pod` by chance, and the answer would depend on it.
struct Top<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Top<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Top<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Top<'a>, M::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<BorrowedName<'de>>()? {
                    keys.push((key.0, map.next_value::<&'de RawValue>()?));
                }
                Ok(Top(keys))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// A Node's metadata as far as the extender reads it.
#[derive(Deserialize, Default)]
struct NodeMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct NodeObject {
    #[serde(default)]
    metadata: Option<NodeMeta>,
}

/// A pod's metadata as far as the extender reads it. Of the annotations only the fixed-IP one
/// is kept: the others (often many, some large) are skipped without being copied.
#[derive(Deserialize, Default)]
struct PodMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    annotations: Option<FixedIpAnnotation>,
}

#[derive(Deserialize, Default)]
struct PodObject {
    #[serde(default)]
    metadata: Option<PodMeta>,
}

/// `true` when the annotations say `nethouse.io/fixed-ip: "true"`.
#[derive(Default)]
struct FixedIpAnnotation(bool);

impl<'de> Deserialize<'de> for FixedIpAnnotation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = FixedIpAnnotation;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut fixed = false;
                while let Some(key) = map.next_key::<BorrowedName<'de>>()? {
                    if key.0 == FIXED_IP_ANNOTATION {
                        let value: BorrowedName<'de> = map.next_value()?;
                        fixed = nethouse_api::contract::is_fixed(Some(&value.0));
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(FixedIpAnnotation(fixed))
            }
        }
        d.deserialize_map(Visit)
    }
}

#[derive(Deserialize)]
struct RawList<'a> {
    #[serde(borrow, default, alias = "Items")]
    items: Option<Vec<&'a RawValue>>,
}

/// The value of the top-level key `name` in any case; `None` when absent or `null`. A key sent
/// twice (in any two cases) is refused: one deterministic answer, never a guess.
fn field<'a>(top: &Top<'a>, name: &str) -> Result<Option<&'a RawValue>, ProtocolError> {
    let mut found = top.0.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name));
    let first = found.next();
    if let (Some((a, _)), Some((b, _))) = (first, found.next()) {
        return Err(bad(format!("{name}: given twice (as {a:?} and {b:?})")));
    }
    Ok(first.map(|(_, v)| *v).filter(|v| v.get() != "null"))
}

pub fn parse_args(body: &[u8]) -> Result<ExtenderArgs<'_>, ProtocolError> {
    let top: Top<'_> = serde_json::from_slice(body).map_err(|e| bad(format!("body: {e}")))?;
    let pod_raw = field(&top, "Pod")?.ok_or_else(|| bad("Pod: missing or null"))?;
    let pod: PodObject =
        serde_json::from_str(pod_raw.get()).map_err(|e| bad(format!("Pod: {e}")))?;
    let meta = pod.metadata.unwrap_or_default();
    let name = meta
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("Pod.metadata.name: missing"))?;
    let fixed = meta.annotations.unwrap_or_default().0;
    let pod = PodRef {
        namespace: meta.namespace.unwrap_or_else(|| "default".into()),
        name,
        fixed,
    };
    let (names, nodes) = (field(&top, "NodeNames")?, field(&top, "Nodes")?);
    let candidates = if let Some(names) = names {
        let names: Vec<BorrowedName<'_>> =
            serde_json::from_str(names.get()).map_err(|e| bad(format!("NodeNames: {e}")))?;
        // Same layout: collected in place, no second allocation.
        Candidates::Names(names.into_iter().map(|n| n.0).collect())
    } else if let Some(nodes) = nodes {
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
    let node: NodeObject =
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
    Names(Vec<Name<'a>>),
    Nodes(Vec<&'a RawValue>),
    None,
}

/// node name -> reason; reasons are shared between nodes of one zone.
pub type Reasons<'a> = Vec<(Name<'a>, std::sync::Arc<str>)>;

/// Writes a JSON string: copied as is when nothing needs escaping (node names are DNS
/// subdomains; reasons are ours), through serde_json otherwise.
fn push_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
    }
}

/// `{"node": "reason", ...}`. Thousands of nodes share a handful of reasons (one per zone):
/// each distinct reason is escaped once and copied for all its nodes.
fn push_reasons(out: &mut String, reasons: &Reasons<'_>) {
    let mut escaped: Vec<(*const u8, String)> = Vec::new();
    out.push('{');
    for (i, (node, reason)) in reasons.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, node);
        out.push(':');
        let key = reason.as_ptr();
        let text = match escaped.iter().position(|(k, _)| *k == key) {
            Some(j) => &escaped[j].1,
            None => {
                let mut e = String::with_capacity(reason.len() + 2);
                push_str(&mut e, reason);
                // Distinct reasons are few, except when every node has its own: bound the
                // cache so the search stays short either way.
                if escaped.len() >= 16 {
                    escaped.remove(0);
                }
                escaped.push((key, e));
                &escaped[escaped.len() - 1].1
            }
        };
        out.push_str(text);
    }
    out.push('}');
}

/// The filter answer (`ExtenderFilterResult`), written directly: this is the hot path of
/// every scheduling cycle, and most of the answer is node names and shared reasons.
pub fn filter_result(
    kept: Kept<'_>,
    failed: &Reasons<'_>,
    unresolvable: &Reasons<'_>,
    error: &str,
) -> String {
    let names_len = |r: &Reasons<'_>| r.iter().map(|(n, _)| n.len() + 4).sum::<usize>();
    let mut out = String::with_capacity(
        128 + names_len(failed)
            + names_len(unresolvable)
            + 80 * (failed.len() + unresolvable.len())
            + match &kept {
                Kept::Names(n) => n.iter().map(|n| n.len() + 3).sum(),
                Kept::Nodes(n) => n.iter().map(|r| r.get().len() + 1).sum(),
                Kept::None => 0,
            },
    );
    out.push_str("{\"Nodes\":");
    match &kept {
        Kept::Nodes(items) => {
            out.push_str("{\"items\":[");
            for (i, raw) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(raw.get());
            }
            out.push_str("]}");
        }
        _ => out.push_str("null"),
    }
    out.push_str(",\"NodeNames\":");
    match &kept {
        Kept::Names(names) => {
            out.push('[');
            for (i, n) in names.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_str(&mut out, n);
            }
            out.push(']');
        }
        _ => out.push_str("null"),
    }
    out.push_str(",\"FailedNodes\":");
    push_reasons(&mut out, failed);
    out.push_str(",\"FailedAndUnresolvableNodes\":");
    push_reasons(&mut out, unresolvable);
    out.push_str(",\"Error\":");
    push_str(&mut out, error);
    out.push('}');
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Only the fixed-IP annotation is read; other annotations of any shape are skipped, and
    /// node names with escapes still arrive decoded.
    #[test]
    fn pod_annotations_and_names() {
        let cases: [(&str, Result<bool, &str>); 8] = [
            (r#""annotations":{"nethouse.io/fixed-ip":"true"}"#, Ok(true)),
            (
                r#""annotations":{"nethouse.io/fixed-ip":" TRUE "}"#,
                Ok(true),
            ),
            (
                r#""annotations":{"nethouse.io/fixed-ip":"false"}"#,
                Ok(false),
            ),
            (
                r#""annotations":{"a":"x","b\u002fc":"{\"big\":[1,2]}","nethouse.io/fixed-ip":"true"}"#,
                Ok(true),
            ),
            (
                r#""annotations":{"nethouse.io/fixed\u002dip":"true"}"#,
                Ok(true),
            ),
            (r#""annotations":null"#, Ok(false)),
            (r#""annotations":"true""#, Err("Pod: invalid type")),
            (
                r#""annotations":{"nethouse.io/fixed-ip":true}"#,
                Err("Pod: invalid type"),
            ),
        ];
        for (annotations, want) in cases {
            let body = format!(
                r#"{{"Pod":{{"metadata":{{"name":"p","namespace":"n",{annotations}}}}},"NodeNames":["a","b\u002dc"]}}"#
            );
            match (parse_args(body.as_bytes()), want) {
                (Ok(args), Ok(fixed)) => {
                    assert_eq!(args.pod.fixed, fixed, "{annotations}");
                    let Candidates::Names(names) = args.candidates else {
                        panic!("names expected")
                    };
                    assert_eq!(names, vec!["a", "b-c"]);
                    assert!(
                        matches!(names[0], Cow::Borrowed(_)),
                        "plain names are borrowed"
                    );
                }
                (Err(e), Err(prefix)) => assert!(e.0.starts_with(prefix), "{annotations}: {e}"),
                (got, want) => panic!("{annotations}: got {:?}, want {want:?}", got.map(|a| a.pod)),
            }
        }
    }

    /// The hand-written answer is exactly what serde_json makes of the same content, also
    /// for strings that need escaping.
    #[test]
    fn filter_answer_matches_serde() {
        let tricky = [
            "n1",
            "quote\"d",
            "back\\slash",
            "tab\there",
            "ctl\u{1}",
            "zoné",
            "",
        ];
        let shared: Arc<str> = Arc::from("pod a/b holds IP 10.0.0.1 in zone \"z1\"");
        let reasons: Reasons = tricky
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let r = if i % 2 == 0 {
                    shared.clone()
                } else {
                    Arc::from(format!("own reason {i}\n"))
                };
                (Name::from(*n), r)
            })
            .collect();
        let names: Vec<Name<'_>> = tricky.iter().map(|s| Name::from(*s)).collect();
        let raw: Vec<Box<RawValue>> = ["{\"metadata\":{\"name\":\"n1\"}}", "{}"]
            .iter()
            .map(|s| RawValue::from_string(s.to_string()).unwrap())
            .collect();
        let map = |r: &Reasons<'_>| {
            serde_json::Value::Object(
                r.iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                    .collect(),
            )
        };
        let cases = [
            (
                Kept::Names(names.clone()),
                serde_json::json!(names),
                serde_json::Value::Null,
            ),
            (
                Kept::Nodes(raw.iter().map(|r| &**r).collect()),
                serde_json::Value::Null,
                serde_json::json!({"items": [{"metadata": {"name": "n1"}}, {}]}),
            ),
            (Kept::None, serde_json::Value::Null, serde_json::Value::Null),
        ];
        for (kept, want_names, want_nodes) in cases {
            let got: serde_json::Value =
                serde_json::from_str(&filter_result(kept, &reasons, &reasons, "e\"rr")).unwrap();
            let want = serde_json::json!({
                "Nodes": want_nodes, "NodeNames": want_names,
                "FailedNodes": map(&reasons), "FailedAndUnresolvableNodes": map(&reasons),
                "Error": "e\"rr"
            });
            assert_eq!(got, want);
        }
    }
}
