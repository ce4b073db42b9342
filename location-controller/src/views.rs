//! Reading the cluster into the plain inputs of the pure decisions: a Location and its
//! StatefulSet become [`LocView`] and [`StsView`] for [`crate::retention`], the pod is fetched for
//! [`crate::decide`], and times are milliseconds since the epoch as both compare them. Kept apart
//! so the decisions never see a kube type and the reconcile never parses one.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use nethouse_api::contract::RETENTION_ANNOTATION;
use nethouse_api::location::{Location, LocationPhase};

use crate::error::{Error, kube_err};
use crate::gone::GoneStatefulSets;
use crate::retention::{LocView, StsView};

/// `namespace/name`: how logs, errors and the failure counts name a Location.
pub fn key(l: &Location) -> String {
    format!("{}/{}", l.namespace().unwrap_or_default(), l.name_any())
}

pub fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

/// How the status and the Events write a time.
pub fn rfc3339(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The Location as the decisions see it; `gone` supplies its StatefulSet's annotation at
/// deletion, if this controller saw that.
pub fn loc_view(l: &Location, gone: &GoneStatefulSets) -> LocView {
    let status = l.status.as_ref();
    let owner_uid = l
        .owner_references()
        .iter()
        .find(|o| o.kind == "StatefulSet")
        .map(|o| o.uid.clone());
    LocView {
        name: l.name_any(),
        statefulset: l.spec.statefulset.clone(),
        deleted_sts_retention: owner_uid.as_deref().and_then(|u| gone.retention(u)),
        owner_uid,
        deleting_since_ms: l
            .metadata
            .deletion_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond()),
        // An unparsable record is as good as none: the retention is planned again.
        retained_until_ms: status
            .and_then(|s| s.retained_until.as_deref())
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map(|t| t.as_millisecond()),
        retention_override: l.annotations().get(RETENTION_ANNOTATION).cloned(),
        recorded_retention: status.and_then(|s| s.retention.clone()),
    }
}

/// The Location's StatefulSet from the cache, or `None` when it has none or it is gone.
pub fn sts_view(statefulsets: &Store<StatefulSet>, l: &Location) -> Option<StsView> {
    let name = l.spec.statefulset.as_deref()?;
    let sts = statefulsets.get(&ObjectRef::new(name).within(&l.namespace().unwrap_or_default()))?;
    let spec = sts.spec.as_ref();
    Some(StsView {
        uid: sts.uid().unwrap_or_default(),
        replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
        ordinal_start: spec
            .and_then(|s| s.ordinals.as_ref())
            .and_then(|o| o.start)
            .unwrap_or(0),
        retention: sts.annotations().get(RETENTION_ANNOTATION).cloned(),
    })
}

pub fn phase(l: &Location) -> Option<LocationPhase> {
    l.status.as_ref().and_then(|s| s.phase)
}

/// The Location's pod: a Location is named after its pod, in the pod's namespace.
pub async fn get_pod(client: &kube::Client, l: &Location) -> Result<Option<Pod>, Error> {
    let ns = l.namespace().unwrap_or_default();
    let name = l.name_any();
    Api::<Pod>::namespaced(client.clone(), &ns)
        .get_opt(&name)
        .await
        .map_err(kube_err(format!("pod {ns}/{name}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::retention;
    use kube::runtime::watcher::Event;
    use serde_json::json;
    use std::time::Duration;

    fn deleted_location(recorded: &str) -> Location {
        serde_json::from_value(json!({
            "apiVersion": "nethouse.io/v1alpha1",
            "kind": "Location",
            "metadata": {
                "name": "redis-0",
                "namespace": "default",
                "deletionTimestamp": "2026-11-30T21:00:00Z",
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "redis", "uid": "u1"}
                ]
            },
            "spec": {"ips": ["10.0.0.1"], "zone": "z1", "cluster": "c", "statefulset": "redis"},
            "status": {"retention": recorded}
        }))
        .expect("a Location")
    }

    fn statefulset(uid: &str, retention: &str) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {
                "name": "redis",
                "namespace": "default",
                "uid": uid,
                "annotations": {(RETENTION_ANNOTATION): retention}
            }
        }))
        .expect("a StatefulSet")
    }

    #[test]
    fn a_statefulset_deleted_before_its_locations_recorded_its_last_retention_counts() {
        let gone = GoneStatefulSets::default();
        let l = deleted_location("0s");
        let default = Duration::from_secs(3600);
        let first = retention(&loc_view(&l, &gone), None, default).0;
        assert_eq!(first, Duration::ZERO, "nothing seen: the record");
        gone.observe(&Event::Delete(statefulset("u2", "1h")));
        let other = retention(&loc_view(&l, &gone), None, default).0;
        assert_eq!(other, Duration::ZERO, "another StatefulSet's deletion");
        gone.observe(&Event::Delete(statefulset("u1", "25s")));
        let seen = retention(&loc_view(&l, &gone), None, default).0;
        assert_eq!(
            seen,
            Duration::from_secs(25),
            "its own deletion, annotated 25s"
        );
    }
}
