//! A client that goes away mid-request must not leave the IPAM's view behind its store.
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

#[tokio::test]
async fn release_completes_when_the_client_disconnects_after_the_commit() {
    let store = FaultyStore::default();
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

    let app = App::new(ipam, Auth::Disabled);
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
