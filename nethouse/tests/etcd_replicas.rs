//! Two `nethouse serve --store etcd` replicas on one real etcd (Debian's etcd-server, one member
//! on loopback): 64 clients allocate through both at once until the zone is full. No address is
//! handed out twice, every acknowledged allocation is in etcd (a third replica started
//! afterwards reads them all back) and in both replicas' views. Also: a subnet added through
//! one replica is served by the other within moments (the watch), and `/readyz` follows etcd.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::etcd::Etcd;
use common::{Server, load_request, sample, subnet};
use nethouse_api::{Client, LeaseFilter, codes};
use tokio::sync::Mutex;

const CLIENTS: usize = 64;

/// Every lease a replica lists: container ID -> its address.
async fn listed(client: &Client) -> HashMap<String, IpAddr> {
    let mut out = HashMap::new();
    let mut filter = LeaseFilter {
        limit: Some(500),
        ..Default::default()
    };
    loop {
        let page = client.list_leases(&filter).await.unwrap();
        for l in page.items {
            let cid = l.attachment.map(|a| a.container_id).unwrap_or_default();
            out.insert(cid, l.ips[0].ip);
        }
        match page.next {
            Some(t) => filter.continue_from = Some(t),
            None => return out,
        }
    }
}

/// Polls `f` until it holds, failing after `within`.
async fn eventually<F: AsyncFn() -> bool>(within: Duration, what: &str, f: F) -> Duration {
    let started = Instant::now();
    while !f().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_through_two_replicas_never_share_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(&dir.path().join("etcd"), None);
    let a = Server::start_on_etcd(&dir.path().join("a"), &etcd.url, &[]);
    let b = Server::start_on_etcd(&dir.path().join("b"), &etcd.url, &[]);
    // Two subnets in one zone, added through a: 1021 + 13 addresses.
    a.ctrl()
        .add_subnet(&subnet("z1", "10.20.0.0/22"))
        .await
        .unwrap();
    a.ctrl()
        .add_subnet(&subnet("z1", "10.21.0.0/28"))
        .await
        .unwrap();
    let capacity = 1021 + 13;
    let learned = eventually(Duration::from_secs(5), "b serves a's subnets", async || {
        b.ctrl().list_subnets().await.unwrap().len() == 2
    })
    .await;
    eprintln!("b learned a's subnets {learned:?} after they were added");

    // Client k talks to replica k % 2; a 503 (a lost race retried too often) is tried again.
    let acked = Arc::new(Mutex::new(Vec::<(String, IpAddr)>::new()));
    let retries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client_no in 0..CLIENTS {
        let node = if client_no.is_multiple_of(2) {
            a.node()
        } else {
            b.node()
        };
        let (acked, retries) = (acked.clone(), retries.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            loop {
                let req = load_request(client_no, i);
                match node.allocate(&req).await {
                    Ok(resp) => {
                        acked
                            .lock()
                            .await
                            .push((req.attachment.container_id, resp.lease.ips[0].ip));
                        i += 1;
                    }
                    Err(e) if e.is_transient() => {
                        retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(e) => return e,
                }
            }
        }));
    }
    for t in tasks {
        let err = t.await.unwrap();
        assert_eq!(err.api_code(), Some(codes::ZONE_EXHAUSTED), "{err}");
    }
    let took = started.elapsed();
    let acked = acked.lock().await.clone();
    let distinct: HashSet<IpAddr> = acked.iter().map(|(_, ip)| *ip).collect();
    eprintln!(
        "{} allocations through 2 replicas in {took:?} ({:.0}/s), {} retried 503s",
        acked.len(),
        acked.len() as f64 / took.as_secs_f64(),
        retries.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(
        distinct.len(),
        acked.len(),
        "an address was handed out twice"
    );
    assert_eq!(acked.len(), capacity, "exactly the capacity succeeds");

    // Every acknowledged allocation is in etcd: a replica started now reads them all back,
    // and both serving replicas' views converge to it.
    let want: HashMap<String, IpAddr> = acked.into_iter().collect();
    let c = Server::start_on_etcd(&dir.path().join("c"), &etcd.url, &[]);
    assert_eq!(
        listed(&c.ctrl()).await,
        want,
        "etcd holds what was acknowledged"
    );
    for (name, replica) in [("a", &a), ("b", &b)] {
        eventually(
            Duration::from_secs(5),
            &format!("{name}'s view holds every lease"),
            async || listed(&replica.ctrl()).await == want,
        )
        .await;
    }

    // A fixed pod's lease made through a is found again through b: the same address.
    let first = load_request(0, 0);
    let mut moved = first.clone();
    moved.attachment.container_id = "c0-0-again".into();
    let via_b = b.node().allocate(&moved).await.unwrap();
    assert_eq!(via_b.lease.ips[0].ip, want["c0-0"]);

    assert!(
        a.metric("nethouse_etcd_request_duration_seconds_count{op=\"txn\"}")
            .await
            .is_some_and(|n| n > 0.0)
    );
    // a's view is complete up to etcd's revision (b's last write included). Commits that
    // waited together share a revision, so that is not one revision per allocation.
    let at = etcd.revision();
    eventually(
        Duration::from_secs(5),
        "a's watched revision reaches etcd's",
        async || a.metric("nethouse_store_watched_revision").await == Some(at as f64),
    )
    .await;
    // The watch-lag metrics: a's own commits were timed until its watch brought them, and
    // nothing etcd reported is missing from its view.
    let lag = async |name| a.metric(name).await;
    assert!(lag("nethouse_store_watch_lag_seconds_count").await > Some(0.0));
    assert_eq!(lag("nethouse_store_watch_lag_revisions").await, Some(0.0));

    // Filling the zone from both sides, each replica tried for addresses the other had just
    // taken (the end of each subnet above all): those lost races are counted, on addresses.
    let mut lost = 0.0;
    for replica in [&a, &b] {
        let page = replica.metrics().await.expect("a /metrics page");
        for kind in nethouse::ipam::races::KINDS {
            let series = format!("nethouse_ipam_lost_races_total{{kind=\"{kind}\"}}");
            let n = sample(&page, &series).unwrap_or_else(|| panic!("{series}"));
            eprintln!("{series}: {n}");
            if kind == "address" {
                lost += n;
            }
        }
    }
    assert!(lost > 0.0, "no lost race on an address counted");
}

#[tokio::test]
async fn readyz_follows_whether_etcd_answers() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(&dir.path().join("etcd"), None);
    let a = Server::start_on_etcd(&dir.path().join("a"), &etcd.url, &[]);
    let ready = async || {
        reqwest::get(format!("{}/readyz", a.url))
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(ready().await, 200);
    etcd.pause(true);
    let red = eventually(Duration::from_secs(20), "/readyz 503", async || {
        ready().await == 503
    })
    .await;
    let body = reqwest::get(format!("{}/readyz", a.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("etcd cannot be reached"), "{body}");
    etcd.pause(false);
    let green = eventually(Duration::from_secs(20), "/readyz 200 again", async || {
        ready().await == 200
    })
    .await;
    eprintln!("etcd stopped: /readyz 503 after {red:?}; resumed: 200 after {green:?}");
    assert!(a.log_text().contains("etcd cannot be reached"));
}
