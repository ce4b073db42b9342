//! `--node-token-review`: a node proves which node it is with its DaemonSet pod's projected
//! ServiceAccount token. NetHouse asks the Kubernetes API (a TokenReview) whether the token is
//! authentic, meant for NetHouse (the audience) and the node ServiceAccount's; Kubernetes
//! (1.32 and later) names the node a pod-bound token's pod runs on in
//! `user.extra["authentication.kubernetes.io/node-name"]`, and that node is the caller's scope.
//!
//! Verdicts are kept by the token's hash ([`review_cache`](super::review_cache)) for a minute,
//! or until the token expires if sooner, and concurrent calls with one token share one review.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::{OnceCell, Semaphore};

use super::review_cache::{self as cache, Cache, Key};
use crate::model::validate_name;

/// Where Kubernetes puts the node of a token bound to a pod on a node.
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";
/// An accepted token is asked about again after this long (sooner if it expires): a deleted
/// DaemonSet pod's token stops working within it.
const TTL: Duration = Duration::from_secs(60);
/// A refused token is answered from memory this long.
const REFUSED_TTL: Duration = Duration::from_secs(10);
const CAPACITY: usize = 10_000;
/// Reviews in flight at once; more wait, so a flood of new tokens cannot flood the API server.
const CONCURRENT_REVIEWS: usize = 16;
/// A review not answered by then is a transient failure (503) the caller retries.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// `NAMESPACE/NAME` of the ServiceAccount whose tokens are node credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
}

impl ServiceAccount {
    /// The user name Kubernetes authenticates its tokens as.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

impl std::str::FromStr for ServiceAccount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (namespace, name) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected NAMESPACE/NAME"))?;
        for (what, part) in [("namespace", namespace), ("name", name)] {
            validate_name(what, part, 253).map_err(|e| format!("{s:?}: {e}"))?;
            if part.contains(':') {
                return Err(format!("{s:?}: the {what} contains ':'"));
            }
        }
        Ok(ServiceAccount {
            namespace: namespace.into(),
            name: name.into(),
        })
    }
}

impl std::fmt::Display for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the Kubernetes API said about a token (a TokenReview's status).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reviewed {
    pub authenticated: bool,
    pub username: String,
    pub audiences: Vec<String>,
    /// `user.extra[NODE_NAME_EXTRA]`.
    pub node_names: Vec<String>,
    pub error: String,
}

pub type ReviewFuture<'a> = Pin<Box<dyn Future<Output = Result<Reviewed, String>> + Send + 'a>>;

/// Asks whether `token` is valid for `audience`; `Err` when there was no answer.
pub trait Reviewer: Send + Sync {
    fn review<'a>(&'a self, token: &'a str, audience: &'a str) -> ReviewFuture<'a>;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReviewDenied {
    /// 401: not a node's token; says why.
    Refused(String),
    /// 503: no verdict now; the caller retries.
    Unavailable(String),
}

/// The node a review vouches for, or why the token is no node's.
pub fn decide(r: &Reviewed, username: &str, audience: &str) -> Result<Arc<str>, String> {
    if !r.authenticated {
        let why = if r.error.is_empty() {
            String::new()
        } else {
            format!(": {}", r.error)
        };
        return Err(format!(
            "the Kubernetes API did not authenticate the token{why}"
        ));
    }
    if r.username != username {
        return Err(format!(
            "the token is {:?}'s, not the node ServiceAccount {username:?}'s",
            r.username
        ));
    }
    if !r.audiences.iter().any(|a| a == audience) {
        return Err(format!("the token is not meant for audience {audience:?}"));
    }
    match r.node_names.as_slice() {
        [node] if validate_name("node", node, 253).is_ok() => Ok(Arc::from(node.as_str())),
        [] => Err(format!(
            "the token names no node ({NODE_NAME_EXTRA}): it must be bound to a pod on a node, as \
             a DaemonSet pod's projected token is (Kubernetes 1.32 or later)"
        )),
        _ => Err(format!(
            "the token's {NODE_NAME_EXTRA} is not one node name"
        )),
    }
}

type Verdict = Result<Arc<str>, String>;
/// `Err`: the review itself failed (kept by nobody).
type Outcome = Result<Verdict, String>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Reviews node tokens and keeps the verdicts. Holds no token: only their hashes.
pub struct NodeReview {
    reviewer: Box<dyn Reviewer>,
    username: String,
    audience: String,
    cache: Mutex<Cache<Verdict>>,
    in_flight: Mutex<HashMap<Key, Arc<OnceCell<Outcome>>>>,
    permits: Semaphore,
    reviews: Family<ResultLabel, Counter>,
    cache_hits: Counter,
}

impl NodeReview {
    pub fn new(reviewer: Box<dyn Reviewer>, account: &ServiceAccount, audience: &str) -> Self {
        let reviews = Family::<ResultLabel, Counter>::default();
        // Every result from the start, so that rate() and alerts see the first one.
        for result in ["accepted", "refused", "error"] {
            let _ = reviews.get_or_create(&ResultLabel { result });
        }
        NodeReview {
            reviewer,
            username: account.username(),
            audience: audience.to_string(),
            cache: Mutex::new(Cache::new(CAPACITY)),
            in_flight: Mutex::new(HashMap::new()),
            permits: Semaphore::new(CONCURRENT_REVIEWS),
            reviews,
            cache_hits: Counter::default(),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "token_reviews",
            "TokenReviews of node tokens not in the auth file (--node-token-review), by result: \
             accepted (a node's), refused (not authenticated, another account or audience, no \
             node), error (no answer from the Kubernetes API)",
            self.reviews.clone(),
        );
        registry.register(
            "token_review_cache_hits",
            "Node tokens decided from a verdict kept from an earlier TokenReview",
            self.cache_hits.clone(),
        );
    }

    /// The node `token` belongs to.
    pub async fn node_of(&self, token: &str) -> Result<Arc<str>, ReviewDenied> {
        if !cache::looks_like_jwt(token) {
            return Err(ReviewDenied::Refused("unknown token".into()));
        }
        let key = cache::key(token);
        if let Some(verdict) = lock(&self.cache).get(&key, Instant::now()) {
            self.cache_hits.inc();
            return verdict.map_err(ReviewDenied::Refused);
        }
        let shared = lock(&self.in_flight).entry(key).or_default().clone();
        let outcome = shared.get_or_init(|| self.review(token)).await.clone();
        if let Ok(verdict) = &outcome {
            let unix_now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let keep = cache::keep_for(
                verdict.is_ok(),
                cache::expiry(token),
                unix_now,
                TTL,
                REFUSED_TTL,
            );
            let now = Instant::now();
            lock(&self.cache).put(key, verdict.clone(), now + keep, now);
        }
        // Filed (or not to be kept): the next call with this token starts from the cache.
        let mut in_flight = lock(&self.in_flight);
        if in_flight.get(&key).is_some_and(|s| Arc::ptr_eq(s, &shared)) {
            in_flight.remove(&key);
        }
        match outcome {
            Ok(Ok(node)) => Ok(node),
            Ok(Err(why)) => Err(ReviewDenied::Refused(why)),
            Err(why) => Err(ReviewDenied::Unavailable(why)),
        }
    }

    async fn review(&self, token: &str) -> Outcome {
        let count = |result| self.reviews.get_or_create(&ResultLabel { result }).inc();
        // Never closed; a failure here could only mean a bug, and is an error like any other.
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        let answer =
            tokio::time::timeout(REVIEW_TIMEOUT, self.reviewer.review(token, &self.audience)).await;
        let reviewed = match answer {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                count("error");
                tracing::warn!(error = %e, "TokenReview failed");
                return Err(format!("the node token could not be reviewed: {e}"));
            }
            Err(_) => {
                count("error");
                tracing::warn!(timeout = ?REVIEW_TIMEOUT, "TokenReview not answered in time");
                return Err(format!(
                    "the node token could not be reviewed: the Kubernetes API did not answer \
                     within {REVIEW_TIMEOUT:?}"
                ));
            }
        };
        let verdict = decide(&reviewed, &self.username, &self.audience);
        match &verdict {
            Ok(node) => {
                count("accepted");
                tracing::debug!(node = %node, "node token reviewed");
            }
            Err(why) => {
                count("refused");
                tracing::info!(reason = %why, "token refused by its TokenReview");
            }
        }
        Ok(verdict)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is one map operation: a panic cannot leave one half done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
#[path = "review_tests.rs"]
mod tests;
