//! The reconcile loop: a kube-runtime Controller on Locations (triggered also by their pods and
//! by their StatefulSets) with the finalizer `nethouse.io/release-ip`.
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
//! still holds its IP after a short fixed wait, a retained deletion when its retention ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use nethouse_api::Owner;
use nethouse_api::location::{FINALIZER, Location, LocationPhase, RETENTION_ANNOTATION};
use serde_json::json;

use crate::decide::{Release, decide};
use crate::metrics::Metrics;
use crate::retention::{self, LocView, Plan, StsView};

/// Field manager of everything the controller writes.
pub const MANAGER: &str = "nethouse-location-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pod {0} still holds its IP; it is released once the pod is gone")]
    PodHoldsIp(String),
    #[error("{location} is retained until {until}")]
    Retained {
        location: String,
        until: String,
        until_ms: i64,
    },
    #[error("reading {what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("releasing the IP of {owner} through NetHouse: {source}")]
    Release {
        owner: String,
        #[source]
        source: nethouse_api::ClientError,
    },
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube { what, source }
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Cluster name, part of a fixed lease's owner (as in nethouse-cni's config).
    pub cluster: String,
    /// Retention of StatefulSets without `nethouse.io/ip-retention`.
    pub default_retention: Duration,
    /// How long a fixed lease with neither Location nor pod is left before it is released.
    pub orphan_grace: Duration,
    /// Period of the two-way reconciliation with NetHouse.
    pub sweep_every: Duration,
    /// This replica's name in Events (the pod name).
    pub instance: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cluster: "default".into(),
            default_retention: Duration::from_secs(72 * 3600),
            orphan_grace: Duration::from_secs(300),
            sweep_every: Duration::from_secs(60),
            instance: None,
        }
    }
}

/// What every reconcile shares, across leaderships.
pub struct Context {
    pub client: kube::Client,
    pub nethouse: nethouse_api::Client,
    pub options: Options,
    pub metrics: Arc<Metrics>,
    recorder: Recorder,
    /// Consecutive failures per Location, for the backoff.
    failures: Mutex<HashMap<String, usize>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        nethouse: nethouse_api::Client,
        options: Options,
    ) -> Arc<Context> {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: options.instance.clone(),
            },
        );
        Arc::new(Context {
            client,
            nethouse,
            options,
            metrics: Arc::new(Metrics::new()),
            recorder,
            failures: Mutex::default(),
        })
    }

    /// Publishes an Event about `obj`; a failure is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let ev = KubeEvent {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(reason, error = %e, "publishing an event failed");
        }
    }
}

/// One leadership's view: the shared context and the StatefulSet cache.
pub struct Run {
    pub ctx: Arc<Context>,
    pub statefulsets: Store<StatefulSet>,
}

fn key(l: &Location) -> String {
    format!("{}/{}", l.namespace().unwrap_or_default(), l.name_any())
}

fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

fn rfc3339(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn loc_view(l: &Location) -> LocView {
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
        retained_until_ms: status
            .and_then(|s| s.retained_until.as_deref())
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map(|t| t.as_millisecond()),
        retention_override: l.annotations().get(RETENTION_ANNOTATION).cloned(),
        recorded_retention: status.and_then(|s| s.retention.clone()),
    }
}

fn sts_view(run: &Run, l: &Location) -> Option<StsView> {
    let name = l.spec.statefulset.as_deref()?;
    let sts = run
        .statefulsets
        .get(&ObjectRef::new(name).within(&l.namespace().unwrap_or_default()))?;
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

fn phase(l: &Location) -> Option<LocationPhase> {
    l.status.as_ref().and_then(|s| s.phase)
}

async fn get_pod(ctx: &Context, l: &Location) -> Result<Option<Pod>, Error> {
    let ns = l.namespace().unwrap_or_default();
    let name = l.name_any();
    Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&name)
        .await
        .map_err(kube_err(format!("pod {ns}/{name}")))
}

/// Server-side applies the controller's part of the status: exactly `fields` (fields it set
/// before and leaves out now are removed).
pub(crate) async fn set_status(
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
pub(crate) fn keeping_retention(l: &Location, mut fields: serde_json::Value) -> serde_json::Value {
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

/// A live Location: the retention policy.
async fn apply(l: &Location, run: &Run) -> Result<Action, Error> {
    let ctx = &run.ctx;
    let view = loc_view(l);
    let sts = sts_view(run, l);
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
    let holds = !wanted && decide(get_pod(ctx, l).await?.as_ref()) == Release::Wait;
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

/// Records that `l` is in the recycle bin until `until_ms`, and says why in an Event.
async fn mark_retained(
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

/// A deleted Location: release, once due.
async fn cleanup(l: &Location, run: &Run) -> Result<Action, Error> {
    let ctx = &run.ctx;
    let view = loc_view(l);
    let sts = sts_view(run, l);
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
    let pod = get_pod(ctx, l).await?;
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

async fn reconcile(loc: Arc<Location>, run: Arc<Run>) -> Result<Action, Error> {
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
    if result.is_ok()
        && let Ok(mut f) = run.ctx.failures.lock()
    {
        f.remove(&k);
    }
    result
}

fn inner(err: &Error) -> &Error {
    use kube::runtime::finalizer::Error as F;
    match err {
        Error::Finalizer(e) => match &**e {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e,
            _ => err,
        },
        e => e,
    }
}

fn error_policy(loc: Arc<Location>, err: &Error, run: Arc<Run>) -> Action {
    match inner(err) {
        Error::PodHoldsIp(_) => {
            tracing::debug!(location = %key(&loc), "{err}");
            return Action::requeue(Duration::from_secs(5));
        }
        Error::Retained { until_ms, .. } => {
            let left = Duration::from_millis((until_ms - now_ms()).max(0) as u64);
            return Action::requeue(
                left.min(Duration::from_secs(3600)) + Duration::from_millis(100),
            );
        }
        _ => {}
    }
    run.ctx.metrics.reconcile_errors.inc();
    let attempt = run
        .ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(key(&loc)).or_insert(0);
            *n += 1;
            *n
        })
        .unwrap_or(1);
    let delay = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_max_times(usize::MAX)
        .build()
        .nth(attempt.saturating_sub(1))
        .unwrap_or(Duration::from_secs(30));
    tracing::warn!(location = %key(&loc), attempt, retry_in = ?delay, error = %err, "reconcile failed; finalizer kept");
    Action::requeue(delay)
}

/// Runs the controller and the periodic reconciliation with NetHouse until the returned task
/// is aborted (leadership lost, shutdown).
pub fn start(ctx: Arc<Context>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = ctx.client.clone();
        let (statefulsets, sts_writer) = reflector::store::<StatefulSet>();
        let sts_api: Api<StatefulSet> = Api::all(client.clone());
        let sts_cache = reflector::reflector(
            sts_writer,
            watcher(sts_api.clone(), watcher::Config::default()),
        )
        .default_backoff()
        .for_each(|_| async {});

        let controller = Controller::new(
            Api::<Location>::all(client.clone()),
            watcher::Config::default(),
        );
        let locations = controller.store();
        let by_sts = locations.clone();
        let run = Arc::new(Run {
            ctx: ctx.clone(),
            statefulsets: statefulsets.clone(),
        });
        let control = async move {
            // Without the StatefulSets every retained Location would look orphaned.
            if statefulsets.wait_until_ready().await.is_err() {
                return;
            }
            controller
                // A pod going away is what a waiting cleanup waits for.
                .watches(
                    Api::<Pod>::all(client),
                    watcher::Config::default(),
                    |pod: Pod| {
                        Some(ObjectRef::<Location>::new(&pod.name_any()).within(&pod.namespace()?))
                    },
                )
                // Scale and retention changes concern every Location of the StatefulSet.
                .watches(
                    sts_api,
                    watcher::Config::default(),
                    move |sts: StatefulSet| {
                        let ns = sts.namespace();
                        let name = sts.name_any();
                        by_sts
                            .state()
                            .into_iter()
                            .filter(|l| {
                                l.namespace() == ns && l.spec.statefulset.as_deref() == Some(&name)
                            })
                            .map(|l| ObjectRef::from_obj(&*l))
                            .collect::<Vec<_>>()
                    },
                )
                .run(reconcile, error_policy, run.clone())
                .for_each(|_| async {})
                .await;
        };
        let sweep = crate::sweep::run(ctx, locations);
        tokio::join!(sts_cache, control, sweep);
    })
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
