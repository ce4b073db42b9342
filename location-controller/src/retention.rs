//! The retention policy ("recycle bin"), as pure decisions. A StatefulSet pod's Location is kept
//! while its StatefulSet wants the pod (ordinal inside the replica range). Once it does not —
//! scaled down, or the StatefulSet deleted — the Location and its IP are kept for the retention
//! period, so that a scale-up (or a StatefulSet recreated under the same name) inside it gets the
//! same IPs back; after it, the Location is deleted and the IP released.
//!
//! Where the retention comes from, first match wins: the Location's own
//! `nethouse.io/ip-retention` (an operator emptying the recycle bin early), its StatefulSet's
//! annotation, the annotation it had when it was seen deleted (`crate::gone`), the value
//! recorded in the Location's status (the StatefulSet is gone), the controller's default.

use std::time::Duration;

use nethouse_api::contract::RETENTION_ANNOTATION;
use nethouse_api::duration::parse_duration;

/// What the controller knows of a StatefulSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsView {
    pub uid: String,
    pub replicas: i32,
    /// `spec.ordinals.start`.
    pub ordinal_start: i32,
    /// Its `nethouse.io/ip-retention` annotation, unparsed.
    pub retention: Option<String>,
}

/// What the decisions need of a Location.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocView {
    pub name: String,
    pub statefulset: Option<String>,
    /// UID of the StatefulSet in its owner reference.
    pub owner_uid: Option<String>,
    pub deleting_since_ms: Option<i64>,
    pub retained_until_ms: Option<i64>,
    /// The Location's own retention annotation.
    pub retention_override: Option<String>,
    /// `status.retention`.
    pub recorded_retention: Option<String>,
    /// The annotation its StatefulSet had when this controller saw it deleted
    /// ([`crate::gone`]): newer than the record when the deletion came before the reconcile.
    pub deleted_sts_retention: Option<String>,
}

/// The ordinal of `pod` in StatefulSet `sts` (`{sts}-{ordinal}`).
pub fn ordinal(sts: &str, pod: &str) -> Option<i32> {
    let n = pod.strip_prefix(sts)?.strip_prefix('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// Whether the StatefulSet still wants a pod of this name.
pub fn wanted(sts_name: &str, sts: &StsView, pod: &str) -> bool {
    ordinal(sts_name, pod).is_some_and(|o| {
        o >= sts.ordinal_start && (o as i64) < sts.ordinal_start as i64 + sts.replicas.max(0) as i64
    })
}

/// The retention that applies and, when a configured value was unusable, why it was skipped.
pub fn retention(
    loc: &LocView,
    sts: Option<&StsView>,
    default: Duration,
) -> (Duration, String, Vec<String>) {
    let mut skipped = Vec::new();
    let candidates = [
        (
            "the Location's annotation",
            loc.retention_override.as_deref(),
        ),
        (
            "the StatefulSet's annotation",
            sts.and_then(|s| s.retention.as_deref()),
        ),
        (
            "the deleted StatefulSet's annotation",
            loc.deleted_sts_retention.as_deref(),
        ),
        ("the recorded retention", loc.recorded_retention.as_deref()),
    ];
    for (source, value) in candidates {
        let Some(v) = value else { continue };
        match parse_duration(v) {
            Ok(d) => return (d, v.trim().to_string(), skipped),
            Err(e) => skipped.push(format!("{source} {RETENTION_ANNOTATION}: {e}")),
        }
    }
    (default, format_duration(default), skipped)
}

/// Writes a duration the way [`parse_duration`] reads it back.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match s {
        0 => "0s".into(),
        s if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        s if s.is_multiple_of(60) => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// What to do with a Location that is not being deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Wanted (or not a StatefulSet's), or its pod still holds the IP: nothing to do.
    Keep,
    /// Wanted again while retained: the retention is cancelled.
    Unretain,
    /// Not wanted: kept until then (unix ms), then deleted.
    Retain { until_ms: i64 },
    /// Not wanted and its retention is over: delete it (the finalizer then releases the IP).
    Delete,
}

pub fn plan(
    loc: &LocView,
    sts: Option<&StsView>,
    pod_holds_ip: bool,
    retention: Duration,
    now_ms: i64,
) -> Plan {
    let Some(sts_name) = loc.statefulset.as_deref() else {
        return Plan::Keep;
    };
    if let Some(s) = sts
        && wanted(sts_name, s, &loc.name)
    {
        return if loc.retained_until_ms.is_some() {
            Plan::Unretain
        } else {
            Plan::Keep
        };
    }
    if pod_holds_ip {
        return Plan::Keep;
    }
    // A retention shortened while a Location is retained shortens what is left of it (an
    // operator setting `0s` empties the recycle bin); a longer one does not extend it.
    let fresh = now_ms.saturating_add(retention.as_millis() as i64);
    let until_ms = loc.retained_until_ms.map_or(fresh, |u| u.min(fresh));
    if now_ms >= until_ms {
        Plan::Delete
    } else {
        Plan::Retain { until_ms }
    }
}

/// For a Location being deleted: until when (unix ms) its release is held back. Only a deletion
/// that came from its StatefulSet going away (the garbage collector following the owner
/// reference) is retained; a Location deleted by hand while its StatefulSet lives is released
/// as soon as the pod is gone.
pub fn hold_deleted(loc: &LocView, sts: Option<&StsView>, retention: Duration) -> Option<i64> {
    loc.statefulset.as_ref()?;
    let since = loc.deleting_since_ms?;
    let sts_gone = match (sts, loc.owner_uid.as_deref()) {
        (None, _) => true,
        (Some(s), Some(uid)) => s.uid != uid,
        (Some(_), None) => false,
    };
    if !sts_gone {
        return None;
    }
    // Already retained since a scale-down: that retention goes on, it does not restart.
    let until = since.saturating_add(retention.as_millis() as i64);
    Some(loc.retained_until_ms.map_or(until, |u| u.min(until)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn sts(replicas: i32) -> StsView {
        StsView {
            uid: "u1".into(),
            replicas,
            ordinal_start: 0,
            retention: None,
        }
    }

    fn loc(name: &str) -> LocView {
        LocView {
            name: name.into(),
            statefulset: Some("redis".into()),
            owner_uid: Some("u1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn ordinals() {
        assert_eq!(ordinal("redis", "redis-0"), Some(0));
        assert_eq!(ordinal("redis", "redis-12"), Some(12));
        assert_eq!(ordinal("redis", "redis-cache-0"), None);
        assert_eq!(ordinal("redis", "redis-"), None);
        assert_eq!(ordinal("redis", "redis-+1"), None);
        assert_eq!(ordinal("redis", "other-1"), None);
        let mut s = sts(2);
        assert!(wanted("redis", &s, "redis-1"));
        assert!(!wanted("redis", &s, "redis-2"));
        s.ordinal_start = 5;
        assert!(!wanted("redis", &s, "redis-1"));
        assert!(wanted("redis", &s, "redis-6"));
        assert!(!wanted("redis", &s, "redis-7"));
        assert!(!wanted("redis", &sts(-1), "redis-0"));
    }

    #[test]
    fn plans() {
        let r = Duration::from_secs(3600);
        let now = 10 * H;
        let retained = LocView {
            retained_until_ms: Some(now + 5),
            ..loc("redis-4")
        };
        let expired = LocView {
            retained_until_ms: Some(now),
            ..loc("redis-4")
        };
        // (case, location, its StatefulSet, pod holds the IP, retention, plan)
        type Case<'a> = (&'a str, LocView, Option<StsView>, bool, Duration, Plan);
        let cases: Vec<Case> = vec![
            (
                "not a StatefulSet pod",
                LocView {
                    statefulset: None,
                    ..loc("x")
                },
                None,
                false,
                r,
                Plan::Keep,
            ),
            ("wanted", loc("redis-1"), Some(sts(2)), false, r, Plan::Keep),
            (
                "wanted again while retained",
                LocView {
                    name: "redis-1".into(),
                    ..retained.clone()
                },
                Some(sts(2)),
                false,
                r,
                Plan::Unretain,
            ),
            (
                "scaled down, pod still up",
                loc("redis-4"),
                Some(sts(2)),
                true,
                r,
                Plan::Keep,
            ),
            (
                "scaled down, pod gone",
                loc("redis-4"),
                Some(sts(2)),
                false,
                r,
                Plan::Retain { until_ms: now + H },
            ),
            (
                "scaled down, retention 0s",
                loc("redis-4"),
                Some(sts(2)),
                false,
                Duration::ZERO,
                Plan::Delete,
            ),
            (
                "retained, not yet over",
                retained.clone(),
                Some(sts(2)),
                false,
                r,
                Plan::Retain { until_ms: now + 5 },
            ),
            (
                "retained, over",
                expired.clone(),
                Some(sts(2)),
                false,
                r,
                Plan::Delete,
            ),
            (
                "a retention set to 0s empties the bin",
                retained.clone(),
                Some(sts(2)),
                false,
                Duration::ZERO,
                Plan::Delete,
            ),
            (
                "a longer retention does not extend",
                retained,
                Some(sts(2)),
                false,
                Duration::from_secs(7200),
                Plan::Retain { until_ms: now + 5 },
            ),
            (
                "StatefulSet gone, no owner reference",
                loc("redis-0"),
                None,
                false,
                r,
                Plan::Retain { until_ms: now + H },
            ),
            (
                "StatefulSet gone, retention over",
                expired,
                None,
                false,
                r,
                Plan::Delete,
            ),
        ];
        for (name, l, s, holds, ret, want) in cases {
            assert_eq!(plan(&l, s.as_ref(), holds, ret, now), want, "{name}");
        }
    }

    #[test]
    fn deleted_locations_are_held_only_when_their_statefulset_went() {
        let r = Duration::from_secs(3600);
        let deleting = LocView {
            deleting_since_ms: Some(H),
            ..loc("redis-0")
        };
        assert_eq!(
            hold_deleted(&deleting, None, r),
            Some(2 * H),
            "StatefulSet deleted"
        );
        let recreated = StsView {
            uid: "u2".into(),
            ..sts(3)
        };
        assert_eq!(
            hold_deleted(&deleting, Some(&recreated), r),
            Some(2 * H),
            "deleted and recreated under the same name"
        );
        assert_eq!(
            hold_deleted(&deleting, Some(&sts(3)), r),
            None,
            "deleted by hand"
        );
        assert_eq!(
            hold_deleted(&loc("redis-0"), None, r),
            None,
            "not being deleted"
        );
        let scaled_down_first = LocView {
            retained_until_ms: Some(H + 5),
            ..deleting.clone()
        };
        assert_eq!(
            hold_deleted(&scaled_down_first, None, r),
            Some(H + 5),
            "retention goes on"
        );
        let plain = LocView {
            statefulset: None,
            ..deleting
        };
        assert_eq!(hold_deleted(&plain, None, r), None, "not a StatefulSet's");
    }

    #[test]
    fn retention_sources_in_order() {
        let d = Duration::from_secs(72 * 3600);
        let mut l = loc("redis-0");
        let mut s = sts(1);
        assert_eq!(retention(&l, Some(&s), d).0, d, "default");
        l.recorded_retention = Some("1h".into());
        assert_eq!(
            retention(&l, None, d).0,
            Duration::from_secs(3600),
            "recorded"
        );
        // Annotated 0s, then deleted before the Location recorded it.
        l.deleted_sts_retention = Some("0s".into());
        assert_eq!(
            retention(&l, None, d).0,
            Duration::ZERO,
            "the deleted StatefulSet's last annotation beats the older record"
        );
        s.retention = Some("10m".into());
        assert_eq!(
            retention(&l, Some(&s), d).0,
            Duration::from_secs(600),
            "StatefulSet"
        );
        l.retention_override = Some("0s".into());
        let (got, text, skipped) = retention(&l, Some(&s), d);
        assert_eq!(
            (got, text.as_str(), skipped.len()),
            (Duration::ZERO, "0s", 0)
        );
        l.retention_override = Some("soon".into());
        let (got, _, skipped) = retention(&l, Some(&s), d);
        assert_eq!(got, Duration::from_secs(600), "a bad value is skipped");
        assert!(skipped[0].contains("Location's annotation"), "{skipped:?}");
    }

    #[test]
    fn durations_round_trip() {
        for (d, text) in [(0, "0s"), (90, "90s"), (300, "5m"), (72 * 3600, "72h")] {
            let d = Duration::from_secs(d);
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text).unwrap(), d);
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }
}
