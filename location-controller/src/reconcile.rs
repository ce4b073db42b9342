//! The reconcile loop: a kube-runtime Controller on Locations (and on pods, mapped to the
//! Location of the same name) with the finalizer `nethouse.io/release-ip`. Cleanup releases the
//! IP through NetHouse once [`decide`](crate::decide) says so, and only a confirmed release lets
//! the finalizer come off. Errors keep the finalizer and retry: NetHouse failures with
//! exponential backoff, a pod that still holds its IP after a short fixed wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use nethouse_api::Owner;
use nethouse_api::location::{FINALIZER, Location};

use crate::decide::{Release, decide};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pod {0} still holds its IP; it is released once the pod is gone")]
    PodHoldsIp(String),
    #[error("reading pod {pod}: {source}")]
    ReadPod {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("releasing the IP of {owner} through NetHouse: {source}")]
    Release {
        owner: String,
        #[source]
        source: nethouse_api::ClientError,
    },
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

pub struct Context {
    pub client: kube::Client,
    pub nethouse: nethouse_api::Client,
    /// Consecutive failures per Location, for the backoff.
    failures: Mutex<HashMap<String, usize>>,
}

impl Context {
    pub fn new(client: kube::Client, nethouse: nethouse_api::Client) -> Arc<Context> {
        Arc::new(Context {
            client,
            nethouse,
            failures: Mutex::default(),
        })
    }
}

fn key(l: &Location) -> String {
    format!("{}/{}", l.namespace().unwrap_or_default(), l.name_any())
}

async fn cleanup(loc: &Location, ctx: &Context) -> Result<Action, Error> {
    let ns = loc.namespace().unwrap_or_default();
    let name = loc.name_any();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pod = pods.get_opt(&name).await.map_err(|source| Error::ReadPod {
        pod: format!("{ns}/{name}"),
        source,
    })?;
    if decide(pod.as_ref()) == Release::Wait {
        return Err(Error::PodHoldsIp(format!("{ns}/{name}")));
    }
    let owner = Owner {
        cluster: loc.spec.cluster.clone(),
        namespace: ns,
        pod: name,
    };
    let released = ctx
        .nethouse
        .release(&owner)
        .await
        .map_err(|source| Error::Release {
            owner: owner.to_string(),
            source,
        })?;
    tracing::info!(
        owner = %owner,
        ips = ?released.released.as_ref().map(|l| l.ips.iter().map(|i| i.ip).collect::<Vec<_>>()),
        "released; removing the finalizer"
    );
    Ok(Action::await_change())
}

async fn reconcile(loc: Arc<Location>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<Location> =
        Api::namespaced(ctx.client.clone(), &loc.namespace().unwrap_or_default());
    let k = key(&loc);
    let result = finalizer(&api, FINALIZER, loc, |event| async {
        match event {
            Event::Apply(_) => Ok(Action::await_change()),
            Event::Cleanup(l) => cleanup(&l, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok()
        && let Ok(mut f) = ctx.failures.lock()
    {
        f.remove(&k);
    }
    result
}

fn error_policy(loc: Arc<Location>, err: &Error, ctx: Arc<Context>) -> Action {
    let waiting = matches!(err, Error::Finalizer(e) if matches!(**e, kube::runtime::finalizer::Error::CleanupFailed(Error::PodHoldsIp(_))));
    if waiting {
        tracing::debug!(location = %key(&loc), "{err}");
        return Action::requeue(Duration::from_secs(5));
    }
    let attempt = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(key(&loc)).or_insert(0);
            *n += 1;
            *n
        })
        .unwrap_or(1);
    let delay = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_max_times(usize::MAX)
        .build()
        .nth(attempt.saturating_sub(1))
        .unwrap_or(Duration::from_secs(30));
    tracing::warn!(location = %key(&loc), attempt, retry_in = ?delay, error = %err, "reconcile failed; finalizer kept");
    Action::requeue(delay)
}

/// Runs the controller until the returned task is aborted.
pub fn start(ctx: Arc<Context>) -> tokio::task::JoinHandle<()> {
    let locations: Api<Location> = Api::all(ctx.client.clone());
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    tokio::spawn(async move {
        Controller::new(locations, watcher::Config::default())
            // A pod going away is what a waiting cleanup waits for.
            .watches(pods, watcher::Config::default(), |pod: Pod| {
                Some(ObjectRef::<Location>::new(&pod.name_any()).within(&pod.namespace()?))
            })
            .run(reconcile, error_policy, ctx)
            .for_each(|_| async {})
            .await;
    })
}
