//! The `/metrics` answer of a prometheus-client registry, in the OpenMetrics text format
//! Prometheus negotiates.

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;

pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn response(registry: &Registry) -> Response {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        // Only a formatter error into a String: never expected, but never a panic either.
        tracing::error!(error = %e, "encoding metrics failed");
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "encoding failed",
        )
            .into_response();
    }
    ([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], out).into_response()
}
