//! One function per route: decode and validate at the edge, call the IPAM, record metrics.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use nethouse_api::{
    AllocateRequest, DetachRequest, GcRequest, LeaseFilter, Owner, RefusalRecorded, RefusalReport,
    ReleaseRequest, SubnetSpec, codes,
};
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;

use super::App;
use super::auth::{Scope, scope};
use super::body::{JsonBody, parse_query};
use super::errors::ApiErr;
use super::recovery::{self, Status, UNHEALTHY_AFTER};
use crate::ipam::{AllocOutcome, IpamError, keys};
use crate::model::lease::{ValidAllocate, ValidDetach, validate_owner, validate_valid_attachments};
use crate::model::refusal::validate_refusal;
use crate::model::validate_name;
use crate::store::Store;

type Answer = Result<Response, ApiErr>;

/// Runs `f`, records its latency and result under `op`.
async fn measured<S: Store, T: Serialize>(
    app: &App<S>,
    op: &'static str,
    f: impl Future<Output = Result<(StatusCode, T), ApiErr>>,
) -> Answer {
    let start = Instant::now();
    let res = f.await;
    let result = match &res {
        Ok(_) => "ok",
        Err(e) => e.error.code.as_str(),
    };
    app.metrics
        .observe(op, result, start.elapsed().as_secs_f64());
    res.map(|(status, body)| (status, Json(body)).into_response())
}

/// Runs a state-changing call on its own task. hyper drops a handler's future when the client's
/// connection closes (a controller killed, a CNI plugin past its timeout); dropped between the
/// store's commit and the cache update, the call would leave the IPAM's view behind its store.
/// On its own task the call always finishes; only the answer is lost. `in_flight` counts it
/// until then.
///
/// The count is bounded: when the store stalls, every caller's retry would otherwise add one
/// more task waiting on it, without limit. Past the bound a call is refused at once, before it
/// does anything, with a transient 503 the callers already retry.
///
/// `call` goes on the heap at once: a change's future nests the whole path down to the store
/// and is large, and held by value it was copied again into the handler's future, axum's box of
/// it and the spawned task (copying memory was the largest single item of a replica's CPU).
fn to_completion<S: Store>(
    app: Arc<App<S>>,
    call: impl Future<Output = Answer> + Send + 'static,
) -> impl Future<Output = Answer> {
    let call = Box::pin(call);
    completed(app, call)
}

async fn completed<S: Store>(
    app: Arc<App<S>>,
    call: std::pin::Pin<Box<impl Future<Output = Answer> + Send + 'static>>,
) -> Answer {
    struct Counted(Gauge);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.dec();
        }
    }
    let gauge = &app.metrics.mutations_in_flight;
    let counted = Counted(gauge.clone());
    if usize::try_from(gauge.inc()).unwrap_or(0) >= app.max_in_flight {
        app.metrics.mutations_refused.inc();
        return Err(ApiErr::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::UNAVAILABLE,
            format!(
                "{} state-changing calls are still running (--max-in-flight), which means the store is slow or stalled; nothing was done, retry later",
                app.max_in_flight
            ),
        ));
    }
    tokio::spawn(async move {
        let _counted = counted;
        // Shared: the view is read back after a store re-open only while no change runs.
        let _gate = app.recovery.gate.read().await;
        call.await
    })
    .await
    .unwrap_or_else(|e| {
        Err(ApiErr::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            format!("the call failed: {e}"),
        ))
    })
}

/// Live unless the store has been unusable for longer than [`UNHEALTHY_AFTER`]: recovery in
/// this process has failed for long enough that a restart is worth its cost.
pub async fn healthz<S: Store>(State(app): State<Arc<App<S>>>) -> Answer {
    if let Status::Down {
        since,
        why,
        restart_helps: true,
    } = recovery::status(&app)
        && since.elapsed() > UNHEALTHY_AFTER
    {
        let message = format!(
            "{why}; for more than {}s, restart to recover",
            UNHEALTHY_AFTER.as_secs()
        );
        tracing::error!(reason = %message, "answering /healthz with 503");
        return Err(ApiErr::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::UNAVAILABLE,
            message,
        ));
    }
    Ok(Json(serde_json::json!({"status": "ok"})).into_response())
}

pub async fn readyz<S: Store>(State(app): State<Arc<App<S>>>) -> Answer {
    let unready =
        |why: String| ApiErr::new(StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, why);
    if !app.ready.load(Ordering::SeqCst) {
        return Err(unready("shutting down".into()));
    }
    if let Status::Down { why, .. } = recovery::status(&app) {
        return Err(unready(why));
    }
    // A cheap read proves the store answers.
    app.ipam
        .store()
        .get(keys::SUBNETS_META)
        .await
        .map_err(|e| unready(e.to_string()))?;
    Ok(Json(serde_json::json!({"status": "ready"})).into_response())
}

pub async fn metrics<S: Store>(State(app): State<Arc<App<S>>>) -> Response {
    app.metrics.refresh(&app.ipam.subnets());
    app.metrics.lost_races(&app.ipam.lost_races());
    nethouse_runtime::metrics::response(app.metrics.registry())
}

pub async fn allocate<S: Store>(
    State(app): State<Arc<App<S>>>,
    Extension(caller): Extension<Scope>,
    JsonBody(req): JsonBody<AllocateRequest>,
) -> Answer {
    to_completion(app.clone(), async move {
        measured(&app, "allocate", async {
            let req = ValidAllocate::from_request(req).map_err(IpamError::from)?;
            let current = app.ipam.attachment_of(&req.key);
            scope::allocate(&caller, req.kind, &req.attachment.node, current.as_ref())?;
            let (resp, outcome) = app.ipam.allocate(req).await?;
            let status = match outcome {
                AllocOutcome::Created => StatusCode::CREATED,
                _ => StatusCode::OK,
            };
            Ok((status, resp))
        })
        .await
    })
    .await
}

pub async fn detach<S: Store>(
    State(app): State<Arc<App<S>>>,
    Extension(caller): Extension<Scope>,
    JsonBody(req): JsonBody<DetachRequest>,
) -> Answer {
    to_completion(app.clone(), async move {
        measured(&app, "detach", async {
            let req = ValidDetach::from_request(req).map_err(IpamError::from)?;
            let current: Vec<_> = req
                .candidate_keys()
                .iter()
                .filter_map(|k| app.ipam.attachment_of(k))
                .collect();
            scope::detach(&caller, &req.container_id, &req.ifname, &current)?;
            Ok((StatusCode::OK, app.ipam.detach(req).await?))
        })
        .await
    })
    .await
}

pub async fn release<S: Store>(
    State(app): State<Arc<App<S>>>,
    JsonBody(req): JsonBody<ReleaseRequest>,
) -> Answer {
    to_completion(app.clone(), async move {
        measured(&app, "release", async {
            validate_owner("owner", &req.owner).map_err(IpamError::from)?;
            let released = app
                .ipam
                .release_exact(&req.owner, req.ips.as_deref())
                .await?;
            if let Some(l) = &released {
                tracing::info!(owner = %req.owner, ips = ?l.ips.iter().map(|i| i.ip).collect::<Vec<_>>(), "released");
            }
            Ok((StatusCode::OK, nethouse_api::ReleaseResponse { released }))
        })
        .await
    })
    .await
}

pub async fn gc<S: Store>(
    State(app): State<Arc<App<S>>>,
    Extension(caller): Extension<Scope>,
    JsonBody(req): JsonBody<GcRequest>,
) -> Answer {
    to_completion(app.clone(), async move {
        measured(&app, "gc", async {
            validate_name("node", &req.node, 253).map_err(IpamError::from)?;
            scope::gc(&caller, &req.node)?;
            validate_valid_attachments(&req.valid_attachments).map_err(IpamError::from)?;
            let out = app.ipam.gc(&req.node, &req.valid_attachments).await;
            tracing::info!(node = %req.node, detached = out.detached, released = out.released, errors = out.errors.len(), "gc");
            Ok((StatusCode::OK, out))
        })
        .await
    })
    .await
}

/// Counts an ADD that a node's plugin refused (and logs who and why), so that a node set up
/// wrongly shows in NetHouse's metrics. Touches no lease: nothing here waits on the store.
pub async fn refusal<S: Store>(
    State(app): State<Arc<App<S>>>,
    Extension(caller): Extension<Scope>,
    JsonBody(req): JsonBody<RefusalReport>,
) -> Answer {
    measured(&app, "refusal", async {
        validate_refusal(&req).map_err(IpamError::from)?;
        scope::report(&caller, &req.attachment.node)?;
        app.metrics.cni_refused(req.reason);
        tracing::warn!(
            reason = req.reason.as_str(),
            pod = %req.owner,
            node = %req.attachment.node,
            zone = %req.zone,
            container_id = %req.attachment.container_id,
            fix = %req.reason.fix(),
            "a node's CNI plugin refused an ADD and gave the pod no address"
        );
        Ok((StatusCode::OK, RefusalRecorded { reason: req.reason }))
    })
    .await
}

pub async fn list_leases<S: Store>(
    State(app): State<Arc<App<S>>>,
    RawQuery(q): RawQuery,
) -> Answer {
    measured(&app, "list_leases", async {
        let filter: LeaseFilter = parse_query(q.as_deref())?;
        Ok((StatusCode::OK, app.ipam.list(&filter)?))
    })
    .await
}

pub async fn lease_by_ip<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path(ip): Path<String>,
) -> Answer {
    measured(&app, "get_lease", async {
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| ApiErr::invalid_field("ip", format!("ip: {ip:?} is not an IP address")))?;
        Ok((StatusCode::OK, app.ipam.lease_by_ip(ip)?))
    })
    .await
}

pub async fn lease_by_owner<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path((cluster, namespace, pod)): Path<(String, String, String)>,
) -> Answer {
    measured(&app, "get_lease", async {
        let owner = Owner {
            cluster,
            namespace,
            pod,
        };
        validate_owner("owner", &owner).map_err(IpamError::from)?;
        Ok((StatusCode::OK, app.ipam.lease_by_owner(&owner)?))
    })
    .await
}

pub async fn list_subnets<S: Store>(State(app): State<Arc<App<S>>>) -> Answer {
    measured(&app, "list_subnets", async {
        Ok((StatusCode::OK, app.ipam.subnets()))
    })
    .await
}

pub async fn add_subnet<S: Store>(
    State(app): State<Arc<App<S>>>,
    JsonBody(spec): JsonBody<SubnetSpec>,
) -> Answer {
    to_completion(app.clone(), async move {
        measured(&app, "add_subnet", async {
            let s = app.ipam.add_subnet(&spec).await?;
            tracing::info!(subnet = %s.name, zone = %s.zone, cidr = %s.cidr, "subnet added");
            Ok((StatusCode::CREATED, s))
        })
        .await
    })
    .await
}

pub async fn get_subnet<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path(name): Path<String>,
) -> Answer {
    measured(&app, "get_subnet", async {
        Ok((StatusCode::OK, app.ipam.subnet(&name)?))
    })
    .await
}

pub async fn remove_subnet<S: Store>(
    State(app): State<Arc<App<S>>>,
    Path(name): Path<String>,
) -> Answer {
    to_completion(app.clone(), async move {
        measured(&app, "remove_subnet", async {
            let s = app.ipam.remove_subnet(&name).await?;
            tracing::info!(subnet = %s.name, "subnet removed");
            Ok((StatusCode::OK, s))
        })
        .await
    })
    .await
}

pub async fn zones<S: Store>(State(app): State<Arc<App<S>>>) -> Answer {
    measured(&app, "zones", async {
        Ok((StatusCode::OK, app.ipam.zones()))
    })
    .await
}
