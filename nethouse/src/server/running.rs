//! Starting and stopping a NetHouse server: used by `nethouse serve`, and (through
//! [`start_local`]) by tests, demos and benches of other components that need a real NetHouse in
//! their own process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nethouse_api::{Client, ClientConfig, ClientError, SubnetSpec};
use nethouse_runtime::limits::{HttpLimits, HttpMetrics};
use nethouse_runtime::serve::{DrainArgs, Draining, Http, Serving};

use super::{App, Auth, router};
use crate::clock::SystemClock;
use crate::ipam::{Ipam, IpamConfig, IpamError};
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::any::AnyStore;
use crate::store::embedded::EmbeddedStore;
use crate::store::etcd::{ConnectError, EtcdOptions, EtcdStore};

/// Why a server did not start; each names the step (and the flag) that failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("--data-dir: {0}")]
    OpenStore(#[source] StoreError),
    /// The error names the `--etcd-*` flag to fix.
    #[error(transparent)]
    ConnectEtcd(ConnectError),
    #[error("reading the store back: {0}")]
    ReadStore(#[source] IpamError),
    /// The TLS files or the listen address (the error names which).
    #[error(transparent)]
    Serve(nethouse_runtime::Error),
}

/// Why [`start_local`] failed: the server, its client, or a subnet (named by zone and CIDR).
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("starting NetHouse: {0}")]
    Start(#[source] StartError),
    #[error("a client of {url}: {source}")]
    Client {
        url: String,
        #[source]
        source: ClientError,
    },
    #[error("adding subnet {cidr} in zone {zone}: {source}")]
    AddSubnet {
        zone: String,
        cidr: String,
        #[source]
        source: ClientError,
    },
}

/// Where the leases are kept.
#[derive(Clone, Debug)]
pub enum StoreOptions {
    /// One redb file in this directory: one replica.
    Embedded { data_dir: PathBuf },
    /// etcd: several replicas, each serving reads and writes.
    Etcd(EtcdOptions),
}

#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub listen: SocketAddr,
    pub store: StoreOptions,
    pub auth: Auth,
    /// (certificate chain, key), PEM files.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub default_cooldown: Duration,
    /// State-changing calls that may run at once; more are refused with 503.
    pub max_in_flight: usize,
    /// Timeouts and the connection limit of the HTTP server.
    pub http: HttpLimits,
}

impl ServerOptions {
    /// Loopback, any free port, no auth, no TLS: for tests and demos.
    pub fn local(data_dir: impl Into<PathBuf>) -> Self {
        ServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            store: StoreOptions::Embedded {
                data_dir: data_dir.into(),
            },
            auth: Auth::Disabled,
            tls: None,
            default_cooldown: Duration::from_secs(60),
            max_in_flight: super::DEFAULT_MAX_IN_FLIGHT,
            http: HttpLimits::default(),
        }
    }
}

pub struct Running {
    pub addr: SocketAddr,
    pub tls: bool,
    pub app: Arc<App<AnyStore>>,
    serving: Serving,
}

impl Running {
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops at once: no new connections, in-flight requests finish within `grace`, then the
    /// store closes (its writer drains what was queued). For tests and demos.
    pub async fn shutdown(self, grace: Duration) {
        self.stop(DrainArgs {
            shutdown_delay: Duration::ZERO,
            shutdown_grace: grace,
        })
        .await
    }

    /// Stops as Kubernetes expects: `/readyz` answers 503 for `shutdown_delay` while requests
    /// are still taken (so the Service sends no new ones), then the listener closes, in-flight
    /// requests finish within `shutdown_grace`, and the store closes.
    pub async fn stop(self, drain: DrainArgs) {
        // One deadline for both waits, so the whole stop stays within delay + grace.
        let deadline = Instant::now() + drain.shutdown_delay + drain.shutdown_grace;
        self.app.set_ready(false);
        self.serving.drain(&Draining::default(), drain).await;
        // State-changing calls run on their own tasks, counted until they end (see
        // `handlers::to_completion`): the store closes after their commits, not under them.
        let running = || self.app.metrics.mutations_in_flight.get();
        while running() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if running() > 0 {
            tracing::warn!(
                calls = running(),
                "calls still running at the end of the grace period; the store closes after them"
            );
        }
        drop(self.app);
    }
}

/// Opens the store, reads it back, and serves until [`Running::shutdown`].
pub async fn start(opts: ServerOptions) -> Result<Running, StartError> {
    let started = Instant::now();
    let mut metrics = Metrics::new();
    let http = Http {
        limits: opts.http,
        metrics: HttpMetrics::default(),
    };
    http.metrics.register(metrics.registry_mut());
    opts.auth.register_metrics(metrics.registry_mut());
    let store = match &opts.store {
        StoreOptions::Embedded { data_dir } => AnyStore::Embedded(
            EmbeddedStore::open_observed(data_dir, metrics.store_observer())
                .map_err(StartError::OpenStore)?,
        ),
        StoreOptions::Etcd(etcd) => {
            let store = EtcdStore::connect(etcd, Some(metrics.store_observer()))
                .await
                .map_err(StartError::ConnectEtcd)?;
            tracing::info!(
                endpoints = %etcd.endpoints.join(","),
                prefix = %etcd.prefix,
                tls = etcd.tls.is_some(),
                user = etcd.user.as_ref().map(|(u, _)| u.as_str()),
                "store: etcd"
            );
            AnyStore::Etcd(Box::new(store))
        }
    };
    let ipam = Ipam::load(
        store,
        Arc::new(SystemClock),
        IpamConfig {
            default_cooldown_ms: opts.default_cooldown.as_millis() as u64,
        },
    )
    .await
    .map_err(StartError::ReadStore)?;
    let subnets = ipam.subnets();
    let leases: u64 = subnets
        .iter()
        .map(|s| s.usage.attached + s.usage.retained)
        .sum();
    tracing::info!(
        subnets = subnets.len(),
        addresses_leased = leases,
        load_ms = started.elapsed().as_millis() as u64,
        "store loaded"
    );
    let app = App::with_metrics(ipam, opts.auth, opts.max_in_flight, metrics);
    let tls = opts
        .tls
        .clone()
        .map(|(cert, key)| nethouse_runtime::tls::Tls::server(cert, key));
    let serving =
        nethouse_runtime::serve::serve(router(app.clone()), opts.listen, tls.as_ref(), &http)
            .await
            .map_err(StartError::Serve)?;
    let addr = serving.addr;
    tracing::info!(address = %addr, tls = opts.tls.is_some(), "serving");
    Ok(Running {
        addr,
        tls: opts.tls.is_some(),
        app,
        serving,
    })
}

/// The starter for tests, demos and benches: a NetHouse in this process as
/// [`ServerOptions::local`] makes it (loopback, a free port, no auth, no TLS; embedded store
/// under `data_dir`) with `cooldown`, given one subnet per `(zone, cidr)` through its own API,
/// and a client of it. Stop it with [`Running::shutdown`]. To bring it back on the same port and
/// store: [`start`] with `ServerOptions::local(data_dir)`, the same cooldown and `listen` set to
/// the old `running.addr`.
pub async fn start_local(
    data_dir: impl Into<PathBuf>,
    cooldown: Duration,
    subnets: &[(&str, &str)],
) -> Result<(Running, Client), LocalError> {
    let mut opts = ServerOptions::local(data_dir);
    opts.default_cooldown = cooldown;
    let running = start(opts).await.map_err(LocalError::Start)?;
    let url = running.url();
    let client = Client::new(ClientConfig::new(url.clone()))
        .map_err(|source| LocalError::Client { url, source })?;
    for (zone, cidr) in subnets {
        let spec = SubnetSpec {
            zone: zone.to_string(),
            cidr: cidr.to_string(),
            ..Default::default()
        };
        client
            .add_subnet(&spec)
            .await
            .map_err(|source| LocalError::AddSubnet {
                zone: spec.zone.clone(),
                cidr: spec.cidr.clone(),
                source,
            })?;
    }
    Ok((running, client))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::start_local;

    #[tokio::test]
    async fn start_local_serves_its_subnets_and_names_a_refused_one() {
        let dir = tempfile::tempdir().unwrap();
        let subnets = [("z1", "10.1.0.0/24"), ("z2", "10.2.0.0/24")];
        let (running, client) = start_local(dir.path().join("a"), Duration::ZERO, &subnets)
            .await
            .unwrap();
        let mut got: Vec<(String, String)> = client
            .list_subnets()
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.zone, s.cidr))
            .collect();
        got.sort();
        let want: Vec<(String, String)> = subnets
            .iter()
            .map(|(z, c)| (z.to_string(), c.to_string()))
            .collect();
        assert_eq!(got, want);
        running.shutdown(Duration::from_secs(1)).await;

        let refused = start_local(
            dir.path().join("b"),
            Duration::ZERO,
            &[("z1", "10.1.0.0/33")],
        )
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(
            refused.starts_with("adding subnet 10.1.0.0/33 in zone z1: "),
            "{refused}"
        );
    }
}
