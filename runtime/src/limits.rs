//! What keeps one slow or idle client from costing everyone else: a request's head must arrive
//! within `--http-header-timeout` (the same timer closes a keep-alive connection that stays
//! idle that long), a whole request within `--http-request-timeout` (a body trickling in is cut
//! off with 408), and at most `--http-max-connections` connections are open at once (the next
//! is closed as soon as it is accepted, long before the process runs out of file descriptors,
//! which would leave nobody served). Each cut is counted.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(clap::Args, Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's head must arrive within this; a keep-alive connection idle this long closes.
    #[arg(long, default_value = "30s", value_parser = nethouse_api::duration::parse_duration)]
    pub http_header_timeout: Duration,
    /// A whole request (head, body and answer) must be done within this, else 408.
    #[arg(long, default_value = "60s", value_parser = nethouse_api::duration::parse_duration)]
    pub http_request_timeout: Duration,
    /// Connections open at once; past it a new one is closed at once (0: three quarters of the
    /// process's open-file limit).
    #[arg(long, default_value_t = 0)]
    pub http_max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            http_header_timeout: Duration::from_secs(30),
            http_request_timeout: Duration::from_secs(60),
            http_max_connections: 0,
        }
    }
}

impl HttpLimits {
    /// The connection limit in force: the flag, or three quarters of the open-file limit (the
    /// rest is for the store, logs and outgoing connections), at least 64.
    pub fn max_connections(&self) -> usize {
        if self.http_max_connections > 0 {
            return self.http_max_connections;
        }
        open_file_limit().map_or(768, |n| (n / 4 * 3).max(64))
    }
}

/// The soft `Max open files` of this process, from `/proc/self/limits` (Linux).
fn open_file_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&text)
}

fn parse_open_file_limit(text: &str) -> Option<usize> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    // "unlimited" has no number: no limit to stay under, so a generous one.
    Some(soft.parse().unwrap_or(1 << 20))
}

/// `<prefix>_http_*` metrics of one server.
#[derive(Clone, Debug, Default)]
pub struct HttpMetrics {
    pub connections: Gauge,
    pub connections_refused: Counter,
    pub request_timeouts: Counter,
}

impl HttpMetrics {
    /// Registers under `registry`'s prefix, e.g. `nethouse_http_connections`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("http");
        r.register(
            "connections",
            "Connections open now",
            self.connections.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed at once because --http-max-connections were open",
            self.connections_refused.clone(),
        );
        r.register(
            "request_timeouts",
            "Requests cut off by --http-request-timeout (408)",
            self.request_timeouts.clone(),
        );
    }
}

/// Wraps the connection acceptor: a connection holds a permit for as long as it is open.
#[derive(Clone)]
pub struct LimitAcceptor<A> {
    pub inner: A,
    pub permits: Arc<Semaphore>,
    pub metrics: HttpMetrics,
}

impl<A, I, S> axum_server::accept::Accept<I, S> for LimitAcceptor<A>
where
    A: axum_server::accept::Accept<Counted<I>, S> + Clone + Send + 'static,
    A::Future: Send,
    I: Send + 'static,
    S: Send + 'static,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future =
        Pin<Box<dyn std::future::Future<Output = io::Result<(A::Stream, A::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.metrics.connections_refused.inc();
            // Dropping the stream closes it; axum-server logs nothing for an acceptor error.
            return Box::pin(async { Err(io::Error::other("connection limit reached")) });
        };
        self.metrics.connections.inc();
        let counted = Counted {
            inner: stream,
            _permit: permit,
            gauge: self.metrics.connections.clone(),
        };
        let inner = self.inner.clone();
        Box::pin(async move { inner.accept(counted, service).await })
    }
}

/// A connection that gives its permit back, and counts itself out, when it closes.
pub struct Counted<I> {
    inner: I,
    _permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl<I> Drop for Counted<I> {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The middleware that cuts a request off at `--http-request-timeout` with 408.
pub async fn request_timeout(
    timeout: Duration,
    metrics: HttpMetrics,
    req: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            metrics.request_timeouts.inc();
            (
                StatusCode::REQUEST_TIMEOUT,
                format!("request not done within {timeout:?} (--http-request-timeout)"),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_follows_the_open_file_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_open_file_limit(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_file_limit(unlimited), Some(1 << 20));
        assert_eq!(parse_open_file_limit("nothing"), None);
        let set = HttpLimits {
            http_max_connections: 10,
            ..HttpLimits::default()
        };
        assert_eq!(set.max_connections(), 10);
        assert!(HttpLimits::default().max_connections() >= 64);
    }
}
