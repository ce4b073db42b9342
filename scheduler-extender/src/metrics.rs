//! The extender's metrics (`nethouse_extender_*`): calls by verb and result, their latency, and
//! the Location writer's outcomes. Short fixed label values only.

use nethouse_runtime::limits::HttpMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: &'static str,
    /// `passthrough` (not a fixed pod), `decided`, `bad_request`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `written`, `unchanged`, or the error kind of a failed attempt (retried with backoff):
    /// `not_synced`, `zone_unknown`, `api`.
    pub result: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<VerbLabels, Counter>,
    pub duration: Family<VerbLabels, Histogram>,
    pub location_writes: Family<WriteLabels, Counter>,
    /// `nethouse_extender_http_*`: connections, refusals, request timeouts.
    pub http: HttpMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("nethouse_extender");
        let requests = Family::<VerbLabels, Counter>::default();
        registry.register(
            "requests",
            "Extender calls by verb and result",
            requests.clone(),
        );
        let duration = Family::<VerbLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
            ])
        });
        registry.register(
            "request_duration_seconds",
            "Extender call latency",
            duration.clone(),
        );
        let location_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "location_writes",
            "Location writer attempts by result; failed ones are retried with backoff",
            location_writes.clone(),
        );
        let http = HttpMetrics::default();
        http.register(&mut registry);
        Metrics {
            registry,
            requests,
            duration,
            location_writes,
            http,
        }
    }
}

impl Metrics {
    pub fn write(&self, result: &'static str) {
        self.location_writes
            .get_or_create(&WriteLabels { result })
            .inc();
    }
}
