//! 64 concurrent clients allocate until the zone is full, over HTTP against the real server.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{Server, load_request, subnet};
use nethouse_api::codes;
use tokio::sync::Mutex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_fill_the_zone_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let ctrl = server.ctrl();
    // Two subnets in one zone: 253 + 13 = 266 addresses.
    ctrl.add_subnet(&subnet("z1", "10.20.0.0/24"))
        .await
        .unwrap();
    ctrl.add_subnet(&subnet("z1", "10.21.0.0/28"))
        .await
        .unwrap();
    let capacity = 253 + 13;

    let got = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for client_no in 0..64 {
        let node = server.node();
        let got = got.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let req = load_request(client_no, i);
                match node.allocate(&req).await {
                    Ok(resp) => got.lock().await.push(resp.lease.ips[0].ip),
                    Err(e) => return e,
                }
            }
            unreachable!()
        }));
    }
    for t in tasks {
        let err = t.await.unwrap();
        assert_eq!(err.status().map(|s| s.as_u16()), Some(409), "{err}");
        assert_eq!(err.api_code(), Some(codes::ZONE_EXHAUSTED), "{err}");
        assert!(err.to_string().contains("no free IPv4 address"), "{err}");
    }
    let got = got.lock().await;
    let distinct: HashSet<_> = got.iter().collect();
    assert_eq!(got.len(), capacity, "exactly the capacity succeeds");
    assert_eq!(distinct.len(), capacity, "all addresses distinct");
    let zones = ctrl.zones().await.unwrap();
    assert_eq!(zones[0].free_v4, Some(0));
    assert!(!zones[0].can_allocate);
}
