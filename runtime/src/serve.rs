//! Serving a binary's HTTP(S) endpoints and stopping them the way Kubernetes expects: on the
//! stop signal `/readyz` turns 503 first while connections are still taken (so that endpoint
//! controllers and load balancers see it and send no new work), then the listener closes and
//! requests already in flight finish within a grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum_server::accept::DefaultAcceptor;
use tokio::sync::Semaphore;

use crate::Error;
use crate::limits::{HttpLimits, HttpMetrics, LimitAcceptor, request_timeout};
use crate::tls::Tls;

/// Whether the process is on its way out; `/readyz` handlers answer 503 once it is.
#[derive(Debug, Default)]
pub struct Draining(AtomicBool);

impl Draining {
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub fn start(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// How a stop proceeds: `delay` with `/readyz` 503 and the listener open, then at most `grace`
/// for in-flight requests.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct DrainArgs {
    /// After SIGTERM, how long `/readyz` says 503 while requests are still taken.
    #[arg(long, default_value = "5s", value_parser = nethouse_api::duration::parse_duration)]
    pub shutdown_delay: Duration,
    /// Then, how long requests in flight may take to finish.
    #[arg(long, default_value = "20s", value_parser = nethouse_api::duration::parse_duration)]
    pub shutdown_grace: Duration,
}

pub struct Serving {
    pub addr: SocketAddr,
    pub tls: bool,
    handle: axum_server::Handle<SocketAddr>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Serving {
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops as described in the module doc; returns once the server has closed.
    pub async fn drain(mut self, draining: &Draining, drain: DrainArgs) {
        draining.start();
        tracing::info!(
            delay_ms = drain.shutdown_delay.as_millis() as u64,
            grace_ms = drain.shutdown_grace.as_millis() as u64,
            "draining: /readyz answers 503; in-flight requests finish"
        );
        tokio::time::sleep(drain.shutdown_delay).await;
        self.handle.graceful_shutdown(Some(drain.shutdown_grace));
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "server error"),
                Err(e) => tracing::error!(error = %e, "server task failed"),
            }
        }
        tracing::info!(
            connections_left = self.handle.connection_count(),
            "stopped serving"
        );
    }
}

impl Drop for Serving {
    /// A server dropped without `drain` (tests, a failed start) stops at once.
    fn drop(&mut self) {
        if self.task.is_some() {
            self.handle.shutdown();
        }
    }
}

/// The limits a server keeps and the metrics it counts them in.
#[derive(Clone, Debug, Default)]
pub struct Http {
    pub limits: HttpLimits,
    pub metrics: HttpMetrics,
}

/// Serves `app` on `listen`, over TLS when `tls` is given (with client certificates required
/// when it names a client CA),
/// within `http`'s limits.
pub async fn serve(
    app: Router,
    listen: SocketAddr,
    tls: Option<&Tls>,
    http: &Http,
) -> Result<Serving, Error> {
    let handle = axum_server::Handle::new();
    let (timeout, metrics) = (http.limits.http_request_timeout, http.metrics.clone());
    let app = app.layer(axum::middleware::from_fn(move |req, next| {
        request_timeout(timeout, metrics.clone(), req, next)
    }));
    let service = app.into_make_service();
    let limit = LimitAcceptor {
        inner: DefaultAcceptor,
        permits: Arc::new(Semaphore::new(http.limits.max_connections())),
        metrics: http.metrics.clone(),
    };
    let header_timeout = http.limits.http_header_timeout;
    let task = match &tls {
        Some(tls) => {
            let config = crate::tls::config(tls).await?;
            // The handshake is bounded like a request head: a client that opens a TLS
            // connection and stalls holds it no longer.
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config)
                .handshake_timeout(header_timeout)
                .acceptor(limit);
            // The first-request timeout also bounds the protocol detection (HTTP/1 or 2) that
            // runs before hyper's header timer: a client that sends nothing would wait there.
            let mut server = axum_server::bind(listen)
                .acceptor(acceptor)
                .first_request_timeout(header_timeout);
            server
                .http_builder()
                .http1()
                .header_read_timeout(header_timeout);
            let handle = handle.clone();
            tokio::spawn(async move { server.handle(handle).serve(service).await })
        }
        None => {
            let mut server = axum_server::bind(listen)
                .acceptor(limit)
                .first_request_timeout(header_timeout);
            server
                .http_builder()
                .http1()
                .header_read_timeout(header_timeout);
            let handle = handle.clone();
            tokio::spawn(async move { server.handle(handle).serve(service).await })
        }
    };
    let Some(addr) = handle.listening().await else {
        let source = match task.await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => std::io::Error::other("the server stopped before listening"),
            Err(e) => std::io::Error::other(e),
        };
        return Err(Error::Listen {
            addr: listen,
            source,
        });
    };
    Ok(Serving {
        addr,
        tls: tls.is_some(),
        handle,
        task: Some(task),
    })
}

/// Shared by the server's `/readyz` and the code that starts a drain.
pub type SharedDraining = Arc<Draining>;

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A request that is half sent when the drain starts is answered; `/readyz` is 503 during
    /// the delay; after it no new connection is taken.
    #[tokio::test]
    async fn drain_answers_in_flight_and_turns_readyz_red_first() {
        let draining: SharedDraining = Arc::default();
        let d = draining.clone();
        let app = Router::new()
            .route(
                "/readyz",
                get(move || {
                    let d = d.clone();
                    async move {
                        if d.is_draining() {
                            (axum::http::StatusCode::SERVICE_UNAVAILABLE, "draining")
                        } else {
                            (axum::http::StatusCode::OK, "ready")
                        }
                    }
                }),
            )
            .route("/echo", axum::routing::post(|b: String| async move { b }));
        let serving = serve(app, "127.0.0.1:0".parse().unwrap(), None, &Http::default())
            .await
            .unwrap();
        let url = serving.url();
        let addr = serving.addr;
        let http = reqwest::Client::new();
        assert_eq!(
            http.get(format!("{url}/readyz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );

        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nhello")
            .await
            .unwrap();
        let args = DrainArgs {
            shutdown_delay: Duration::from_millis(600),
            shutdown_grace: Duration::from_secs(5),
        };
        let started = Instant::now();
        let stop = tokio::spawn({
            let draining = draining.clone();
            async move { serving.drain(&draining, args).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let fresh = reqwest::Client::new();
        assert_eq!(
            fresh
                .get(format!("{url}/readyz"))
                .send()
                .await
                .unwrap()
                .status(),
            503
        );
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "the listener is closed after the delay"
        );
        slow.write_all(b"world").await.unwrap();
        let mut answer = String::new();
        slow.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("helloworld"), "{answer}");
        stop.await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_port_in_use_is_named() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = serve(Router::new(), addr, None, &Http::default())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with(&format!("could not listen on {addr}: ")),
            "{e}"
        );
    }
}
