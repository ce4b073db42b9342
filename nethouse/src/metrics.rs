//! Prometheus metrics of the service. Operation metrics are recorded as requests finish; the
//! per-subnet gauges are filled from the IPAM's view at scrape time, so they cannot drift.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use nethouse_api::RefusalReason;

use crate::store::Revision;
use crate::store::health::{FailureKind, StoreObserver};
use crate::store::watch_lag::WatchLag;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: &'static str,
    /// `ok` or the API error code.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpOnly {
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `no_space`, `io` or `other` ([`FailureKind`]).
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// [`RefusalReason::as_str`].
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubnetLabels {
    pub subnet: String,
    pub zone: String,
}

type FGauge = Gauge<f64, AtomicU64>;

pub struct Metrics {
    registry: Registry,
    pub operations: Family<OpLabels, Counter>,
    pub duration: Family<OpOnly, Histogram>,
    capacity: Family<SubnetLabels, FGauge>,
    attached: Family<SubnetLabels, Gauge>,
    retained: Family<SubnetLabels, Gauge>,
    cooling: Family<SubnetLabels, Gauge>,
    free: Family<SubnetLabels, FGauge>,
    /// State-changing calls running now, including those whose client has gone (they finish
    /// anyway); a number that keeps growing means the store is stalling.
    pub mutations_in_flight: Gauge,
    /// State-changing calls refused because `--max-in-flight` were already running.
    pub mutations_refused: Counter,
    /// CNI ADDs that a plugin refused and reported, by reason.
    cni_refused: Family<ReasonLabels, Counter>,
    store: StoreMetrics,
    /// With a shared store (etcd): the revision this replica's view is complete up to.
    watched_revision: Gauge,
    /// With a shared store: full re-reads because the watch could not resume.
    pub watch_rereads: Counter,
    /// Races lost to other replicas, by the kind of key ([`crate::ipam::races`]).
    lost_races: Family<KindLabels, Counter>,
}

/// What the store reports (see [`StoreObserver`]).
#[derive(Clone)]
struct StoreMetrics {
    commit_duration: Histogram,
    transactions: Histogram,
    failures: Family<KindLabels, Counter>,
    reopens: Counter,
    healthy: Gauge,
    /// etcd's round-trips by operation, failed ones too.
    etcd_duration: Family<OpOnly, Histogram>,
    etcd_failures: Family<OpOnly, Counter>,
    /// How far the view runs behind etcd (`watch_lag`), and its two metrics.
    lag: Arc<Mutex<WatchLag>>,
    watch_lag_seconds: Histogram,
    watch_lag_revisions: Gauge,
}

impl StoreMetrics {
    fn lag(&self) -> std::sync::MutexGuard<'_, WatchLag> {
        self.lag.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl StoreObserver for StoreMetrics {
    fn commit(&self, took: std::time::Duration, transactions: usize) {
        self.commit_duration.observe(took.as_secs_f64());
        self.transactions.observe(transactions as f64);
    }

    fn failure(&self, kind: FailureKind) {
        self.failures
            .get_or_create(&KindLabels {
                kind: kind.as_str(),
            })
            .inc();
    }

    fn reopened(&self) {
        self.reopens.inc();
    }

    fn healthy(&self, healthy: bool) {
        self.healthy.set(i64::from(healthy));
    }

    fn round_trip(&self, op: &'static str, took: std::time::Duration, ok: bool) {
        let l = OpOnly { op };
        self.etcd_duration
            .get_or_create(&l)
            .observe(took.as_secs_f64());
        if !ok {
            self.etcd_failures.get_or_create(&l).inc();
        }
    }

    fn revision(&self, revision: Revision, own_commit: bool) {
        let mut lag = self.lag();
        if let Some(took) = lag.seen(revision, own_commit, Instant::now()) {
            self.watch_lag_seconds.observe(took.as_secs_f64());
        }
        self.watch_lag_revisions.set(lag.behind() as i64);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("nethouse");
        let operations = Family::<OpLabels, Counter>::default();
        registry.register("operations", "API operations by result", operations.clone());
        let duration = Family::<OpOnly, Histogram>::new_with_constructor(|| {
            // 100 µs .. ~3 s: an allocation is sub-millisecond, a slow disk is not.
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                3.0,
            ])
        });
        registry.register(
            "operation_duration_seconds",
            "API operation latency",
            duration.clone(),
        );
        let capacity = Family::<SubnetLabels, FGauge>::default();
        registry.register(
            "subnet_capacity_addresses",
            "Addresses a subnet can ever hand out",
            capacity.clone(),
        );
        let attached = Family::<SubnetLabels, Gauge>::default();
        registry.register(
            "subnet_attached_leases",
            "Leases attached to a running pod",
            attached.clone(),
        );
        let retained = Family::<SubnetLabels, Gauge>::default();
        registry.register(
            "subnet_retained_leases",
            "Fixed leases kept for a pod that is not running",
            retained.clone(),
        );
        let cooling = Family::<SubnetLabels, Gauge>::default();
        registry.register(
            "subnet_cooling_addresses",
            "Released addresses still in their cooldown",
            cooling.clone(),
        );
        let free = Family::<SubnetLabels, FGauge>::default();
        registry.register(
            "subnet_free_addresses",
            "Addresses that can be handed out now",
            free.clone(),
        );
        let mutations_in_flight = Gauge::default();
        registry.register(
            "mutations_in_flight",
            "State-changing calls running now, including those whose client has gone",
            mutations_in_flight.clone(),
        );
        let mutations_refused = Counter::default();
        registry.register(
            "mutations_refused",
            "State-changing calls refused, before doing anything, because --max-in-flight were running",
            mutations_refused.clone(),
        );
        let cni_refused = Family::<ReasonLabels, Counter>::default();
        // Every reason from the start, so that rate() and alerts see the first refusal.
        for reason in RefusalReason::ALL {
            let _ = cni_refused.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            });
        }
        registry.register(
            "cni_refused",
            "CNI ADDs a node's plugin refused without giving an address, by reason (pod_annotations_missing: the node's conflist does not pass pod annotations, so a fixed pod could not be told from an ordinary one); the log names pod and node",
            cni_refused.clone(),
        );
        // 50 µs .. 3 s: an fsync on a good disk is ~0.1 ms; seconds mean a stalling disk.
        let store_commit_duration = Histogram::new([
            0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            1.0, 3.0,
        ]);
        registry.register(
            "store_commit_duration_seconds",
            "Time of one commit of the store (failed ones included), fsync included; group commit folds concurrent calls into one",
            store_commit_duration.clone(),
        );
        let store_commit_transactions = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 13),
        );
        registry.register(
            "store_transactions_per_commit",
            "Transactions carried by one commit of the store (group commit), conflicting ones included",
            store_commit_transactions.clone(),
        );
        let store_failures = Family::<KindLabels, Counter>::default();
        // Every kind from the start, so that rate() and alerts see the first failure.
        for kind in [
            FailureKind::NoSpace,
            FailureKind::Io,
            FailureKind::Other,
            FailureKind::Unreachable,
        ] {
            let _ = store_failures.get_or_create(&KindLabels {
                kind: kind.as_str(),
            });
        }
        registry.register(
            "store_failures",
            "Failed commits and failed attempts to re-open the store, by kind (no_space, io, other), and losses of etcd (unreachable); the log names the error",
            store_failures.clone(),
        );
        let store_reopens = Counter::default();
        registry.register(
            "store_reopens",
            "Times the store re-opened its file after a failure (and NetHouse re-read it)",
            store_reopens.clone(),
        );
        let store_healthy = Gauge::default();
        registry.register(
            "store_healthy",
            "1 while the store takes commits; 0 while it refuses them after a failure, until it is re-opened (etcd: while it cannot be reached)",
            store_healthy.clone(),
        );
        let etcd_duration = Family::<OpOnly, Histogram>::new_with_constructor(|| {
            // 250 µs .. 5 s: a loopback etcd answers in well under a millisecond, a commit
            // waits for a quorum's fsync, 1 s is the default request timeout (raised: up to 5 s).
            Histogram::new([
                0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
            ])
        });
        registry.register(
            "etcd_request_duration_seconds",
            "Round-trips to etcd by operation (get, range: a page of a scan, txn: a commit, watch: starting one, probe: the reachability check), failed ones included; only with --store etcd",
            etcd_duration.clone(),
        );
        let etcd_failures = Family::<OpOnly, Counter>::default();
        registry.register(
            "etcd_request_failures",
            "Round-trips to etcd that failed or timed out, by operation; only with --store etcd",
            etcd_failures.clone(),
        );
        let watched_revision = Gauge::default();
        registry.register(
            "store_watched_revision",
            "With --store etcd: the etcd revision this replica's view is complete up to (compare across replicas, and with etcd's own revision, for the watch's lag)",
            watched_revision.clone(),
        );
        // 1 ms .. 10 s: a watch on loopback brings a commit in about a millisecond; seconds
        // mean a stalled watch (its member frozen) or a replica starved of CPU.
        let watch_lag_seconds = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "store_watch_lag_seconds",
            "With --store etcd: time from etcd answering one of this replica's commits to the watch bringing that revision into its view (the watch carries every replica's changes in one stream, so others' wait as long)",
            watch_lag_seconds.clone(),
        );
        let watch_lag_revisions = Gauge::default();
        registry.register(
            "store_watch_lag_revisions",
            "With --store etcd: revisions etcd has reported (in any answer, at least every 2 s) that this replica's view does not hold yet; growing while the watch stalls",
            watch_lag_revisions.clone(),
        );
        let watch_rereads = Counter::default();
        registry.register(
            "store_watch_rereads",
            "With --store etcd: times the view was read from etcd again because its watch could not resume (etcd compacted the revisions it needed)",
            watch_rereads.clone(),
        );
        let lost_races = Family::<KindLabels, Counter>::default();
        // Every kind from the start, so that rate() sees the first lost race.
        for kind in crate::ipam::races::KINDS {
            let _ = lost_races.get_or_create(&KindLabels { kind });
        }
        registry.register(
            "ipam_lost_races",
            "Writes whose checks failed because another replica's write landed first, by the kind of key whose check decided it (lease, address, subnet, subnet_list); each cost a re-read and another try. Always 0 with one replica on its own store",
            lost_races.clone(),
        );
        Metrics {
            registry,
            watched_revision,
            watch_rereads,
            lost_races,
            store: StoreMetrics {
                commit_duration: store_commit_duration,
                transactions: store_commit_transactions,
                failures: store_failures,
                reopens: store_reopens,
                healthy: store_healthy,
                etcd_duration,
                etcd_failures,
                lag: Arc::default(),
                watch_lag_seconds,
                watch_lag_revisions,
            },
            mutations_in_flight,
            mutations_refused,
            cni_refused,
            operations,
            duration,
            capacity,
            attached,
            retained,
            cooling,
            free,
        }
    }

    pub fn observe(&self, op: &'static str, result: &str, seconds: f64) {
        self.operations
            .get_or_create(&OpLabels {
                op,
                result: result.to_string(),
            })
            .inc();
        self.duration.get_or_create(&OpOnly { op }).observe(seconds);
    }

    /// With a shared store: the view is complete up to `revision` (the watch brought it, or the
    /// store was read again).
    pub fn watched(&self, revision: Revision) {
        self.watched_revision.set(revision as i64);
        let mut lag = self.store.lag();
        for took in lag.applied(revision, Instant::now()) {
            self.store.watch_lag_seconds.observe(took.as_secs_f64());
        }
        self.store.watch_lag_revisions.set(lag.behind() as i64);
    }

    /// Counts one refused ADD that a plugin reported.
    pub fn cni_refused(&self, reason: RefusalReason) {
        self.cni_refused
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// What the store reports to: every commit, each failure and re-open, whether it takes
    /// commits, and (etcd) each round-trip.
    pub fn store_observer(&self) -> crate::store::embedded::Observer {
        std::sync::Arc::new(self.store.clone())
    }

    /// Renders the exposition text after refreshing the subnet gauges from `subnets`.
    /// Sets the per-subnet gauges from the view, just before a scrape reads them.
    pub fn refresh(&self, subnets: &[nethouse_api::Subnet]) {
        for f in [&self.attached, &self.retained, &self.cooling] {
            f.clear();
        }
        self.capacity.clear();
        self.free.clear();
        for s in subnets {
            let l = SubnetLabels {
                subnet: s.name.clone(),
                zone: s.zone.clone(),
            };
            self.capacity.get_or_create(&l).set(s.usage.capacity as f64);
            self.free.get_or_create(&l).set(s.usage.free as f64);
            self.attached.get_or_create(&l).set(s.usage.attached as i64);
            self.retained.get_or_create(&l).set(s.usage.retained as i64);
            self.cooling.get_or_create(&l).set(s.usage.cooling as i64);
        }
    }

    /// Raises the lost-race counters to `counts` (totals since start, which never go down),
    /// just before a scrape reads them.
    pub fn lost_races(&self, counts: &[(&'static str, u64)]) {
        for &(kind, total) in counts {
            let c = self.lost_races.get_or_create(&KindLabels { kind });
            c.inc_by(total.saturating_sub(c.get()));
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// For metrics defined elsewhere (the HTTP server's) to join the one `/metrics`.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(m: &Metrics) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, m.registry()).unwrap();
        out
    }

    fn line<'a>(text: &'a str, name: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
    }

    #[test]
    fn the_watch_lag_follows_what_etcd_reported_and_what_the_view_holds() {
        let m = Metrics::new();
        let store = m.store_observer();
        m.watched(40);
        // Another replica's commits, reported by a read or the probe: behind, not timed.
        store.revision(55, false);
        let text = rendered(&m);
        assert_eq!(
            line(&text, "nethouse_store_watch_lag_revisions"),
            Some("15")
        );
        assert_eq!(
            line(&text, "nethouse_store_watch_lag_seconds_count"),
            Some("0")
        );
        // Our own commit at 57, then the watch brings everything up to it: one lag timed.
        store.revision(57, true);
        m.watched(57);
        let text = rendered(&m);
        assert_eq!(line(&text, "nethouse_store_watch_lag_revisions"), Some("0"));
        assert_eq!(
            line(&text, "nethouse_store_watch_lag_seconds_count"),
            Some("1")
        );
        assert_eq!(line(&text, "nethouse_store_watched_revision"), Some("57"));
    }

    #[test]
    fn lost_races_are_exported_as_the_view_counts_them_and_every_kind_from_zero() {
        let m = Metrics::new();
        let text = rendered(&m);
        assert_eq!(
            line(&text, r#"nethouse_ipam_lost_races_total{kind="subnet"}"#),
            Some("0")
        );
        m.lost_races(&[("address", 3), ("subnet", 0)]);
        m.lost_races(&[("address", 5), ("subnet", 1)]);
        let text = rendered(&m);
        assert_eq!(
            line(&text, r#"nethouse_ipam_lost_races_total{kind="address"}"#),
            Some("5")
        );
        assert_eq!(
            line(&text, r#"nethouse_ipam_lost_races_total{kind="subnet"}"#),
            Some("1")
        );
        assert_eq!(
            line(&text, r#"nethouse_ipam_lost_races_total{kind="lease"}"#),
            Some("0")
        );
    }
}
