//! HTTP: `POST /filter`, `POST /prioritize` (the verbs named in the KubeSchedulerConfiguration),
//! `/healthz`, `/readyz` (only once the caches are synced, and 503 again once the process
//! drains), `/metrics`. A body that cannot be read is a 400 with a message — never a panic or
//! a 5xx.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nethouse_runtime::serve::Draining;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::filter::{filter, prioritize};
use crate::index::View;
use crate::metrics::{Metrics, VerbLabels};
use crate::protocol::ProtocolError;

pub struct Extender<V: View> {
    pub view: V,
    pub metrics: Arc<Metrics>,
    /// Set when the process stops: `/readyz` answers 503 from then on.
    pub draining: Arc<Draining>,
    pub limits: RequestLimits,
}

/// What one scheduler call may cost. A body is held whole while it is decided (and, with
/// `nodeCacheCapable: false`, the kept Nodes are copied into the answer), so memory is bounded
/// by how many calls are decided at once times their size; calls past the bound wait their turn.
/// The health endpoints do not wait: they stay answerable under any load of calls.
pub struct RequestLimits {
    /// `--max-body-bytes`: 5,000 full Node objects as the scheduler sends them with
    /// `nodeCacheCapable: false` (up to ~13 KB each with the node's image list) and margin.
    pub max_body: usize,
    /// `--max-concurrent-requests` permits.
    pub concurrent: Arc<Semaphore>,
}

pub const DEFAULT_MAX_BODY: usize = 96 << 20;
pub const DEFAULT_MAX_CONCURRENT: usize = 2;

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_body: DEFAULT_MAX_BODY,
            concurrent: Arc::new(Semaphore::new(DEFAULT_MAX_CONCURRENT)),
        }
    }
}

/// Waits for a turn, then reads the whole body within `--max-body-bytes`; the turn is held
/// until the answer is made.
async fn read_body<V: View>(
    ext: &Extender<V>,
    body: Body,
) -> Result<(Bytes, OwnedSemaphorePermit), Response> {
    let Ok(turn) = ext.limits.concurrent.clone().acquire_owned().await else {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response());
    };
    match axum::body::to_bytes(body, ext.limits.max_body).await {
        Ok(bytes) => Ok((bytes, turn)),
        Err(e) => {
            let too_big = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            Err(if too_big {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "nethouse-scheduler-extender: request body over --max-body-bytes ({} bytes)",
                        ext.limits.max_body
                    ),
                )
                    .into_response()
            } else {
                bad_request(ProtocolError(format!("body: {e}")))
            })
        }
    }
}

fn observe<V: View>(ext: &Extender<V>, verb: &'static str, result: &'static str, start: Instant) {
    let l = VerbLabels { verb, result };
    ext.metrics.requests.get_or_create(&l).inc();
    ext.metrics
        .duration
        .get_or_create(&l)
        .observe(start.elapsed().as_secs_f64());
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn bad_request(e: ProtocolError) -> Response {
    (
        StatusCode::BAD_REQUEST,
        format!("nethouse-scheduler-extender: malformed request: {e}"),
    )
        .into_response()
}

async fn filter_handler<V: View>(State(ext): State<Arc<Extender<V>>>, body: Body) -> Response {
    let (body, _turn) = match read_body(&ext, body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let start = Instant::now();
    match filter(&ext.view, &body) {
        Ok((answer, decided)) => {
            observe(
                &ext,
                "filter",
                if decided { "decided" } else { "passthrough" },
                start,
            );
            json(answer)
        }
        Err(e) => {
            observe(&ext, "filter", "bad_request", start);
            bad_request(e)
        }
    }
}

async fn prioritize_handler<V: View>(State(ext): State<Arc<Extender<V>>>, body: Body) -> Response {
    let (body, _turn) = match read_body(&ext, body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let start = Instant::now();
    match prioritize(&ext.view, &body) {
        Ok(answer) => {
            observe(&ext, "prioritize", "decided", start);
            json(answer)
        }
        Err(e) => {
            observe(&ext, "prioritize", "bad_request", start);
            bad_request(e)
        }
    }
}

async fn readyz<V: View>(State(ext): State<Arc<Extender<V>>>) -> Response {
    if ext.draining.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else if ext.view.ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet").into_response()
    }
}

async fn metrics<V: View>(State(ext): State<Arc<Extender<V>>>) -> Response {
    nethouse_runtime::metrics::response(&ext.metrics.registry)
}

pub fn router<V: View>(ext: Arc<Extender<V>>) -> Router {
    Router::new()
        .route("/filter", post(filter_handler::<V>))
        .route("/prioritize", post(prioritize_handler::<V>))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz::<V>))
        .route("/metrics", get(metrics::<V>))
        .with_state(ext)
}
