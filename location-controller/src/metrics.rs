//! Prometheus metrics of the controller (prefix `nethouse_controller_`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `released`, `already_released` or `failed`.
    pub result: &'static str,
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
    pub reconcile_errors: Counter,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
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
        let reconcile_errors = Counter::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles (retried with backoff)",
            reconcile_errors.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica is the active one",
            leader.clone(),
        );
        Metrics {
            registry,
            releases,
            release_delay,
            retained,
            orphans_released,
            leases_lost,
            reconcile_errors,
            leader,
        }
    }

    pub fn release(&self, result: &'static str) {
        self.releases.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
