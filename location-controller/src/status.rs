//! Writing the controller's part of a Location's status. The reconcile and the sweep both write
//! it, and both must keep the retention record another write left there, so the one way to
//! write it lives here, apart from either.

use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use nethouse_api::location::Location;
use serde_json::json;

use crate::context::{Context, MANAGER};
use crate::error::{Error, kube_err};
use crate::views::{key, rfc3339};

/// Server-side applies the controller's part of the status: exactly `fields` (fields it set
/// before and leaves out now are removed).
pub async fn set_status(
    ctx: &Context,
    l: &Location,
    fields: serde_json::Value,
) -> Result<(), Error> {
    let api: Api<Location> =
        Api::namespaced(ctx.client.clone(), &l.namespace().unwrap_or_default());
    let body = json!({"apiVersion": "nethouse.io/v1alpha1", "kind": "Location", "status": fields});
    api.patch_status(
        &l.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map_err(kube_err(format!("status of location {}", key(l))))?;
    Ok(())
}

/// `fields` plus the retention record already in the status, for applies that are not about
/// retention: the controller's status fields are applied as a whole, and a lost record would
/// restart (or lose) the retention of a Location whose StatefulSet is gone.
pub fn keeping_retention(l: &Location, mut fields: serde_json::Value) -> serde_json::Value {
    if let Some(s) = &l.status {
        if let Some(r) = &s.retention {
            fields["retention"] = r.clone().into();
        }
        if let Some(u) = &s.retained_until {
            fields["retainedUntil"] = u.clone().into();
        }
    }
    fields
}

/// Records that `l` is in the recycle bin until `until_ms`, and says why in an Event.
pub async fn mark_retained(
    ctx: &Context,
    l: &Location,
    ret_text: &str,
    until_ms: i64,
    note: String,
) -> Result<(), Error> {
    set_status(
        ctx,
        l,
        json!({"retention": ret_text, "phase": "Retained", "retainedUntil": rfc3339(until_ms), "message": note}),
    )
    .await?;
    ctx.event(l, EventType::Normal, "Retained", note).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nethouse_api::location::{LocationSpec, LocationStatus};

    #[test]
    fn other_status_applies_keep_the_retention_record() {
        let mut l = Location::new(
            "redis-3",
            LocationSpec {
                ips: vec!["10.0.0.3".into()],
                zone: "z1".into(),
                cluster: "c".into(),
                statefulset: Some("redis".into()),
            },
        );
        let fields = json!({"phase": "Releasing"});
        assert_eq!(keeping_retention(&l, fields.clone()), fields);
        l.status = Some(LocationStatus {
            retention: Some("25s".into()),
            retained_until: Some("2026-11-26T05:00:00Z".into()),
            ..Default::default()
        });
        assert_eq!(
            keeping_retention(&l, fields),
            json!({"phase": "Releasing", "retention": "25s", "retainedUntil": "2026-11-26T05:00:00Z"})
        );
    }
}
