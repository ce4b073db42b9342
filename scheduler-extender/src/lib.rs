//! `nethouse-scheduler-extender`: the kube-scheduler HTTP extender. A fixed pod whose Location
//! exists may only go to nodes of the Location's zone; every other node is
//! FailedAndUnresolvable with a reason naming the pod, its IP and both zones. A fixed pod with no
//! Location yet may go to any zone that still has free addresses. Other pods pass untouched.
//!
//! `protocol` reads and writes the scheduler's wire format, `decide` makes the pure decisions,
//! `index` holds what the decisions need (nodes' zones, Locations, zone capacity), `server` is
//! the HTTP surface.
#![forbid(unsafe_code)]

pub mod decide;
pub mod index;
pub mod protocol;
pub mod server;
pub mod watch;
pub mod writer;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A running extender: its HTTP server, watchers and writer.
pub struct Running {
    pub addr: SocketAddr,
    pub tls: bool,
    pub index: Arc<RwLock<index::Index>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
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
    /// (certificate chain, key) PEM files: serve HTTPS (the scheduler config then sets
    /// `enableHTTPS: true` and `tlsConfig.caFile`).
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Starts the watchers, the Location writer and the HTTP server.
pub async fn start(
    client: kube::Client,
    nethouse: nethouse_api::Client,
    opts: Options,
) -> anyhow::Result<Running> {
    let index = Arc::new(RwLock::new(index::Index::default()));
    let mut tasks = watch::start(client.clone(), nethouse, index.clone(), opts.zones_refresh);
    tasks.push(tokio::spawn(writer::run(
        client,
        index.clone(),
        opts.cluster,
    )));
    let ext = Arc::new(server::Extender {
        view: index.clone(),
        metrics: Default::default(),
    });
    let (addr, server) = server::serve(server::router(ext), opts.listen, opts.tls.clone()).await?;
    tasks.push(server);
    tracing::info!(address = %addr, "scheduler extender serving");
    Ok(Running {
        addr,
        tls: opts.tls.is_some(),
        index,
        tasks,
    })
}
