//! What the load generators of NetHouse's etcd chaos test and etcd bench share: a client whose
//! server list starts at another replica for each client (so the load goes through all of
//! them), and the fixed-lease allocation each client makes, one new pod per call.

use std::time::Duration;

use nethouse_api::{AllocateRequest, Attachment, Client, ClientConfig, LeaseKind, Owner};

/// A client of `urls` that asks `urls[first]` first, then the others in order; `timeout`
/// bounds each call (the client's default when `None`).
pub fn rotated_client(urls: &[String], first: usize, timeout: Option<Duration>) -> Client {
    let mut cfg = ClientConfig::new(String::new());
    cfg.urls = (0..urls.len())
        .map(|k| urls[(first + k) % urls.len()].clone())
        .collect();
    if let Some(t) = timeout {
        cfg.timeout = t;
    }
    Client::new(cfg).expect("a client of loopback URLs")
}

/// Client `client_no`'s `i`-th allocation: a fixed lease in zone z1 for pod `p{client_no}-{i}`.
pub fn fixed_request(client_no: usize, i: usize) -> AllocateRequest {
    AllocateRequest {
        zone: "z1".into(),
        kind: LeaseKind::Fixed,
        owner: Some(Owner {
            cluster: "k".into(),
            namespace: "ns".into(),
            pod: format!("p{client_no}-{i}"),
        }),
        attachment: Attachment {
            container_id: format!("c{client_no}-{i}"),
            ifname: "eth0".into(),
            node: format!("n{}", client_no % 8),
        },
    }
}
