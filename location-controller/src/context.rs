//! What the reconcile, the sweep and the leader election share: the clients, the options, the
//! metrics, the per-Location failure counts for the backoff, and the Event recorder every part
//! publishes through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Resource;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;

use crate::metrics::Metrics;

/// Field manager of everything the controller writes.
pub const MANAGER: &str = "nethouse-location-controller";

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

/// Consecutive failed reconciles per Location (`namespace/name`), for the backoff.
#[derive(Default)]
pub(crate) struct Failures(Mutex<HashMap<String, usize>>);

impl Failures {
    /// Counts one more failure of `key` and returns how many in a row.
    pub fn add(&self, key: &str) -> usize {
        self.0
            .lock()
            .map(|mut f| {
                let n = f.entry(key.to_string()).or_insert(0);
                *n += 1;
                *n
            })
            // A poisoned map only loses the backoff's memory: start over from the first delay.
            .unwrap_or(1)
    }

    pub fn clear(&self, key: &str) {
        if let Ok(mut f) = self.0.lock() {
            f.remove(key);
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
    pub(crate) failures: Failures,
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
            failures: Failures::default(),
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
pub(crate) struct Run {
    pub ctx: Arc<Context>,
    pub statefulsets: Store<StatefulSet>,
    /// The last retention annotation of StatefulSets seen deleted.
    pub gone: Arc<crate::gone::GoneStatefulSets>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_in_a_row_per_location_until_cleared() {
        let f = Failures::default();
        assert_eq!(f.add("default/redis-0"), 1);
        assert_eq!(f.add("default/redis-0"), 2);
        assert_eq!(f.add("default/redis-1"), 1);
        f.clear("default/redis-0");
        assert_eq!(f.add("default/redis-0"), 1);
    }
}
