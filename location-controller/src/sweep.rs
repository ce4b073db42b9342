//! Reconciliation with NetHouse, both ways, on a period:
//!
//! - a fixed lease of this cluster with neither Location nor a pod holding it (the pod was
//!   deleted before a Location was ever written, or its Location was removed by force) is
//!   released once it has been seen that way for the grace period and has not changed in it;
//! - a Location whose lease vanished (released by an operator, NetHouse restored from an old
//!   backup) gets phase `LeaseLost` and a Warning event: its pod would get a new IP on restart.
//!
//! Locations are snapshotted BEFORE the leases are listed, so a Location in the snapshot had its
//! lease already (the writer only writes Locations of running pods); the orphan check reads the
//! live cache again at decision time and the pod from the API server.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use nethouse_api::location::{Location, LocationPhase};
use nethouse_api::{Lease, LeaseFilter, LeaseKind};

use crate::context::Context;
use crate::decide::{Release, decide};
use crate::error::Error;
use crate::status::{keeping_retention, set_status};

/// `namespace/pod`.
type PodKey = (String, String);

/// Leases without Location, first seen when (this leadership's memory: a new leader waits a
/// full grace period again, which errs on the side of keeping).
#[derive(Default)]
pub struct Orphans {
    first_seen: HashMap<PodKey, Instant>,
}

/// Runs [`sweep`] every `sweep_every` once the Location cache is synced.
pub async fn run(ctx: Arc<Context>, locations: Store<Location>) {
    if locations.wait_until_ready().await.is_err() {
        return;
    }
    let mut orphans = Orphans::default();
    loop {
        if let Err(e) = sweep(&ctx, &locations, &mut orphans).await {
            tracing::warn!(error = %e, "reconciliation with NetHouse failed; retrying next period");
        }
        tokio::time::sleep(ctx.options.sweep_every).await;
    }
}

fn pod_key(l: &Lease) -> Option<PodKey> {
    l.owner
        .as_ref()
        .map(|o| (o.namespace.clone(), o.pod.clone()))
}

pub async fn sweep(
    ctx: &Context,
    locations: &Store<Location>,
    orphans: &mut Orphans,
) -> Result<(), Error> {
    let snapshot = locations.state();
    let retained = snapshot
        .iter()
        .filter(|l| l.status.as_ref().and_then(|s| s.phase) == Some(LocationPhase::Retained))
        .count();
    ctx.metrics.retained.set(retained as i64);
    let leases = ctx
        .nethouse
        .list_all_leases(&LeaseFilter {
            kind: Some(LeaseKind::Fixed),
            cluster: Some(ctx.options.cluster.clone()),
            ..Default::default()
        })
        .await
        .map_err(Error::ListLeases)?;
    let held: HashSet<PodKey> = leases.iter().filter_map(pod_key).collect();

    for l in &snapshot {
        if l.metadata.deletion_timestamp.is_some()
            || l.spec.cluster != ctx.options.cluster
            || l.status.as_ref().and_then(|s| s.phase) == Some(LocationPhase::LeaseLost)
        {
            continue;
        }
        let k = (l.namespace().unwrap_or_default(), l.name_any());
        if !held.contains(&k) {
            lease_lost(ctx, l).await;
        }
    }

    let mut seen = HashSet::new();
    for lease in &leases {
        let Some(k) = pod_key(lease) else { continue };
        if locations.get(&ObjectRef::new(&k.1).within(&k.0)).is_some() {
            continue;
        }
        seen.insert(k.clone());
        let first = *orphans
            .first_seen
            .entry(k.clone())
            .or_insert_with(Instant::now);
        let unchanged_ms = (k8s_openapi::jiff::Timestamp::now().as_millisecond() as u64)
            .saturating_sub(lease.updated_unix_ms);
        let grace = ctx.options.orphan_grace;
        if first.elapsed() < grace || (unchanged_ms as u128) < grace.as_millis() {
            continue;
        }
        release_orphan(ctx, lease, &k).await;
    }
    orphans.first_seen.retain(|k, _| seen.contains(k));
    Ok(())
}

async fn lease_lost(ctx: &Context, l: &Location) {
    let note = format!(
        "NetHouse holds no lease for pod {}/{} any more: its IPs {} are no longer reserved and the pod gets a new IP when it restarts",
        l.namespace().unwrap_or_default(),
        l.name_any(),
        l.spec.ips.join(", ")
    );
    tracing::warn!(location = %l.name_any(), "{note}");
    let fields = serde_json::json!({"phase": "LeaseLost", "message": note});
    if let Err(e) = set_status(ctx, l, keeping_retention(l, fields)).await {
        tracing::warn!(location = %l.name_any(), error = %e, "recording LeaseLost failed");
        return;
    }
    ctx.metrics.leases_lost.inc();
    ctx.event(l, EventType::Warning, "LeaseLost", note).await;
}

async fn release_orphan(ctx: &Context, lease: &Lease, k: &PodKey) {
    let pod = match Api::<Pod>::namespaced(ctx.client.clone(), &k.0)
        .get_opt(&k.1)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(pod = %format!("{}/{}", k.0, k.1), error = %e, "reading the pod of an orphan lease failed");
            return;
        }
    };
    // Stricter than a deleted Location's rule: with no Location nobody asked for a release, so
    // any pod of the name that has not terminated (even pending without a reported IP, its
    // sandbox possibly set up already) keeps the lease; the writer writes its Location.
    let terminated = pod.as_ref().is_none_or(|p| {
        decide(Some(p)) == Release::Now
            && matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
    });
    if !terminated {
        return;
    }
    let Some(owner) = &lease.owner else { return };
    let ips: Vec<std::net::IpAddr> = lease.ips.iter().map(|i| i.ip).collect();
    match ctx.nethouse.release_exact(owner, &ips).await {
        Ok(r) if r.released.is_some() => {
            ctx.metrics.orphans_released.inc();
            let note = format!(
                "released orphan lease {} of {owner}: no Location and no pod held it for {:?}",
                ips.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                ctx.options.orphan_grace
            );
            tracing::info!(owner = %owner, "{note}");
            if let Some(p) = &pod {
                ctx.event(p, EventType::Normal, "OrphanIPReleased", note)
                    .await;
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(owner = %owner, error = %e, "releasing an orphan lease failed"),
    }
}
