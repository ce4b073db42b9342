//! Prometheus metrics of the controller (prefix `nethouse_controller_`).

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// Releases: `released`, `already_released` or `failed`. Reconciles: `ok`, `waiting` or
    /// `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// [`crate::Error::kind`]: the variant that failed.
    pub kind: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// Releases of deleted Locations' IPs.
    pub releases: Family<ResultLabel, Counter>,
    /// Seconds from a Location's deletion to its IP's release (retention excluded).
    pub release_delay: Histogram,
    pub retained: Gauge,
    pub orphans_released: Counter,
    pub leases_lost: Counter,
    /// Reconciles by result: `waiting` is a deleted Location whose pod still holds its IP or
    /// whose retention runs, requeued without counting as an error.
    pub reconciles: Family<ResultLabel, Counter>,
    pub reconcile_duration: Histogram,
    pub reconcile_errors: Family<KindLabel, Counter>,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
    /// `nethouse_controller_http_*` of the health server.
    pub http: nethouse_runtime::limits::HttpMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("nethouse_controller");
        let releases = Family::<ResultLabel, Counter>::default();
        registry.register(
            "releases",
            "Releases of deleted Locations' IPs through NetHouse, by result",
            releases.clone(),
        );
        let release_delay = Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]);
        registry.register(
            "release_delay_seconds",
            "From a Location's deletion (or the end of its retention) to its IP's release",
            release_delay.clone(),
        );
        let retained = Gauge::default();
        registry.register(
            "retained_locations",
            "Locations kept in the recycle bin for their retention period",
            retained.clone(),
        );
        let orphans_released = Counter::default();
        registry.register(
            "orphan_leases_released",
            "Fixed leases with neither Location nor pod, released after the grace period",
            orphans_released.clone(),
        );
        let leases_lost = Counter::default();
        registry.register(
            "leases_lost",
            "Locations found without their lease in NetHouse",
            leases_lost.clone(),
        );
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of Locations, by result (ok, waiting, error)",
            reconciles.clone(),
        );
        // Present from the start, so a rate of errors is 0 rather than absent before the first.
        for result in ["ok", "waiting", "error"] {
            let _ = reconciles.get_or_create(&ResultLabel { result });
        }
        let reconcile_duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile of a Location takes, its API and NetHouse calls included",
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles (retried with backoff), by the kind of error",
            reconcile_errors.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica is the active one",
            leader.clone(),
        );
        let http = nethouse_runtime::limits::HttpMetrics::default();
        http.register(&mut registry);
        Metrics {
            http,
            registry,
            releases,
            release_delay,
            retained,
            orphans_released,
            leases_lost,
            reconciles,
            reconcile_duration,
            reconcile_errors,
            leader,
        }
    }

    pub fn release(&self, result: &'static str) {
        self.releases.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn reconciled(&self, result: &'static str) {
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn reconcile_failed(&self, kind: &'static str) {
        self.reconcile_errors
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// Observes the reconcile's duration when dropped, so every way out of it is timed.
    pub fn reconcile_timer(&self) -> Timer<'_> {
        Timer {
            histogram: &self.reconcile_duration,
            start: Instant::now(),
        }
    }

    /// What `/metrics` answers, through [`nethouse_runtime::metrics::response`] as in every
    /// binary.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text `/metrics` serves, for tests that read the counters without a server.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String only fails on a formatter error, which String never raises.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

pub struct Timer<'a> {
    histogram: &'a Histogram,
    start: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_are_counted_by_result_and_timed() {
        let m = Metrics::new();
        let before = m.encode();
        assert!(
            before.contains("nethouse_controller_reconciles_total{result=\"error\"} 0"),
            "{before}"
        );
        m.reconciled("ok");
        m.reconciled("ok");
        m.reconciled("waiting");
        drop(m.reconcile_timer());
        let out = m.encode();
        for line in [
            "nethouse_controller_reconciles_total{result=\"ok\"} 2",
            "nethouse_controller_reconciles_total{result=\"waiting\"} 1",
            "nethouse_controller_reconciles_total{result=\"error\"} 0",
            "# TYPE nethouse_controller_reconcile_duration_seconds histogram",
            "nethouse_controller_reconcile_duration_seconds_count 1",
        ] {
            assert!(out.contains(line), "missing `{line}` in\n{out}");
        }
    }

    #[test]
    fn reconcile_errors_carry_their_kind() {
        let m = Metrics::new();
        m.reconcile_failed("kube");
        m.reconcile_failed("kube");
        m.reconcile_failed("release");
        let out = m.encode();
        for line in [
            "nethouse_controller_reconcile_errors_total{kind=\"kube\"} 2",
            "nethouse_controller_reconcile_errors_total{kind=\"release\"} 1",
        ] {
            assert!(out.contains(line), "missing `{line}` in\n{out}");
        }
    }
}
