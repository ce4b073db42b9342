//! Starting and stopping a NetHouse server: used by `nethouse serve`, and by tests and demos of
//! other components that need a real NetHouse in their own process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    #[error("loading --tls-cert/--tls-key: {0}")]
    LoadTls(#[source] std::io::Error),
    #[error("could not listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the server task ended before it listened: {0}")]
    ServerTask(#[source] tokio::task::JoinError),
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
        }
    }
}

pub struct Running {
    pub addr: SocketAddr,
    pub tls: bool,
    pub app: Arc<App<EmbeddedStore>>,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops taking connections, lets in-flight requests finish within `grace`, and closes the
    /// store (its writer drains what was queued).
    pub async fn shutdown(self, grace: Duration) {
        // One deadline for both waits, so the whole stop stays within `grace`.
        let deadline = Instant::now() + grace;
        self.app.set_ready(false);
        self.handle.graceful_shutdown(Some(grace));
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "server error"),
            Err(e) => tracing::error!(error = %e, "server task failed"),
        }
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
    let metrics = Metrics::new();
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
    let service = router(app.clone()).into_make_service();
    let handle = axum_server::Handle::new();
    let task = {
        let handle = handle.clone();
        let listen = opts.listen;
        match &opts.tls {
            Some((cert, key)) => {
                let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .map_err(StartError::LoadTls)?;
                tokio::spawn(async move {
                    axum_server::bind_rustls(listen, tls)
                        .handle(handle)
                        .serve(service)
                        .await
                })
            }
            None => tokio::spawn(async move {
                axum_server::bind(listen)
                    .handle(handle)
                    .serve(service)
                    .await
            }),
        }
    };
    let Some(addr) = handle.listening().await else {
        let source = match task.await.map_err(StartError::ServerTask)? {
            Err(e) => e,
            // axum-server gives up listening only with an error; should that change, say so.
            Ok(()) => std::io::Error::other("the server stopped without listening"),
        };
        return Err(StartError::Listen {
            addr: opts.listen,
            source,
        });
    };
    tracing::info!(address = %addr, tls = opts.tls.is_some(), "serving");
    Ok(Running {
        addr,
        tls: opts.tls.is_some(),
        app,
        handle,
        task,
    })
}
