//! Starting and stopping a NetHouse server: used by `nethouse serve`, and by tests and demos of
//! other components that need a real NetHouse in their own process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nethouse_runtime::limits::{HttpLimits, HttpMetrics};
use nethouse_runtime::serve::{DrainArgs, Draining, Http, Serving};

use super::{App, Auth, router};
use crate::clock::SystemClock;
use crate::ipam::{Ipam, IpamConfig, IpamError};
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::embedded::EmbeddedStore;

/// Why a server did not start; each names the step (and the flag) that failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("--data-dir: {0}")]
    OpenStore(#[source] StoreError),
    #[error("reading the store back: {0}")]
    ReadStore(#[source] IpamError),
    /// The TLS files or the listen address (the error names which).
    #[error(transparent)]
    Serve(nethouse_runtime::Error),
}

#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
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
            data_dir: data_dir.into(),
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
    pub app: Arc<App<EmbeddedStore>>,
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
    let store = EmbeddedStore::open_observed(&opts.data_dir, metrics.on_commit())
        .map_err(StartError::OpenStore)?;
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
    let serving =
        nethouse_runtime::serve::serve(router(app.clone()), opts.listen, opts.tls.clone(), &http)
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
