//! HTTP: `POST /filter`, `POST /prioritize` (the verbs named in the KubeSchedulerConfiguration),
//! `/healthz`, `/readyz` (only once the caches are synced, and 503 again once the process
//! drains), `/metrics`. A body that cannot be read is a 400 with a message — never a panic or
//! a 5xx.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nethouse_runtime::serve::Draining;

use crate::filter::{filter, prioritize};
use crate::index::View;
use crate::metrics::{Metrics, VerbLabels};
use crate::protocol::ProtocolError;

pub struct Extender<V: View> {
    pub view: V,
    pub metrics: Arc<Metrics>,
    /// Set when the process stops: `/readyz` answers 503 from then on.
    pub draining: Arc<Draining>,
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

async fn filter_handler<V: View>(State(ext): State<Arc<Extender<V>>>, body: Bytes) -> Response {
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

async fn prioritize_handler<V: View>(State(ext): State<Arc<Extender<V>>>, body: Bytes) -> Response {
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
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
        .with_state(ext)
}
