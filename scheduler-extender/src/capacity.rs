//! Which zones can take a new lease, polled from NetHouse `GET /v1/zones` into the index: a
//! fixed pod without a Location yet may only go to a zone with free addresses.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::index::Index;

/// Refreshes the index's zone capacity every `every` until aborted.
pub async fn poll_zones(
    nethouse: nethouse_api::Client,
    index: Arc<RwLock<Index>>,
    every: Duration,
) {
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
