//! HTTP: `POST /filter`, `POST /prioritize` (the verbs named in the KubeSchedulerConfiguration),
//! `/healthz`, `/readyz` (only once the caches are synced), `/metrics`. A body that cannot be
//! read is a 400 with a message — never a panic or a 5xx.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nethouse_api::location::ZONE_LABEL;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::decide::{Verdict, filter_zone, score};
use crate::index::{NO_ZONE, NODE_UNKNOWN, View};
use crate::protocol::{
    Candidates, HostPriority, Kept, Name, ProtocolError, Reasons, filter_result,
    node_name_and_zone, parse_args, priority_result,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabels {
    verb: &'static str,
    /// `passthrough` (not a fixed pod), `decided`, `bad_request`.
    result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<VerbLabels, Counter>,
    duration: Family<VerbLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("nethouse_extender");
        let requests = Family::<VerbLabels, Counter>::default();
        registry.register(
            "requests",
            "Extender calls by verb and result",
            requests.clone(),
        );
        let duration = Family::<VerbLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
            ])
        });
        registry.register(
            "request_duration_seconds",
            "Extender call latency",
            duration.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
        }
    }
}

pub struct Extender<V: View> {
    pub view: V,
    pub metrics: Metrics,
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

/// The filter decision for one request body; `Err` is a 400.
pub fn filter<'a, V: View>(view: &V, body: &'a [u8]) -> Result<(String, bool), ProtocolError> {
    let args = parse_args(body)?;
    let pod = &args.pod;
    let none = Reasons::new();
    if !pod.fixed {
        // Not ours: hand the candidates back untouched.
        let kept = match args.candidates {
            Candidates::Names(n) => Kept::Names(n),
            Candidates::Nodes(n) => Kept::Nodes(n),
            Candidates::None => Kept::None,
        };
        return Ok((filter_result(kept, &none, &none, ""), false));
    }
    let location = view.location(&pod.key());
    // One verdict per distinct zone: thousands of nodes share a handful of zones. Zone names
    // are interned by the index, so a pointer comparison finds the zone without hashing it.
    let mut by_zone: Vec<(Option<Arc<str>>, Verdict)> = Vec::new();
    let mut verdict_for = |zone: Option<Arc<str>>| -> Verdict {
        let same = |z: &Option<Arc<str>>| match (z, &zone) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || **a == **b,
            (None, None) => true,
            _ => false,
        };
        if let Some((_, v)) = by_zone.iter().find(|(z, _)| same(z)) {
            return v.clone();
        }
        let v = filter_zone(pod, location.as_ref(), zone.as_deref(), |z| {
            view.zone_has_room(z)
        });
        by_zone.push((zone, v.clone()));
        v
    };
    let mut failed = Reasons::new();
    let mut unresolvable = Reasons::new();
    // The refused names move into the answer; only the kept ones come back to the caller.
    let mut sort = |node: Name<'a>, verdict: Verdict| -> Option<Name<'a>> {
        match verdict {
            Verdict::Keep => Some(node),
            Verdict::Failed(r) => {
                failed.push((node, r));
                None
            }
            Verdict::Unresolvable(r) => {
                unresolvable.push((node, r));
                None
            }
        }
    };
    let not_cached: Arc<str> = Arc::from("the node is not in the extender's cache yet");
    let kept = match args.candidates {
        Candidates::Names(names) => {
            let zones = view.node_zones(&names);
            // One verdict per code (unknown, no zone, each zone), decided on first use.
            let mut verdicts: Vec<Option<Verdict>> = vec![None; zones.zones.len() + 2];
            let mut keep = Vec::with_capacity(names.len());
            for (n, code) in names.into_iter().zip(zones.of.iter().copied()) {
                let slot = &mut verdicts[code as usize];
                let verdict = match slot {
                    Some(v) => v.clone(),
                    None => {
                        let v = match code {
                            NODE_UNKNOWN => Verdict::Failed(not_cached.clone()),
                            NO_ZONE => verdict_for(None),
                            c => verdict_for(Some(zones.zones[c as usize - 2].clone())),
                        };
                        *slot = Some(v.clone());
                        v
                    }
                };
                if let Some(n) = sort(n, verdict) {
                    keep.push(n);
                }
            }
            Kept::Names(keep)
        }
        Candidates::Nodes(items) => {
            let mut keep = Vec::with_capacity(items.len());
            for raw in items {
                let (n, zone) = node_name_and_zone(raw, ZONE_LABEL)?;
                if sort(Name::Owned(n), verdict_for(zone.map(Arc::from))).is_some() {
                    keep.push(raw);
                }
            }
            Kept::Nodes(keep)
        }
        Candidates::None => Kept::None,
    };
    Ok((filter_result(kept, &failed, &unresolvable, ""), true))
}

/// Scores for one request body; `Err` is a 400.
pub fn prioritize<V: View>(view: &V, body: &[u8]) -> Result<String, ProtocolError> {
    let args = parse_args(body)?;
    let location = if args.pod.fixed {
        view.location(&args.pod.key())
    } else {
        None
    };
    let names: Vec<Name<'_>> = match args.candidates {
        Candidates::Names(n) => n,
        Candidates::Nodes(items) => items
            .into_iter()
            .map(|raw| node_name_and_zone(raw, ZONE_LABEL).map(|(n, _)| Name::Owned(n)))
            .collect::<Result<_, _>>()?,
        Candidates::None => Vec::new(),
    };
    let list: Vec<HostPriority> = names
        .into_iter()
        .map(|n| HostPriority {
            score: score(location.as_ref(), &n),
            host: n.into_owned(),
        })
        .collect();
    Ok(priority_result(&list))
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
    if ext.view.ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet").into_response()
    }
}

async fn metrics<V: View>(State(ext): State<Arc<Extender<V>>>) -> Response {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &ext.metrics.registry);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
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

/// Serves `app` on `listen`, over TLS when `tls` (certificate chain, key; PEM files) is given.
/// Returns the bound address and the serving task.
pub async fn serve(
    app: Router,
    listen: std::net::SocketAddr,
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
) -> anyhow::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let handle = axum_server::Handle::new();
    let service = app.into_make_service();
    let task = {
        let handle = handle.clone();
        match tls {
            Some((cert, key)) => {
                let cfg = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "loading --tls-cert {} / --tls-key {}: {e}",
                            cert.display(),
                            key.display()
                        )
                    })?;
                tokio::spawn(async move {
                    if let Err(e) = axum_server::bind_rustls(listen, cfg)
                        .handle(handle)
                        .serve(service)
                        .await
                    {
                        tracing::error!(error = %e, "extender server failed");
                    }
                })
            }
            None => tokio::spawn(async move {
                if let Err(e) = axum_server::bind(listen)
                    .handle(handle)
                    .serve(service)
                    .await
                {
                    tracing::error!(error = %e, "extender server failed");
                }
            }),
        }
    };
    let addr = handle
        .listening()
        .await
        .ok_or_else(|| anyhow::anyhow!("could not listen on {listen}"))?;
    Ok((addr, task))
}
