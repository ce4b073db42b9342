//! Several replicas on one store (etcd): each keeps its view current by following the store's
//! watch from the revision its view is complete up to, so another replica's writes reach it
//! within a round-trip, not only when a revision check fails. A watch that cannot resume (etcd
//! compacted the revisions it needs, or this replica fell too far behind) means reading the
//! whole store again, with every change kept out meanwhile, as after a store re-open.
//! Correctness never rests on this: every write checks the revisions its decision relied on.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::App;
use crate::store::{Store, StoreError};

const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// The following task; it ends when the app is dropped.
pub struct Follower(tokio::task::AbortHandle);

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts following the store of `app` if other processes write it too. Needs a tokio runtime;
/// without one it does nothing.
pub fn start<S: Store>(app: &Arc<App<S>>) {
    if !app.ipam.store().shared() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    app.metrics.watched(app.ipam.applied());
    let task = runtime.spawn(run(Arc::downgrade(app)));
    let _ = app.follower.set(Follower(task.abort_handle()));
}

/// What ended one watch.
enum Ended {
    /// Cut (a lost connection, a restarted member): watch again from where the view is.
    Cut,
    /// Cannot resume: read the whole store again.
    Reread(String),
    Failed(String),
}

async fn run<S: Store>(app: Weak<App<S>>) {
    let mut retry = FIRST_RETRY;
    loop {
        let (ended, watched) = match follow_once(&app).await {
            Some(e) => e,
            None => return,
        };
        // A watch that was set up and then failed (its member died) is a new outage: watch
        // again soon, not after the back-off earlier outages left behind.
        if watched {
            retry = FIRST_RETRY;
        }
        match ended {
            Ended::Cut => {
                tracing::debug!("the store's watch was cut; watching again");
                retry = FIRST_RETRY;
            }
            Ended::Reread(why) => {
                let Some(app) = app.upgrade() else { return };
                tracing::warn!(reason = %why, "the store's watch cannot resume; reading the store again");
                let _alone = app.recovery.gate.write().await;
                app.metrics.watch_rereads.inc();
                match app.ipam.reload().await {
                    Ok(()) => {
                        app.metrics.watched(app.ipam.applied());
                        retry = FIRST_RETRY;
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reading the store again failed; retrying");
                    }
                }
            }
            Ended::Failed(why) => {
                tracing::warn!(error = %why, retry_in_ms = retry.as_millis() as u64, "the store's watch failed; the view may lag until it is back");
            }
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}

/// Follows one watch until it ends, and says whether it was set up at all; `None` once the
/// app is gone. The app is held only while a change is applied, so that dropping it
/// (shutdown) ends this task and closes the store.
async fn follow_once<S: Store>(app: &Weak<App<S>>) -> Option<(Ended, bool)> {
    let mut watch = {
        let app = app.upgrade()?;
        let after = app.ipam.applied();
        match app.ipam.store().watch(after).await {
            Ok(w) => w,
            Err(StoreError::Compacted { why, .. }) => return Some((Ended::Reread(why), false)),
            Err(e) => return Some((Ended::Failed(e.to_string()), false)),
        }
    };
    Some((follow_watch(app, &mut watch).await?, true))
}

async fn follow_watch<S: Store>(
    app: &Weak<App<S>>,
    watch: &mut crate::store::Watch,
) -> Option<Ended> {
    loop {
        let next = watch.next().await;
        let app = app.upgrade()?;
        match next {
            Some(Ok(changes)) => {
                let applied = app.ipam.apply_watched(&changes);
                app.metrics.watched(app.ipam.applied());
                if let Err(e) = applied {
                    tracing::error!(
                        revision = changes.revision,
                        error = %e,
                        "a change another replica committed is unreadable; skipped"
                    );
                }
            }
            Some(Err(StoreError::Compacted { why, .. })) => return Some(Ended::Reread(why)),
            Some(Err(e)) => return Some(Ended::Failed(e.to_string())),
            None => return Some(Ended::Cut),
        }
    }
}
