//! After the store re-opened, the view is read back from it (a change whose commit reported
//! failure may have landed), only while no change runs; `/readyz` follows the store and the
//! re-read, `/healthz` fails only once the store has been unusable for the whole bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nethouse_api::{AllocateRequest, Attachment, Client, ClientConfig, LeaseKind, Owner};

use super::recovery::UNHEALTHY_AFTER;
use super::{App, Auth, DEFAULT_MAX_IN_FLIGHT, router};
use crate::clock::ManualClock;
use crate::ipam::{Ipam, IpamConfig};
use crate::model::lease::ValidAllocate;
use crate::store::Store;
use crate::store::faulty::FaultyStore;
use crate::store::health::{Failure, FailureKind};

const ENOSPC: &str = "I/O error: No space left on device (os error 28)";

fn owner(pod: &str) -> Owner {
    Owner {
        cluster: "k".into(),
        namespace: "db".into(),
        pod: pod.into(),
    }
}

fn allocation(pod: &str) -> AllocateRequest {
    AllocateRequest {
        zone: "z1".into(),
        kind: LeaseKind::Fixed,
        owner: Some(owner(pod)),
        attachment: Attachment {
            container_id: format!("c-{pod}"),
            ifname: "eth0".into(),
            node: "n1".into(),
        },
    }
}

async fn ipam<S: Store>(store: S) -> Ipam<S> {
    Ipam::load(
        store,
        Arc::new(ManualClock::new(1_000)),
        IpamConfig::default(),
    )
    .await
    .unwrap()
}

struct Served {
    store: FaultyStore,
    app: Arc<App<FaultyStore>>,
    url: String,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn serve() -> Served {
    let store = FaultyStore::default();
    let ipam = ipam(store.clone()).await;
    ipam.add_subnet(&nethouse_api::SubnetSpec {
        zone: "z1".into(),
        cidr: "10.0.0.0/24".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let app = App::new(ipam, Auth::Disabled, DEFAULT_MAX_IN_FLIGHT);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(axum::serve(listener, router(app.clone())).into_future());
    Served {
        store,
        app,
        url,
        http: reqwest::Client::new(),
        server,
    }
}

impl Served {
    async fn get(&self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = self.get("/readyz").await;
            if status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "not ready again: {body}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn a_reopened_store_is_read_back_and_health_follows_it() {
    let s = serve().await;
    assert_eq!(s.get("/readyz").await.0, 200);

    s.store.set_health(|h| {
        h.failing = Some(Failure {
            since: Instant::now(),
            kind: FailureKind::NoSpace,
            cause: ENOSPC.into(),
        })
    });
    let (status, body) = s.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("No space left on device"), "{body}");
    let (status, body) = s.get("/healthz").await;
    assert_eq!(status, 200, "live while recovery may still succeed: {body}");

    let long_ago = Instant::now()
        .checked_sub(UNHEALTHY_AFTER + Duration::from_secs(1))
        .unwrap();
    s.store
        .set_health(|h| h.failing.as_mut().unwrap().since = long_ago);
    let (status, body) = s.get("/healthz").await;
    assert_eq!(status, 503, "unusable for longer than the bound: {body}");
    assert!(
        body.contains("No space left on device") && body.contains("restart"),
        "{body}"
    );

    // A commit that reported failure reached the disk after all: written behind the view.
    let other = ipam(s.store.inner.clone()).await;
    let (landed, _) = other
        .allocate(ValidAllocate::from_request(allocation("landed")).unwrap())
        .await
        .unwrap();
    assert!(s.app.ipam.lease_by_owner(&owner("landed")).is_err());

    s.store.set_health(|h| {
        h.failing = None;
        h.reopens = 1;
    });
    s.until_ready().await;
    assert_eq!(
        s.app.ipam.lease_by_owner(&owner("landed")).unwrap().ips,
        landed.lease.ips,
        "the view was read back from the re-opened store"
    );
    assert_eq!(s.app.ipam.inconsistencies(), Vec::<String>::new());
    assert_eq!(s.get("/healthz").await.0, 200);
    s.server.abort();
}

#[tokio::test]
async fn the_view_is_read_back_only_once_no_change_runs() {
    let s = serve().await;
    let client = Client::new(ClientConfig::new(s.url.clone())).unwrap();
    s.store.hold_next_commit();
    let held = tokio::spawn(async move { client.allocate(&allocation("held")).await });
    tokio::time::timeout(Duration::from_secs(10), s.store.committed())
        .await
        .expect("the allocation reached the store");

    s.store.set_health(|h| h.reopens = 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = s.get("/readyz").await;
    assert_eq!(
        status, 503,
        "the re-read waits for the running change: {body}"
    );
    assert!(body.contains("re-reading"), "{body}");

    s.store.release();
    let held = held.await.unwrap().unwrap();
    s.until_ready().await;
    assert_eq!(
        s.app.ipam.lease_by_owner(&owner("held")).unwrap().ips,
        held.lease.ips
    );
    assert_eq!(s.app.ipam.inconsistencies(), Vec::<String>::new());
    s.server.abort();
}

#[tokio::test]
async fn an_unreachable_etcd_makes_the_replica_unready_but_never_asks_for_a_restart() {
    let s = serve().await;
    let long_ago = Instant::now().checked_sub(UNHEALTHY_AFTER * 2).unwrap();
    s.store.set_health(|h| {
        h.failing = Some(Failure {
            since: long_ago,
            kind: FailureKind::Unreachable,
            cause: "etcd cannot be reached (txn): no answer within 5s".into(),
        })
    });
    let (status, body) = s.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("etcd cannot be reached"), "{body}");
    let (status, body) = s.get("/healthz").await;
    assert_eq!(status, 200, "a restart cannot bring etcd back: {body}");
    s.store.set_health(|h| h.failing = None);
    s.until_ready().await;
}
