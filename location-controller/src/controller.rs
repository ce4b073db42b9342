//! Wiring: the kube-runtime Controller on Locations, what else triggers a reconcile (their pods,
//! their StatefulSets), how soon a failed one is retried, and the sweep run beside it. Kept
//! apart from the reconcile so that file reads as the lifecycle of one Location.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use nethouse_api::location::Location;

use crate::context::{Context, Failures, Run};
use crate::error::Error;
use crate::gone::GoneStatefulSets;
use crate::metrics::Metrics;
use crate::reconcile::reconcile;
use crate::views::{key, now_ms};

/// Runs the controller and the periodic reconciliation with NetHouse until the returned task
/// is aborted (leadership lost, shutdown).
pub fn start(ctx: Arc<Context>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = ctx.client.clone();
        let (statefulsets, sts_writer) = reflector::store::<StatefulSet>();
        let sts_api: Api<StatefulSet> = Api::all(client.clone());
        let gone = Arc::new(GoneStatefulSets::default());
        let noted = gone.clone();
        // A deletion is noted before the cache drops the StatefulSet: a reconcile that no longer
        // finds it there finds its last annotation in `gone`.
        let sts_events = watcher(sts_api.clone(), watcher::Config::default()).inspect(move |e| {
            if let Ok(e) = e {
                noted.observe(e);
            }
        });
        let sts_cache = reflector::reflector(sts_writer, sts_events)
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
            gone,
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

fn error_policy(loc: Arc<Location>, err: &Error, run: Arc<Run>) -> Action {
    let ctx = &run.ctx;
    Action::requeue(retry_after(&ctx.metrics, &ctx.failures, &key(&loc), err))
}

/// How soon the Location `key` is reconciled again after `err`. A wait is retried when it may
/// be over; a failure is counted by kind and backs off exponentially, per Location.
fn retry_after(metrics: &Metrics, failures: &Failures, key: &str, err: &Error) -> Duration {
    match err.inner() {
        Error::PodHoldsIp(_) => {
            tracing::debug!(location = %key, "{err}");
            return Duration::from_secs(5);
        }
        Error::Retained { until_ms, .. } => {
            let left = Duration::from_millis((until_ms - now_ms()).max(0) as u64);
            return left.min(Duration::from_secs(3600)) + Duration::from_millis(100);
        }
        _ => {}
    }
    metrics.reconcile_failed(err.kind());
    let attempt = failures.add(key);
    let delay = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_max_times(usize::MAX)
        .build()
        .nth(attempt.saturating_sub(1))
        .unwrap_or(Duration::from_secs(30));
    tracing::warn!(location = %key, attempt, retry_in = ?delay, error = %err, "reconcile failed; finalizer kept");
    delay
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::finalizer::Error as F;

    fn kube() -> Error {
        crate::error::kube_err("pod default/redis-0")(kube::Error::LinesCodecMaxLineLengthExceeded)
    }

    #[test]
    fn failures_back_off_per_location_and_are_counted_by_kind() {
        let metrics = Metrics::new();
        let failures = Failures::default();
        let failed = Error::Finalizer(Box::new(F::CleanupFailed(kube())));
        let delays: Vec<_> = (0..3)
            .map(|_| retry_after(&metrics, &failures, "default/redis-0", &failed))
            .collect();
        assert_eq!(
            delays,
            [500, 1000, 2000].map(Duration::from_millis),
            "doubling from 0.5 s"
        );
        let other = retry_after(&metrics, &failures, "default/redis-1", &kube());
        assert_eq!(
            other,
            Duration::from_millis(500),
            "another Location starts over"
        );
        let out = metrics.encode();
        assert!(
            out.contains("nethouse_controller_reconcile_errors_total{kind=\"kube\"} 4"),
            "{out}"
        );
    }

    #[test]
    fn waits_requeue_without_counting_an_error() {
        let metrics = Metrics::new();
        let failures = Failures::default();
        let holds = Error::Finalizer(Box::new(F::CleanupFailed(Error::PodHoldsIp(
            "default/redis-0".into(),
        ))));
        assert_eq!(
            retry_after(&metrics, &failures, "default/redis-0", &holds),
            Duration::from_secs(5)
        );
        let over = Error::Retained {
            location: "default/redis-3".into(),
            until: String::new(),
            until_ms: 0,
        };
        assert_eq!(
            retry_after(&metrics, &failures, "default/redis-3", &over),
            Duration::from_millis(100)
        );
        assert!(!metrics.encode().contains("reconcile_errors_total{"));
        assert_eq!(failures.add("default/redis-0"), 1, "a wait is no failure");
    }
}
