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

pub fn loc_view(l: &Location) -> LocView {
    let status = l.status.as_ref();
    LocView {
        name: l.name_any(),
        statefulset: l.spec.statefulset.clone(),
        owner_uid: l
            .owner_references()
            .iter()
            .find(|o| o.kind == "StatefulSet")
            .map(|o| o.uid.clone()),
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
