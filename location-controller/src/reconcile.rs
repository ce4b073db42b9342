//! One reconcile of a Location, handed to `kube::runtime::finalizer` with the finalizer
//! `nethouse.io/release-ip`; the controller that calls it is wired in [`crate::controller`].
//!
//! - A live Location follows the retention policy ([`crate::retention`]): kept while its
//!   StatefulSet wants the pod, `Retained` for the retention period once it does not, deleted
//!   after it.
//! - A deleted Location releases its IP through NetHouse once [`decide`] says the pod is gone —
//!   after the retention when the deletion came from its StatefulSet being deleted — and only a
//!   confirmed release lets the finalizer come off. The release names the Location's addresses,
//!   so repeating it after a crash never ends a lease the pod name got since.
//!
//! Errors keep the finalizer and retry: NetHouse failures with exponential backoff, a pod that
//! still holds its IP after a short fixed wait, a retained deletion when its retention ends
//! (the delays are chosen in [`crate::controller`]).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Api, ResourceExt};
use nethouse_api::Owner;
use nethouse_api::contract::FINALIZER;
use nethouse_api::location::{Location, LocationPhase};
use serde_json::json;

use crate::context::Run;
use crate::decide::{Release, decide};
use crate::error::{Error, kube_err};
use crate::retention::{self, Plan};
use crate::status::{keeping_retention, mark_retained, set_status};
use crate::views::{get_pod, key, loc_view, now_ms, phase, rfc3339, sts_view};

/// A live Location: the retention policy.
async fn apply(l: &Location, run: &Run) -> Result<Action, Error> {
    let ctx = &run.ctx;
    let view = loc_view(l, &run.gone);
    let sts = sts_view(&run.statefulsets, l);
    let (ret, ret_text, skipped) =
        retention::retention(&view, sts.as_ref(), ctx.options.default_retention);
    for why in skipped {
        ctx.event(l, EventType::Warning, "InvalidRetention", why)
            .await;
    }
    let Some(sts_name) = view.statefulset.clone() else {
        return Ok(Action::await_change());
    };
    let wanted = sts
        .as_ref()
        .is_some_and(|s| retention::wanted(&sts_name, s, &view.name));
    let holds = !wanted && decide(get_pod(&ctx.client, l).await?.as_ref()) == Release::Wait;
    let now = now_ms();
    let recorded = l.status.as_ref().and_then(|s| s.retention.as_deref());
    match retention::plan(&view, sts.as_ref(), holds, ret, now) {
        Plan::Keep => {
            if sts.is_some() && recorded != Some(ret_text.as_str()) {
                set_status(ctx, l, json!({"retention": ret_text})).await?;
            }
            Ok(Action::await_change())
        }
        Plan::Unretain => {
            let note = format!("StatefulSet {sts_name} wants the pod again; it keeps its IP");
            // Only `retention` stays ours: the retention fields we set go, and the writer sets
            // the phase once the pod runs. Setting a phase here could overwrite its `Running`.
            set_status(ctx, l, json!({"retention": ret_text})).await?;
            ctx.event(l, EventType::Normal, "RetentionCancelled", note)
                .await;
            Ok(Action::await_change())
        }
        Plan::Retain { until_ms } => {
            if view.retained_until_ms != Some(until_ms) || phase(l) != Some(LocationPhase::Retained)
            {
                let why = if sts.is_some() {
                    "no longer wants the pod"
                } else {
                    "is gone"
                };
                let note = format!(
                    "StatefulSet {sts_name} {why}; its IP is kept until {} (retention {ret_text})",
                    rfc3339(until_ms)
                );
                mark_retained(ctx, l, &ret_text, until_ms, note).await?;
            }
            let left = Duration::from_millis((until_ms - now).max(0) as u64);
            Ok(Action::requeue(
                left.min(Duration::from_secs(3600)) + Duration::from_millis(100),
            ))
        }
        Plan::Delete => {
            let api: Api<Location> =
                Api::namespaced(ctx.client.clone(), &l.namespace().unwrap_or_default());
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: l.uid(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&l.name_any(), &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(kube_err(format!("deleting location {}", key(l)))(e)),
            }
            ctx.event(
                l,
                EventType::Normal,
                "RetentionOver",
                format!(
                    "retention {ret_text} is over; the Location is deleted and its IP released"
                ),
            )
            .await;
            Ok(Action::await_change())
        }
    }
}

/// A deleted Location: release, once due.
async fn cleanup(l: &Location, run: &Run) -> Result<Action, Error> {
    let ctx = &run.ctx;
    let view = loc_view(l, &run.gone);
    let sts = sts_view(&run.statefulsets, l);
    let (ret, ret_text, _) =
        retention::retention(&view, sts.as_ref(), ctx.options.default_retention);
    let now = now_ms();
    let hold = retention::hold_deleted(&view, sts.as_ref(), ret);
    if let Some(until_ms) = hold
        && now < until_ms
    {
        if view.retained_until_ms != Some(until_ms) {
            let note = format!(
                "StatefulSet {} was deleted; the IP is kept until {} (retention {ret_text})",
                view.statefulset.as_deref().unwrap_or_default(),
                rfc3339(until_ms)
            );
            mark_retained(ctx, l, &ret_text, until_ms, note).await?;
        }
        return Err(Error::Retained {
            location: key(l),
            until: rfc3339(until_ms),
            until_ms,
        });
    }
    let pod = get_pod(&ctx.client, l).await?;
    if decide(pod.as_ref()) == Release::Wait {
        if phase(l) != Some(LocationPhase::Releasing) {
            let note = "deleted; the IP is released once the pod is gone".to_string();
            let fields = json!({"phase": "Releasing", "message": note});
            set_status(ctx, l, keeping_retention(l, fields)).await?;
            ctx.event(l, EventType::Normal, "WaitingForPod", note).await;
        }
        return Err(Error::PodHoldsIp(key(l)));
    }
    release(l, pod.as_ref(), hold, run).await
}

async fn release(
    l: &Location,
    pod: Option<&Pod>,
    hold: Option<i64>,
    run: &Run,
) -> Result<Action, Error> {
    let ctx = &run.ctx;
    let owner = Owner {
        cluster: l.spec.cluster.clone(),
        namespace: l.namespace().unwrap_or_default(),
        pod: l.name_any(),
    };
    let ips: Option<Vec<std::net::IpAddr>> = l.spec.ips.iter().map(|i| i.parse().ok()).collect();
    let answer = match ips.as_deref() {
        Some(ips) if !ips.is_empty() => ctx.nethouse.release_exact(&owner, ips).await,
        // A Location without (valid) addresses can only name its owner.
        _ => ctx.nethouse.release(&owner).await,
    };
    let answer = match answer {
        Ok(a) => a,
        Err(source) => {
            ctx.metrics.release("failed");
            let err = Error::Release {
                owner: owner.to_string(),
                source,
            };
            ctx.event(l, EventType::Warning, "ReleaseFailed", err.to_string())
                .await;
            return Err(err);
        }
    };
    let since = hold
        .or(l
            .metadata
            .deletion_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond()))
        .unwrap_or_else(now_ms);
    ctx.metrics
        .release_delay
        .observe(((now_ms() - since).max(0) as f64) / 1000.0);
    match &answer.released {
        Some(lease) => {
            ctx.metrics.release("released");
            let ips: Vec<String> = lease.ips.iter().map(|i| i.ip.to_string()).collect();
            let note = format!("released {} of {owner} to NetHouse", ips.join(", "));
            tracing::info!(owner = %owner, ips = ?ips, "released; removing the finalizer");
            ctx.event(l, EventType::Normal, "Released", note.clone())
                .await;
            if let Some(p) = pod {
                ctx.event(p, EventType::Normal, "IPReleased", note).await;
            }
        }
        None => {
            ctx.metrics.release("already_released");
            tracing::info!(owner = %owner, "no lease holds these addresses any more; removing the finalizer");
        }
    }
    Ok(Action::await_change())
}

/// Reconciles one Location, timed and counted by result.
pub async fn reconcile(loc: Arc<Location>, run: Arc<Run>) -> Result<Action, Error> {
    let metrics = run.ctx.metrics.clone();
    let _timer = metrics.reconcile_timer();
    let api: Api<Location> =
        Api::namespaced(run.ctx.client.clone(), &loc.namespace().unwrap_or_default());
    let k = key(&loc);
    let result = finalizer(&api, FINALIZER, loc, |event| async {
        match event {
            Event::Apply(l) => apply(&l, &run).await,
            Event::Cleanup(l) => cleanup(&l, &run).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        run.ctx.failures.clear(&k);
    }
    metrics.reconciled(outcome(&result));
    result
}

/// The `result` label of a reconcile.
fn outcome(result: &Result<Action, Error>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) if e.is_wait() => "waiting",
        Err(_) => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::finalizer::Error as F;

    #[test]
    fn waits_are_not_counted_as_errors() {
        let through_cleanup = |e| Err(Error::Finalizer(Box::new(F::CleanupFailed(e))));
        assert_eq!(outcome(&Ok(Action::await_change())), "ok");
        assert_eq!(
            outcome(&through_cleanup(Error::PodHoldsIp(
                "default/redis-0".into()
            ))),
            "waiting"
        );
        let retained = Error::Retained {
            location: "default/redis-3".into(),
            until: String::new(),
            until_ms: 0,
        };
        assert_eq!(outcome(&through_cleanup(retained)), "waiting");
        assert_eq!(
            outcome(&Err(Error::Finalizer(Box::new(F::UnnamedObject)))),
            "error"
        );
        let kube = kube_err("pod default/redis-0")(kube::Error::LinesCodecMaxLineLengthExceeded);
        assert_eq!(outcome(&through_cleanup(kube)), "error");
    }
}
