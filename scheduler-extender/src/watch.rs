//! Keeps the index current: watchers on Nodes and Locations (kube-runtime), and a poller of
//! NetHouse's zone capacity. The index reports ready once both watches have listed everything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use nethouse_api::location::{Location, LocationPhase, ZONE_LABEL};

use crate::decide::LocationInfo;
use crate::index::Index;

fn location_info(l: &Location) -> LocationInfo {
    LocationInfo {
        ips: l.spec.ips.clone(),
        zone: l.spec.zone.clone(),
        node: l.status.as_ref().and_then(|s| s.node.clone()),
        // A deleted Location no longer pins its pod, except while it is retained (its
        // StatefulSet was deleted): a StatefulSet recreated under the same name in the
        // retention window gets its pods back in the zone of their IPs.
        deleting: l.metadata.deletion_timestamp.is_some()
            && l.status.as_ref().and_then(|s| s.phase) != Some(LocationPhase::Retained),
    }
}

struct Synced {
    nodes: AtomicBool,
    locations: AtomicBool,
}

impl Synced {
    fn update(&self, index: &RwLock<Index>) {
        let all = self.nodes.load(Ordering::SeqCst) && self.locations.load(Ordering::SeqCst);
        if let Ok(mut i) = index.write() {
            i.set_synced(all);
        }
    }
}

async fn watch_nodes(client: kube::Client, index: Arc<RwLock<Index>>, synced: Arc<Synced>) {
    let api: Api<Node> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    loop {
        match stream.try_next().await {
            Ok(Some(Event::Apply(n) | Event::InitApply(n))) => {
                let zone = n.labels().get(ZONE_LABEL).cloned();
                if let Ok(mut i) = index.write() {
                    i.apply_node(&n.name_any(), zone.as_deref());
                }
            }
            Ok(Some(Event::Delete(n))) => {
                if let Ok(mut i) = index.write() {
                    i.delete_node(&n.name_any());
                }
            }
            Ok(Some(Event::Init)) => {}
            Ok(Some(Event::InitDone)) => {
                synced.nodes.store(true, Ordering::SeqCst);
                synced.update(&index);
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "node watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn watch_locations(client: kube::Client, index: Arc<RwLock<Index>>, synced: Arc<Synced>) {
    let api: Api<Location> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    loop {
        match stream.try_next().await {
            Ok(Some(Event::Apply(l) | Event::InitApply(l))) => {
                if let Ok(mut i) = index.write() {
                    i.apply_location(
                        &l.namespace().unwrap_or_default(),
                        &l.name_any(),
                        location_info(&l),
                    );
                }
            }
            Ok(Some(Event::Delete(l))) => {
                if let Ok(mut i) = index.write() {
                    i.delete_location(&l.namespace().unwrap_or_default(), &l.name_any());
                }
            }
            Ok(Some(Event::Init)) => {}
            Ok(Some(Event::InitDone)) => {
                synced.locations.store(true, Ordering::SeqCst);
                synced.update(&index);
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "location watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Refreshes which zones can take a new lease, from NetHouse `GET /v1/zones`.
async fn poll_zones(nethouse: nethouse_api::Client, index: Arc<RwLock<Index>>, every: Duration) {
    loop {
        match nethouse.zones().await {
            Ok(zones) => {
                if let Ok(mut i) = index.write() {
                    i.set_zones(zones.into_iter().map(|z| (z.name, z.can_allocate)));
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading zone capacity from NetHouse failed"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Starts every watcher; they run until the returned handles are aborted.
pub fn start(
    client: kube::Client,
    nethouse: nethouse_api::Client,
    index: Arc<RwLock<Index>>,
    zones_every: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    let synced = Arc::new(Synced {
        nodes: AtomicBool::new(false),
        locations: AtomicBool::new(false),
    });
    vec![
        tokio::spawn(watch_nodes(client.clone(), index.clone(), synced.clone())),
        tokio::spawn(watch_locations(client, index.clone(), synced)),
        tokio::spawn(poll_zones(nethouse, index, zones_every)),
    ]
}
