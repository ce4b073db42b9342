//! `nethouse-scheduler-extender`: the kube-scheduler HTTP extender. A fixed pod whose Location
//! exists may only go to nodes of the Location's zone; every other node is
//! FailedAndUnresolvable with a reason naming the pod, its IP and both zones. A fixed pod with no
//! Location yet may go to any zone that still has free addresses. Other pods pass untouched.
//!
//! `protocol` reads and writes the scheduler's wire format, `decide` makes the pure decisions
//! and `filter` applies them to a request, `index` holds what the decisions need (nodes'
//! zones, Locations, zone capacity) and `watch`/`capacity` keep it current, `writer` writes
//! the Locations, `server` is the HTTP surface.
#![forbid(unsafe_code)]

pub mod capacity;
pub mod decide;
pub mod filter;
pub mod index;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod watch;
pub mod writer;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use nethouse_runtime::limits::HttpLimits;
use nethouse_runtime::serve::{DrainArgs, Draining, Http, Serving};

/// A running extender: its HTTP server, watchers and writer.
pub struct Running {
    pub addr: SocketAddr,
    pub tls: bool,
    pub index: Arc<RwLock<index::Index>>,
    pub metrics: Arc<metrics::Metrics>,
    draining: Arc<Draining>,
    serving: Option<Serving>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops the way Kubernetes expects: `/readyz` 503 while requests are still taken, then
    /// the listener closes and requests in flight finish; the watchers and writer stop last.
    pub async fn drain(mut self, drain: DrainArgs) {
        if let Some(serving) = self.serving.take() {
            serving.drain(&self.draining, drain).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub listen: SocketAddr,
    pub cluster: String,
    pub zones_refresh: Duration,
    /// Serve HTTPS (the scheduler config then sets `enableHTTPS: true` and `tlsConfig.caFile`);
    /// with a client CA, only clients with a certificate it signed (the scheduler's
    /// `tlsConfig.certFile`/`keyFile`) may call.
    pub tls: Option<nethouse_runtime::tls::Tls>,
    /// Timeouts and the connection limit of the HTTP server.
    pub http: HttpLimits,
    /// The largest request body (`--max-body-bytes`).
    pub max_body: usize,
    /// Scheduler calls decided at once (`--max-concurrent-requests`); more wait their turn.
    pub max_concurrent: usize,
}

/// Starts the watchers, the Location writer and the HTTP server.
pub async fn start(
    client: kube::Client,
    nethouse: nethouse_api::Client,
    opts: Options,
) -> Result<Running, nethouse_runtime::Error> {
    let index = Arc::new(RwLock::new(index::Index::default()));
    let metrics = Arc::new(metrics::Metrics::default());
    let draining = Arc::new(Draining::default());
    let mut tasks = watch::start(client.clone(), index.clone());
    tasks.push(tokio::spawn(capacity::poll_zones(
        nethouse,
        index.clone(),
        opts.zones_refresh,
    )));
    tasks.push(tokio::spawn(writer::run(
        client,
        index.clone(),
        opts.cluster,
        metrics.clone(),
    )));
    let ext = Arc::new(server::Extender {
        view: index.clone(),
        metrics: metrics.clone(),
        draining: draining.clone(),
        limits: server::RequestLimits {
            max_body: opts.max_body,
            concurrent: Arc::new(tokio::sync::Semaphore::new(opts.max_concurrent)),
        },
    });
    let http = Http {
        limits: opts.http,
        metrics: metrics.http.clone(),
    };
    let serving = match nethouse_runtime::serve::serve(
        server::router(ext),
        opts.listen,
        opts.tls.as_ref(),
        &http,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            for t in tasks {
                t.abort();
            }
            return Err(e);
        }
    };
    tracing::info!(address = %serving.addr, "scheduler extender serving");
    Ok(Running {
        addr: serving.addr,
        tls: serving.tls,
        index,
        metrics,
        draining,
        serving: Some(serving),
        tasks,
    })
}
