//! The retention annotation of each StatefulSet seen deleted, by UID, for a few minutes.
//!
//! An operator empties the recycle bin with `nethouse.io/ip-retention: 0s` and deletes the
//! StatefulSet right after. The annotation reaches each Location only when that Location is
//! reconciled (`status.retention`); when the deletion wins that race, the StatefulSet is gone
//! from the cache and the Locations would be held for the retention recorded before — hours,
//! with the default. The deletion's watch event still carries the StatefulSet's last state, so
//! its annotation is kept here until every Location had time to record it (their cleanup runs
//! within seconds of the deletion). A controller that was not running when the StatefulSet went
//! never saw that event: the recorded retention applies, as before.
//!
//! Bounded: an entry lives [`REMEMBERED`], and each deletion drops the expired ones.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::ResourceExt;
use kube::runtime::watcher::Event;
use nethouse_api::contract::RETENTION_ANNOTATION;

/// How long a deleted StatefulSet's annotation is kept: far longer than its Locations take to
/// be deleted by the garbage collector and reconciled.
pub const REMEMBERED: Duration = Duration::from_secs(600);

#[derive(Default)]
pub struct GoneStatefulSets {
    by_uid: Mutex<HashMap<String, (Option<String>, Instant)>>,
}

impl GoneStatefulSets {
    /// Takes note of a StatefulSet watch event: only deletions matter.
    pub fn observe(&self, event: &Event<StatefulSet>) {
        if let Event::Delete(sts) = event
            && let Some(uid) = sts.uid()
        {
            let retention = sts.annotations().get(RETENTION_ANNOTATION).cloned();
            self.deleted(uid, retention, Instant::now());
        }
    }

    fn deleted(&self, uid: String, retention: Option<String>, now: Instant) {
        let mut by_uid = self.by_uid.lock().unwrap_or_else(|e| e.into_inner());
        by_uid.retain(|_, (_, at)| now.duration_since(*at) < REMEMBERED);
        by_uid.insert(uid, (retention, now));
    }

    /// The annotation the StatefulSet `uid` had when it was deleted, if that was seen lately.
    pub fn retention(&self, uid: &str) -> Option<String> {
        self.retention_at(uid, Instant::now())
    }

    fn retention_at(&self, uid: &str, now: Instant) -> Option<String> {
        let by_uid = self.by_uid.lock().unwrap_or_else(|e| e.into_inner());
        let (retention, at) = by_uid.get(uid)?;
        (now.duration_since(*at) < REMEMBERED)
            .then(|| retention.clone())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn sts(uid: &str, retention: Option<&str>) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("redis".into()),
                namespace: Some("default".into()),
                uid: Some(uid.into()),
                annotations: retention
                    .map(|r| [(RETENTION_ANNOTATION.to_string(), r.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_deletion_keeps_the_last_annotation_by_uid() {
        let gone = GoneStatefulSets::default();
        gone.observe(&Event::Apply(sts("u1", Some("0s"))));
        assert_eq!(
            gone.retention("u1"),
            None,
            "a live StatefulSet is the cache's"
        );
        gone.observe(&Event::Delete(sts("u1", Some("0s"))));
        gone.observe(&Event::Delete(sts("u2", None)));
        assert_eq!(gone.retention("u1").as_deref(), Some("0s"));
        assert_eq!(gone.retention("u2"), None, "deleted without one");
        assert_eq!(gone.retention("u3"), None, "never seen");
    }

    #[test]
    fn entries_expire_and_are_dropped_at_the_next_deletion() {
        let gone = GoneStatefulSets::default();
        let t0 = Instant::now();
        gone.deleted("u1".into(), Some("0s".into()), t0);
        let later = t0 + REMEMBERED;
        assert_eq!(
            gone.retention_at("u1", later - Duration::from_secs(1))
                .as_deref(),
            Some("0s")
        );
        assert_eq!(gone.retention_at("u1", later), None, "expired");
        gone.deleted("u2".into(), None, later);
        let kept = gone.by_uid.lock().map(|m| m.len()).unwrap_or_default();
        assert_eq!(kept, 1, "the expired entry is gone");
    }
}
