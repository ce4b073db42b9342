//! Coming back from a store failure without a restart. The store re-opens its file by itself
//! (`store::embedded::recover`); what is left to the server is the IPAM's view: after a re-open
//! it is read back from the store again, with every change kept out meanwhile, because a
//! change whose commit reported failure may be on disk after all. This also says how things
//! stand, for `/readyz` (not ready while the store or the view is not back) and `/healthz`
//! (failing only once that has lasted [`UNHEALTHY_AFTER`], so that a restart is the last resort;
//! never for an etcd that cannot be reached, which no restart of NetHouse mends).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::App;
use crate::store::Store;
use crate::store::health::FailureKind;

/// How long the store may stay unusable before `/healthz` fails and the kubelet restarts the
/// pod. Long enough for an operator or a log rotation to free space, short enough that a
/// store that cannot recover in this process does not keep it useless for long.
pub const UNHEALTHY_AFTER: Duration = Duration::from_secs(60);
/// Between attempts to re-read the view when reading fails.
const REREAD_RETRY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Recovery {
    /// Held shared by every change (`handlers::to_completion`), alone by the re-read.
    pub(super) gate: tokio::sync::RwLock<()>,
    /// The store's `reopens` when the view was last read.
    view_at: AtomicU64,
    /// Since when re-reading the view fails, and why.
    reread_failing: Mutex<Option<(Instant, String)>>,
}

pub enum Status {
    Up,
    /// Not serving changes since `since`, because of `why`.
    Down {
        since: Instant,
        why: String,
        /// Whether restarting this process could help: not when etcd cannot be reached (every
        /// replica would restart, and start-up needs etcd too).
        restart_helps: bool,
    },
}

pub fn status<S: Store>(app: &App<S>) -> Status {
    let health = app.ipam.store().health();
    if let Some(f) = health.failing {
        if f.kind == FailureKind::Unreachable {
            return Status::Down {
                since: f.since,
                why: format!(
                    "{} (for {}s); changes wait for it",
                    f.cause,
                    f.since.elapsed().as_secs()
                ),
                restart_helps: false,
            };
        }
        return Status::Down {
            since: f.since,
            restart_helps: true,
            why: format!(
                "the store refuses changes: a commit failed {}s ago and it cannot be re-opened yet ({}); it is retried until the disk takes writes",
                f.since.elapsed().as_secs(),
                f.cause
            ),
        };
    }
    if health.reopens != app.recovery.view_at.load(Ordering::SeqCst) {
        let failing = app
            .recovery
            .reread_failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (since, why) = match failing {
            Some((since, e)) => (since, format!("re-reading the re-opened store fails: {e}")),
            None => (
                Instant::now(),
                "the store was re-opened after a failure; re-reading it".to_string(),
            ),
        };
        return Status::Down {
            since,
            why,
            restart_helps: true,
        };
    }
    Status::Up
}

/// Re-reads the view after every re-open of `app`'s store, for as long as `app` lives. Needs a
/// tokio runtime; without one (or with a store that never re-opens) it does nothing.
pub fn watch<S: Store>(app: &Arc<App<S>>) {
    let Some(health) = app.ipam.store().watch_health() else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    app.recovery
        .view_at
        .store(health.borrow().reopens, Ordering::SeqCst);
    // Weak: the store closes when the last `App` goes; this task must not keep it open.
    runtime.spawn(reread_after_reopens(Arc::downgrade(app), health));
}

async fn reread_after_reopens<S: Store>(
    app: Weak<App<S>>,
    mut health: tokio::sync::watch::Receiver<crate::store::health::Health>,
) {
    loop {
        let now = health.borrow_and_update().clone();
        if now.failing.is_none() {
            let Some(app) = app.upgrade() else { return };
            if now.reopens != app.recovery.view_at.load(Ordering::SeqCst)
                && !reread(&app, now.reopens).await
            {
                drop(app);
                tokio::time::sleep(REREAD_RETRY).await;
                continue;
            }
        }
        // Ends when the store (its sender) is gone.
        if health.changed().await.is_err() {
            return;
        }
    }
}

/// Reads the view back with every change kept out; `false` if reading failed.
async fn reread<S: Store>(app: &App<S>, reopens: u64) -> bool {
    let _alone = app.recovery.gate.write().await;
    let failing = || {
        app.recovery
            .reread_failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    };
    match app.ipam.reload().await {
        Ok(()) => {
            app.recovery.view_at.store(reopens, Ordering::SeqCst);
            *failing() = None;
            tracing::info!(
                reopens,
                "the store was re-opened and read back; NetHouse is ready again"
            );
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "re-reading the re-opened store failed; retrying");
            failing()
                .get_or_insert_with(|| (Instant::now(), e.to_string()))
                .1 = e.to_string();
            false
        }
    }
}
