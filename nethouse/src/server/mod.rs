//! The HTTP API. Routes are declared once in [`routes`] — method, path, required access,
//! handler — and both the router and the OpenAPI conformance test are built from that table.

mod auth;
mod body;
mod errors;
mod follow;
mod handlers;
mod recovery;
pub mod running;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, on};
use nethouse_api::codes;

pub use auth::kube_review::KubeReviewer;
pub use auth::{Access, Auth, NodeReview, Role, Scope, ServiceAccount};
pub use errors::ApiErr;

use crate::ipam::Ipam;
use crate::metrics::Metrics;
use crate::store::Store;

pub struct App<S: Store> {
    pub ipam: Ipam<S>,
    pub auth: Auth,
    pub metrics: Metrics,
    /// Cleared when shutdown starts so load balancers stop sending work.
    pub ready: AtomicBool,
    /// State-changing calls that may run at once (`--max-in-flight`).
    pub max_in_flight: usize,
    /// The view is read back after the store re-opened; see [`recovery`].
    recovery: recovery::Recovery,
    /// Keeps the view current with a store other replicas write too; see [`follow`].
    follower: std::sync::OnceLock<follow::Follower>,
}

/// Far above what a healthy store holds at once (it answers in milliseconds), low enough that a
/// stalled one cannot pile up retries without bound.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;

impl<S: Store> App<S> {
    pub fn new(ipam: Ipam<S>, auth: Auth, max_in_flight: usize) -> Arc<Self> {
        Self::with_metrics(ipam, auth, max_in_flight, Metrics::new())
    }

    /// With metrics made beforehand, so that the store could be wired to them when opened.
    pub fn with_metrics(
        ipam: Ipam<S>,
        auth: Auth,
        max_in_flight: usize,
        metrics: Metrics,
    ) -> Arc<Self> {
        let app = Arc::new(App {
            ipam,
            auth,
            metrics,
            ready: AtomicBool::new(true),
            max_in_flight,
            recovery: recovery::Recovery::default(),
            follower: std::sync::OnceLock::new(),
        });
        recovery::watch(&app);
        follow::start(&app);
        app
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

pub struct RouteSpec<S: Store> {
    pub method: Method,
    /// In OpenAPI form (`{param}`), which is also axum 0.8's form.
    pub path: &'static str,
    pub access: Access,
    pub handler: MethodRouter<Arc<App<S>>>,
}

fn r<S: Store>(
    method: Method,
    path: &'static str,
    access: Access,
    handler: MethodRouter<Arc<App<S>>>,
) -> RouteSpec<S> {
    RouteSpec {
        method,
        path,
        access,
        handler,
    }
}

/// Every route of the API.
pub fn routes<S: Store>() -> Vec<RouteSpec<S>> {
    use axum::routing::MethodFilter as M;
    use handlers as h;
    let node = Access::Only(Role::Node);
    let ctrl = Access::Only(Role::Controller);
    vec![
        r(
            Method::GET,
            "/healthz",
            Access::Public,
            on(M::GET, h::healthz::<S>),
        ),
        r(
            Method::GET,
            "/readyz",
            Access::Public,
            on(M::GET, h::readyz::<S>),
        ),
        r(
            Method::GET,
            "/metrics",
            Access::Public,
            on(M::GET, h::metrics::<S>),
        ),
        r(
            Method::POST,
            "/v1/leases",
            node,
            on(M::POST, h::allocate::<S>),
        ),
        r(
            Method::GET,
            "/v1/leases",
            Access::Read,
            on(M::GET, h::list_leases::<S>),
        ),
        r(
            Method::POST,
            "/v1/leases/detach",
            node,
            on(M::POST, h::detach::<S>),
        ),
        r(
            Method::POST,
            "/v1/leases/release",
            ctrl,
            on(M::POST, h::release::<S>),
        ),
        r(
            Method::GET,
            "/v1/leases/by-ip/{ip}",
            Access::Read,
            on(M::GET, h::lease_by_ip::<S>),
        ),
        r(
            Method::GET,
            "/v1/leases/by-owner/{cluster}/{namespace}/{pod}",
            Access::Read,
            on(M::GET, h::lease_by_owner::<S>),
        ),
        r(Method::POST, "/v1/gc", node, on(M::POST, h::gc::<S>)),
        r(
            Method::POST,
            "/v1/refusals",
            node,
            on(M::POST, h::refusal::<S>),
        ),
        r(
            Method::GET,
            "/v1/subnets",
            Access::Read,
            on(M::GET, h::list_subnets::<S>),
        ),
        r(
            Method::POST,
            "/v1/subnets",
            ctrl,
            on(M::POST, h::add_subnet::<S>),
        ),
        r(
            Method::GET,
            "/v1/subnets/{name}",
            Access::Read,
            on(M::GET, h::get_subnet::<S>),
        ),
        r(
            Method::DELETE,
            "/v1/subnets/{name}",
            ctrl,
            on(M::DELETE, h::remove_subnet::<S>),
        ),
        r(
            Method::GET,
            "/v1/zones",
            Access::Read,
            on(M::GET, h::zones::<S>),
        ),
    ]
}

/// Authenticates and authorizes by role; the handlers get the caller's [`Scope`] (whose
/// attachments it may change) as a request extension.
async fn check_access<S: Store>(
    State((app, access)): State<(Arc<App<S>>, Access)>,
    mut req: Request,
    next: Next,
) -> Response {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match app.auth.check(access, header).await {
        Ok(scope) => {
            req.extensions_mut().insert(scope);
            next.run(req).await
        }
        Err(auth::Denied::Unauthenticated(why)) => {
            ApiErr::new(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED, why).into_response()
        }
        Err(auth::Denied::Forbidden { role, needs }) => ApiErr::new(
            StatusCode::FORBIDDEN,
            codes::FORBIDDEN,
            format!(
                "role {} may not do this; it needs role {needs}",
                role.as_str()
            ),
        )
        .into_response(),
        Err(auth::Denied::Unavailable(why)) => {
            ApiErr::new(StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, why).into_response()
        }
    }
}

pub fn router<S: Store>(app: Arc<App<S>>) -> Router {
    let mut router = Router::new();
    for spec in routes::<S>() {
        let guarded = spec.handler.route_layer(middleware::from_fn_with_state(
            (app.clone(), spec.access),
            check_access::<S>,
        ));
        router = router.route(spec.path, guarded);
    }
    router
        .fallback(|| async {
            ApiErr::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, "no such route")
        })
        .method_not_allowed_fallback(|| async {
            ApiErr::new(
                StatusCode::METHOD_NOT_ALLOWED,
                codes::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(body::MAX_BODY))
        .with_state(app)
}

#[cfg(test)]
mod openapi_tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::store::memory::MemoryStore;

    fn doc() -> Value {
        serde_json::from_str(include_str!("../../openapi.json")).expect("openapi.json is JSON")
    }

    #[test]
    fn document_and_routes_agree() {
        let doc = doc();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let routes = routes::<MemoryStore>();
        let served: BTreeSet<(String, String)> = routes
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        assert_eq!(documented, served, "openapi.json and routes() disagree");

        for r in &routes {
            let op = &doc["paths"][r.path][r.method.as_str().to_lowercase()];
            let roles: Option<BTreeSet<&str>> = op["x-nethouse-roles"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect());
            let security_empty = op["security"].as_array().is_some_and(|a| a.is_empty());
            let want: Option<BTreeSet<&str>> = match r.access {
                Access::Public => None,
                Access::Read => Some(["node", "controller"].into()),
                Access::Only(role) => Some([role.as_str()].into()),
            };
            assert_eq!(roles, want, "{} {}: documented roles", r.method, r.path);
            assert_eq!(
                security_empty,
                r.access == Access::Public,
                "{} {}: security",
                r.method,
                r.path
            );
        }
    }

    #[test]
    fn error_codes_agree() {
        let doc = doc();
        let documented: BTreeSet<&str> =
            doc["components"]["schemas"]["ApiError"]["properties"]["code"]["enum"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
        let ours: BTreeSet<&str> = nethouse_api::codes::ALL.iter().copied().collect();
        assert_eq!(documented, ours);
    }
}

#[cfg(test)]
mod cancel_tests;
#[cfg(test)]
mod follow_tests;
#[cfg(test)]
mod recovery_tests;
