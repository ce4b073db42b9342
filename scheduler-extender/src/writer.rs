//! Creates and updates the Location of every fixed pod once it runs: its IPs (from the pod
//! status, which the runtime filled from NetHouse), the zone of its node, the node, phase
//! Running, the owning StatefulSet, and the finalizer `nethouse.io/release-ip`.
//!
//! A kube-runtime `Controller` over fixed pods: every attempt that fails — the caches have not
//! listed yet, the node's zone label is not known yet, the API server refused or was away — is
//! retried with backoff until it lands. What is written is compared with the Location in the
//! extender's cache first, so a re-list or a restart writes only what differs.
//!
//! The window "NetHouse holds a lease but no Location exists yet" (between CNI ADD and this
//! writer seeing the Running pod) is closed from both sides: in it, the pod's node already pins
//! the lease's zone, a recreated pod can only get the IP in that zone (NetHouse refuses another
//! zone with `wrong_zone`, so a misplaced pod fails visibly and is rescheduled), and the location
//! controller's reconciliation releases a fixed lease whose pod went before its Location came.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use nethouse_api::contract::{FINALIZER, FIXED_IP_ANNOTATION, ZONE_LABEL, is_fixed};
use serde_json::json;

use crate::decide::LocationInfo;
use crate::index::{Index, View};
use crate::metrics::Metrics;

const MANAGER: &str = "nethouse-scheduler-extender";

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the extender has not listed every Node and Location yet")]
    NotSynced,
    #[error("node {node} of pod {pod} is not in the extender's cache yet")]
    NodeUnknown { pod: String, node: String },
    #[error("node {node} of pod {pod} has no {ZONE_LABEL} label")]
    NoZone { pod: String, node: String },
    #[error("writing Location {key}: {source}")]
    Kube {
        key: String,
        #[source]
        source: kube::Error,
    },
}

impl WriteError {
    /// Short, fixed: the `result` label of a failed attempt.
    pub fn kind(&self) -> &'static str {
        match self {
            WriteError::NotSynced => "not_synced",
            WriteError::NodeUnknown { .. } | WriteError::NoZone { .. } => "zone_unknown",
            WriteError::Kube { .. } => "api",
        }
    }
}

/// What a running fixed pod's Location must say.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub namespace: String,
    pub name: String,
    pub ips: Vec<String>,
    pub zone: String,
    pub node: String,
    pub statefulset: Option<OwnerReference>,
}

impl Desired {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

fn fixed(p: &Pod) -> bool {
    is_fixed(p.annotations().get(FIXED_IP_ANNOTATION).map(String::as_str))
}

/// The Location `pod` should have now: `None` while there is nothing to write (not fixed, not
/// placed, no IP yet, being deleted); an error while its node's zone is not known.
pub fn desired(
    pod: &Pod,
    node_zone: impl Fn(&str) -> Option<Option<Arc<str>>>,
) -> Result<Option<Desired>, WriteError> {
    let (Some(namespace), name) = (pod.namespace(), pod.name_any()) else {
        return Ok(None);
    };
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let ips: Vec<String> = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ips.as_ref())
        .map(|ips| ips.iter().map(|i| i.ip.clone()).collect())
        .unwrap_or_default();
    let Some(node) = node.filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if !fixed(pod) || ips.is_empty() || pod.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let pod_key = format!("{namespace}/{name}");
    let zone = match node_zone(&node) {
        Some(Some(zone)) => zone.to_string(),
        Some(None) => return Err(WriteError::NoZone { pod: pod_key, node }),
        None => return Err(WriteError::NodeUnknown { pod: pod_key, node }),
    };
    let statefulset = pod
        .owner_references()
        .iter()
        .find(|o| o.kind == "StatefulSet" && o.controller == Some(true))
        .cloned();
    Ok(Some(Desired {
        namespace,
        name,
        ips,
        zone,
        node,
        statefulset,
    }))
}

/// Whether the cached Location already says what would be written.
pub fn up_to_date(current: Option<&LocationInfo>, d: &Desired) -> bool {
    current.is_some_and(|l| {
        l.ips == d.ips && l.zone == d.zone && l.node.as_deref() == Some(&*d.node) && l.running
    })
}

/// The delay before the next attempt after `failures` failed ones in a row: 0.5 s doubling,
/// at most 30 s (a zone label may take a while; an API server restart takes seconds).
pub fn retry_after(failures: u32) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16));
    Duration::from_millis(ms.min(30_000))
}

/// Keeps only what [`desired`] reads: every pod of the cluster passes through the writer's
/// cache, and most of each object is of no use here.
pub fn strip(mut pod: Pod) -> Pod {
    let m = &mut pod.metadata;
    let keep_fixed = m
        .annotations
        .as_ref()
        .and_then(|a| a.get(FIXED_IP_ANNOTATION))
        .map(|v| (FIXED_IP_ANNOTATION.to_string(), v.clone()));
    let owner = m
        .owner_references
        .take()
        .map(|o| o.into_iter().filter(|o| o.kind == "StatefulSet").collect());
    pod.metadata = ObjectMeta {
        name: m.name.take(),
        namespace: m.namespace.take(),
        uid: m.uid.take(),
        resource_version: m.resource_version.take(),
        deletion_timestamp: m.deletion_timestamp.take(),
        annotations: keep_fixed.map(|kv| [kv].into_iter().collect()),
        owner_references: owner,
        ..ObjectMeta::default()
    };
    pod.spec = Some(PodSpec {
        node_name: pod.spec.and_then(|s| s.node_name),
        ..PodSpec::default()
    });
    pod.status = Some(PodStatus {
        pod_ips: pod.status.and_then(|s| s.pod_ips),
        ..PodStatus::default()
    });
    pod
}

struct Ctx {
    client: kube::Client,
    index: Arc<RwLock<Index>>,
    cluster: String,
    metrics: Arc<Metrics>,
    pods: Store<Pod>,
    /// Failed attempts in a row per pod (`namespace/name`), for the backoff.
    failures: Mutex<HashMap<String, u32>>,
}

async fn write(ctx: &Ctx, d: &Desired) -> Result<(), kube::Error> {
    let mut meta = json!({"name": d.name, "namespace": d.namespace, "finalizers": [FINALIZER]});
    if let Some(o) = &d.statefulset {
        meta["ownerReferences"] =
            json!([{"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid}]);
    }
    let location = json!({
        "apiVersion": "nethouse.io/v1alpha1", "kind": "Location",
        "metadata": meta,
        "spec": {"ips": d.ips, "zone": d.zone, "cluster": ctx.cluster,
                 "statefulset": d.statefulset.as_ref().map(|o| o.name.clone())}
    });
    let api: Api<nethouse_api::location::Location> =
        Api::namespaced(ctx.client.clone(), &d.namespace);
    let pp = PatchParams::apply(MANAGER).force();
    api.patch(&d.name, &pp, &Patch::Apply(location)).await?;
    let status = json!({
        "apiVersion": "nethouse.io/v1alpha1", "kind": "Location",
        "status": {"node": d.node, "phase": "Running",
                   "message": format!("pod {} runs on {}", d.key(), d.node)}
    });
    api.patch_status(&d.name, &pp, &Patch::Apply(status))
        .await?;
    Ok(())
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, WriteError> {
    if !ctx.index.ready() {
        return Err(WriteError::NotSynced);
    }
    let Some(d) = desired(&pod, |n| ctx.index.node_zone(n))? else {
        return Ok(Action::await_change());
    };
    let key = d.key();
    if up_to_date(ctx.index.location(&key).as_ref(), &d) {
        ctx.metrics.write("unchanged");
    } else {
        write(&ctx, &d).await.map_err(|source| WriteError::Kube {
            key: key.clone(),
            source,
        })?;
        ctx.metrics.write("written");
        tracing::info!(pod = %key, node = %d.node, zone = %d.zone, ips = ?d.ips, "location written");
    }
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&key);
    }
    Ok(Action::await_change())
}

fn error_policy(pod: Arc<Pod>, e: &WriteError, ctx: Arc<Ctx>) -> Action {
    ctx.metrics.write(e.kind());
    let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
    let failures = match ctx.failures.lock() {
        Ok(mut f) => {
            // Forget pods that are gone, so the map holds only pods still failing.
            f.retain(|k, _| {
                let (ns, name) = k.split_once('/').unwrap_or_default();
                ctx.pods
                    .get(&ObjectRef::<Pod>::new(name).within(ns))
                    .is_some()
            });
            let n = f.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        }
        Err(_) => 1,
    };
    let delay = retry_after(failures);
    // The first failure and then every tenth: a node without a zone label would otherwise
    // fill the log.
    if failures == 1 || failures.is_multiple_of(10) {
        tracing::warn!(pod = %key, error = %e, attempts = failures, retry_ms = delay.as_millis() as u64, "writing location failed; retrying");
    }
    Action::requeue(delay)
}

/// Runs the writer until aborted.
pub async fn run(
    client: kube::Client,
    index: Arc<RwLock<Index>>,
    cluster: String,
    metrics: Arc<Metrics>,
) {
    let (reader, store) = reflector::store();
    let pods = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|p| *p = strip(std::mem::take(p)))
        .reflect(store)
        .applied_objects()
        .try_filter(|p| future::ready(fixed(p)));
    let ctx = Arc::new(Ctx {
        client,
        index,
        cluster,
        metrics,
        pods: reader.clone(),
        failures: Mutex::default(),
    });
    Controller::for_stream(pods, reader)
        .run(reconcile, error_policy, ctx)
        .for_each(|r| {
            if let Err(e) = r {
                tracing::debug!(error = %e, "location writer");
            }
            future::ready(())
        })
        .await;
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodIP;

    use super::*;

    fn pod(fixed: &str, node: Option<&str>, ips: &[&str], deleting: bool) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("redis-0".into());
        p.metadata.namespace = Some("db".into());
        p.metadata.annotations =
            Some([(FIXED_IP_ANNOTATION.to_string(), fixed.to_string())].into());
        p.metadata.labels = Some([("app".to_string(), "redis".to_string())].into());
        p.metadata.owner_references = Some(vec![OwnerReference {
            kind: "StatefulSet".into(),
            name: "redis".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        if deleting {
            p.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
            );
        }
        p.spec = Some(PodSpec {
            node_name: node.map(String::from),
            ..Default::default()
        });
        p.status = Some(PodStatus {
            pod_ips: Some(ips.iter().map(|i| PodIP { ip: i.to_string() }).collect()),
            phase: Some("Running".into()),
            ..Default::default()
        });
        p
    }

    fn zones(node: &str) -> Option<Option<Arc<str>>> {
        match node {
            "n1" => Some(Some(Arc::from("z1"))),
            "bare" => Some(None),
            _ => None,
        }
    }

    #[test]
    fn what_is_written_and_when_nothing_is() {
        let d = desired(&pod("true", Some("n1"), &["10.0.0.7"], false), zones)
            .unwrap()
            .unwrap();
        assert_eq!(
            (d.key(), d.zone.as_str(), d.node.as_str()),
            ("db/redis-0".into(), "z1", "n1")
        );
        assert_eq!(d.ips, ["10.0.0.7"]);
        assert_eq!(d.statefulset.map(|o| o.name), Some("redis".into()));
        for (p, why) in [
            (pod("false", Some("n1"), &["10.0.0.7"], false), "not fixed"),
            (
                pod("yes", Some("n1"), &["10.0.0.7"], false),
                "not a boolean",
            ),
            (pod("true", None, &["10.0.0.7"], false), "not placed"),
            (pod("true", Some("n1"), &[], false), "no IP yet"),
            (
                pod("true", Some("n1"), &["10.0.0.7"], true),
                "being deleted",
            ),
        ] {
            assert_eq!(desired(&p, zones).unwrap(), None, "{why}");
        }
        let e = desired(&pod("true", Some("bare"), &["10.0.0.7"], false), zones).unwrap_err();
        assert_eq!(e.kind(), "zone_unknown");
        assert_eq!(
            e.to_string(),
            "node bare of pod db/redis-0 has no nethouse.io/network-zone label"
        );
        let e = desired(&pod("true", Some("gone"), &["10.0.0.7"], false), zones).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node gone of pod db/redis-0 is not in the extender's cache yet"
        );
    }

    #[test]
    fn a_location_is_up_to_date_only_when_every_field_matches() {
        let d = desired(&pod("true", Some("n1"), &["10.0.0.7"], false), zones)
            .unwrap()
            .unwrap();
        let same = LocationInfo {
            ips: vec!["10.0.0.7".into()],
            zone: "z1".into(),
            node: Some("n1".into()),
            deleting: false,
            running: true,
        };
        assert!(up_to_date(Some(&same), &d));
        assert!(!up_to_date(None, &d));
        for other in [
            LocationInfo {
                ips: vec!["10.0.0.8".into()],
                ..same.clone()
            },
            LocationInfo {
                zone: "z2".into(),
                ..same.clone()
            },
            LocationInfo {
                node: Some("n2".into()),
                ..same.clone()
            },
            LocationInfo {
                node: None,
                ..same.clone()
            },
            // Another phase (Retained, Releasing): the pod runs again, so it is Running again.
            LocationInfo {
                running: false,
                ..same.clone()
            },
        ] {
            assert!(!up_to_date(Some(&other), &d), "{other:?}");
        }
    }

    #[test]
    fn retries_back_off_to_thirty_seconds() {
        let got: Vec<u64> = [1, 2, 3, 4, 5, 6, 7, 8, 100, u32::MAX]
            .map(|n| retry_after(n).as_millis() as u64)
            .to_vec();
        assert_eq!(
            got,
            [
                500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000
            ]
        );
    }

    #[test]
    fn stripping_keeps_what_the_decision_reads() {
        let full = pod("true", Some("n1"), &["10.0.0.7"], false);
        let stripped = strip(full.clone());
        assert!(stripped.metadata.labels.is_none());
        assert_eq!(stripped.status.as_ref().and_then(|s| s.phase.clone()), None);
        assert_eq!(
            desired(&stripped, zones).unwrap(),
            desired(&full, zones).unwrap()
        );
    }
}
