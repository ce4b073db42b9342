//! `/healthz`, `/readyz` and `/metrics` of every replica, served by
//! [`nethouse_runtime::serve::serve`].
//!
//! A standby is healthy and ready: readiness means "can take over", and the Service in front
//! (metrics) should reach every replica. Only a replica on its way out (SIGTERM) answers 503, so
//! that it leaves the Service's endpoints before its listener closes.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nethouse_runtime::serve::Draining;

use crate::metrics::Metrics;

#[derive(Clone)]
struct Health {
    metrics: Arc<Metrics>,
    draining: Arc<Draining>,
}

async fn readyz(State(h): State<Health>) -> Response {
    if h.draining.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else {
        (StatusCode::OK, "ready").into_response()
    }
}

async fn metrics_handler(State(h): State<Health>) -> Response {
    nethouse_runtime::metrics::response(h.metrics.registry())
}

pub fn router(metrics: Arc<Metrics>, draining: Arc<Draining>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(Health { metrics, draining })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nethouse_runtime::serve::{DrainArgs, serve};

    use super::*;

    #[tokio::test]
    async fn ready_until_draining_and_metrics_in_openmetrics() {
        let metrics = Arc::new(Metrics::new());
        metrics.leader.set(1);
        let draining = Arc::new(Draining::default());
        let serving = serve(
            router(metrics, draining.clone()),
            "127.0.0.1:0".parse().unwrap(),
            None,
            &Default::default(),
        )
        .await
        .unwrap();
        let url = serving.url();
        let http = reqwest::Client::new();
        let get = |path: &'static str| {
            let (http, url) = (http.clone(), url.clone());
            async move { http.get(format!("{url}{path}")).send().await.unwrap() }
        };

        assert_eq!(get("/healthz").await.status(), 200);
        assert_eq!(get("/readyz").await.status(), 200);
        let m = get("/metrics").await;
        assert_eq!(m.status(), 200);
        assert_eq!(
            m.headers()[axum::http::header::CONTENT_TYPE],
            nethouse_runtime::metrics::CONTENT_TYPE_OPENMETRICS
        );
        let body = m.text().await.unwrap();
        assert!(body.contains("nethouse_controller_leader 1"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");

        let stop = tokio::spawn({
            let draining = draining.clone();
            async move {
                let args = DrainArgs {
                    shutdown_delay: Duration::from_millis(500),
                    shutdown_grace: Duration::from_secs(1),
                };
                serving.drain(&draining, args).await
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(get("/readyz").await.status(), 503);
        assert_eq!(get("/healthz").await.status(), 200, "draining is not sick");
        stop.await.unwrap();
    }
}
