//! A client that goes away mid-request must not leave the IPAM's view behind its store, and a
//! stalled store must not collect an unbounded number of calls waiting on it.
//!
//! hyper drops a handler's future when its connection closes. Dropped after the store committed
//! but before the in-memory view was updated, a release would leave a lease the store no longer
//! has, and its addresses would never cool down or be handed out again until a restart. The
//! store here commits, then holds the caller until the test lets it go, so the disconnect lands
//! in exactly that gap.

use std::sync::Arc;
use std::time::Duration;

use nethouse_api::{AllocateRequest, Attachment, LeaseFilter, LeaseKind, Owner, SubnetSpec};
use tokio::io::AsyncWriteExt;

use super::{App, Auth, router};
use crate::clock::ManualClock;
use crate::ipam::{Ipam, IpamConfig};
use crate::model::lease::ValidAllocate;
use crate::store::faulty::FaultyStore;

fn owner() -> Owner {
    Owner {
        cluster: "k".into(),
        namespace: "db".into(),
        pod: "redis-0".into(),
    }
}

/// An IPAM over `store` with one small subnet in zone z1, cooldown 60 s.
async fn ipam_with_a_subnet(store: &FaultyStore) -> Ipam<FaultyStore> {
    let ipam = Ipam::load(
        store.clone(),
        Arc::new(ManualClock::new(1_000)),
        IpamConfig {
            default_cooldown_ms: 60_000,
        },
    )
    .await
    .unwrap();
    ipam.add_subnet(&SubnetSpec {
        zone: "z1".into(),
        cidr: "10.0.0.0/29".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    ipam
}

#[tokio::test]
async fn release_completes_when_the_client_disconnects_after_the_commit() {
    let store = FaultyStore::default();
    let ipam = ipam_with_a_subnet(&store).await;
    ipam.allocate(
        ValidAllocate::from_request(AllocateRequest {
            zone: "z1".into(),
            kind: LeaseKind::Fixed,
            owner: Some(owner()),
            attachment: Attachment {
                container_id: "c1".into(),
                ifname: "eth0".into(),
                node: "n1".into(),
            },
        })
        .unwrap(),
    )
    .await
    .unwrap();

    let app = App::new(ipam, Auth::Disabled, super::DEFAULT_MAX_IN_FLIGHT);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, router(app.clone())).into_future());

    store.hold_next_commit();
    let body = serde_json::json!({ "owner": owner() }).to_string();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(
        format!(
            "POST /v1/leases/release HTTP/1.1\r\nhost: nethouse\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), store.committed())
        .await
        .expect("the release reached the store");
    // The client dies (a controller killed, a CNI plugin past its timeout) and hyper notices.
    drop(conn);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.metrics.mutations_in_flight.get(),
        1,
        "the release still runs, and is counted"
    );
    store.release();

    let mut cooling = 0;
    for _ in 0..100 {
        cooling = app.ipam.subnets()[0].usage.cooling;
        if cooling == 1 && app.metrics.mutations_in_flight.get() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cooling, 1, "the released address cools down");
    let leases = app.ipam.list(&LeaseFilter::default()).unwrap();
    assert!(leases.items.is_empty(), "no lease is left: {leases:?}");
    assert_eq!(app.ipam.inconsistencies(), Vec::<String>::new());
    assert_eq!(app.metrics.mutations_in_flight.get(), 0);
    server.abort();
}

fn allocate_request(pod: &str) -> AllocateRequest {
    AllocateRequest {
        zone: "z1".into(),
        kind: LeaseKind::Fixed,
        owner: Some(Owner {
            pod: pod.into(),
            ..owner()
        }),
        attachment: Attachment {
            container_id: format!("c-{pod}"),
            ifname: "eth0".into(),
            node: "n1".into(),
        },
    }
}

#[tokio::test]
async fn a_stalled_store_bounds_the_calls_waiting_on_it() {
    let store = FaultyStore::default();
    let ipam = ipam_with_a_subnet(&store).await;
    let app = App::new(ipam, Auth::Disabled, 1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(axum::serve(listener, router(app.clone())).into_future());
    let client = nethouse_api::Client::new(nethouse_api::ClientConfig::new(url)).unwrap();

    // The store stalls on the first call: it is the one call allowed to run.
    store.hold_next_commit();
    let first = {
        let client = client.clone();
        tokio::spawn(async move { client.allocate(&allocate_request("redis-1")).await })
    };
    tokio::time::timeout(Duration::from_secs(10), store.committed())
        .await
        .expect("the first call reached the store");

    // The next one is refused at once, transient, having done nothing.
    let e = client
        .allocate(&allocate_request("redis-2"))
        .await
        .unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(503), "{e}");
    assert!(
        e.is_transient() && e.to_string().contains("--max-in-flight"),
        "{e}"
    );
    assert_eq!(app.metrics.mutations_refused.get(), 1);
    assert_eq!(app.metrics.mutations_in_flight.get(), 1);

    store.release();
    first.await.unwrap().unwrap();
    let second = client.allocate(&allocate_request("redis-2")).await.unwrap();
    assert_eq!(second.lease.ips.len(), 1);
    let leases = app.ipam.list(&LeaseFilter::default()).unwrap();
    assert_eq!(leases.items.len(), 2, "{leases:?}");
    assert_eq!(app.metrics.mutations_in_flight.get(), 0);
    assert_eq!(app.ipam.inconsistencies(), Vec::<String>::new());
    server.abort();
}
