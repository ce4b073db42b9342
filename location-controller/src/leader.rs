//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager): every replica runs,
//! one is active. The active one runs [`crate::start`]; losing the Lease aborts it at once, and a
//! standby takes over when the Lease expires (or at once when the leader shuts down cleanly and
//! releases it).

use std::sync::Arc;
use std::time::Duration;

use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};

use crate::context::Context;

/// The controller of one leadership: stopped whenever this goes away, also when the election
/// future itself is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why leading (or running without election) ended other than by the stop signal.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// A flag value kube-lease-manager would panic on; the message names the flag.
    #[error("{0}")]
    Invalid(String),
    #[error("setting up the leader Lease: {0}")]
    Lease(#[source] kube_lease_manager::LeaseManagerError),
    #[error("leader election stopped")]
    ElectionStopped,
    #[error("controller stopped{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    ControllerStopped(Option<tokio::task::JoinError>),
}

#[derive(Clone, Debug)]
pub struct LeaderOptions {
    pub namespace: String,
    pub lease_name: String,
    /// This replica's identity in the Lease (the pod name).
    pub identity: String,
    /// How long the Lease is valid after its last renewal.
    pub duration: Duration,
    /// How long before expiry the holder renews it.
    pub renew_before: Duration,
}

impl LeaderOptions {
    /// kube-lease-manager panics on these; refuse them with the flag's name instead.
    pub fn validate(&self) -> Result<(), String> {
        let (d, g) = (self.duration.as_secs(), self.renew_before.as_secs());
        if d == 0 {
            return Err("--leader-lease-duration: must be at least 1s".into());
        }
        if g == 0 || g >= d {
            return Err(format!(
                "--leader-renew-before: must be at least 1s and shorter than --leader-lease-duration ({d}s), got {g}s"
            ));
        }
        if self.lease_name.is_empty() {
            return Err("--leader-lease-name: must not be empty".into());
        }
        Ok(())
    }
}

/// Campaigns for the Lease and runs the controller while holding it, until `shutdown` resolves
/// (then a held Lease is released so a standby takes over without waiting for expiry).
pub async fn run(
    ctx: Arc<Context>,
    opts: LeaderOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), LeaderError> {
    opts.validate().map_err(LeaderError::Invalid)?;
    let params = LeaseParams::new(
        opts.identity.clone(),
        opts.duration.as_secs(),
        opts.renew_before.as_secs(),
    )
    .with_field_manager(format!("{}-{}", crate::context::MANAGER, opts.identity));
    let manager = LeaseManagerBuilder::new(ctx.client.clone(), &opts.lease_name)
        .with_namespace(&opts.namespace)
        .with_parameters(params)
        .build()
        .await
        .map_err(LeaderError::Lease)?;
    let (mut leader, campaign) = manager.watch().await;
    tokio::pin!(shutdown);
    let mut running: Option<AbortOnDrop> = None;
    loop {
        let is_leader = *leader.borrow_and_update();
        match (is_leader, &running) {
            (true, None) => {
                tracing::info!(identity = %opts.identity, lease = %opts.lease_name, "leading: controller started");
                ctx.metrics.leader.set(1);
                running = Some(AbortOnDrop(crate::start(ctx.clone())));
            }
            (false, Some(_)) => {
                tracing::warn!(identity = %opts.identity, "lost the leader Lease: controller stopped");
                running = None;
                ctx.metrics.leader.set(0);
            }
            _ => {}
        }
        tokio::select! {
            changed = leader.changed() => {
                if changed.is_err() {
                    return Err(LeaderError::ElectionStopped);
                }
            }
            _ = &mut shutdown => break,
        }
    }
    drop(running);
    ctx.metrics.leader.set(0);
    // Closing the channel makes the campaign release the Lease.
    drop(leader);
    match tokio::time::timeout(Duration::from_secs(5), campaign).await {
        Ok(Ok(Ok(_))) => tracing::info!("leader Lease released"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "releasing the leader Lease failed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "leader election task failed"),
        Err(_) => tracing::warn!("releasing the leader Lease timed out"),
    }
    Ok(())
}

/// Without election (`--leader-elect=false`, one replica only): active from the start until
/// `shutdown` resolves. The controller ending on its own is an error: nothing else stops it.
pub async fn run_unelected(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), LeaderError> {
    ctx.metrics.leader.set(1);
    let mut running = AbortOnDrop(crate::start(ctx.clone()));
    let result = tokio::select! {
        ended = &mut running.0 => match ended {
            Err(e) => Err(LeaderError::ControllerStopped(Some(e))),
            Ok(()) => Err(LeaderError::ControllerStopped(None)),
        },
        _ = shutdown => Ok(()),
    };
    // Stopped at once, as a leader's controller is: no reconcile starts while the process is
    // on its way out.
    drop(running);
    ctx.metrics.leader.set(0);
    result
}
