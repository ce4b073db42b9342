//! `nethouse store migrate` between a real embedded store and a real etcd (Debian's
//! etcd-server), through the binary as operators run it: leases made on one replica are served
//! unchanged by NetHouse on the other store, both ways; a target holding any key is refused and
//! left as it was.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::etcd::Etcd;
use common::{Server, subnet};
use nethouse_api::{AllocateRequest, Attachment, Lease, LeaseFilter, LeaseKind, Owner};

fn migrate(to: &str, data_dir: &Path, etcd: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nethouse"))
        .args(["store", "migrate", "--to", to, "--etcd-endpoints", etcd])
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("running nethouse store migrate")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn request(pod: &str, kind: LeaseKind) -> AllocateRequest {
    AllocateRequest {
        zone: "z1".into(),
        kind,
        owner: Some(Owner {
            cluster: "k".into(),
            namespace: "ns".into(),
            pod: pod.into(),
        }),
        attachment: Attachment {
            container_id: format!("c-{pod}"),
            ifname: "eth0".into(),
            node: "n1".into(),
        },
    }
}

/// Every lease, as comparable text (owner, kind, addresses, attachment).
async fn leases(server: &Server) -> Vec<String> {
    let mut all: Vec<String> = server
        .ctrl()
        .list_all_leases(&LeaseFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|l: &Lease| format!("{:?} {:?} {:?} {:?}", l.owner, l.kind, l.ips, l.attachment))
        .collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_to_etcd_and_back_keeps_every_lease_and_refuses_a_non_empty_target() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(&dir.path().join("etcd"), None);

    // A single replica with leases of both kinds, one fixed lease retained (detached).
    let mut one = Server::start(&dir.path().join("one"), &[]);
    one.ctrl()
        .add_subnet(&subnet("z1", "10.81.0.0/24"))
        .await
        .unwrap();
    let mut p0_ips = None;
    for i in 0..20 {
        let kind = if i % 2 == 0 {
            LeaseKind::Fixed
        } else {
            LeaseKind::Ephemeral
        };
        let got = one
            .node()
            .allocate(&request(&format!("p{i}"), kind))
            .await
            .unwrap();
        p0_ips.get_or_insert(got.lease.ips);
    }
    one.node()
        .detach(&nethouse_api::DetachRequest {
            container_id: "c-p0".into(),
            ifname: "eth0".into(),
            owner: None,
        })
        .await
        .unwrap();
    let before = leases(&one).await;
    assert_eq!(before.len(), 20);
    assert_eq!(one.terminate().code(), Some(0));

    let out = migrate("etcd", &one.data_dir, &etcd.url);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("copied and verified key by key"),
        "{}",
        text(&out)
    );

    // NetHouse on etcd serves the same leases, and a fixed pod gets its address back.
    let mut on_etcd = Server::start_on_etcd(&dir.path().join("etcd-replica"), &etcd.url, &[]);
    assert_eq!(leases(&on_etcd).await, before);
    let p0 = on_etcd
        .node()
        .allocate(&request("p0", LeaseKind::Fixed))
        .await
        .unwrap();
    assert_eq!(
        Some(p0.lease.ips),
        p0_ips,
        "p0, retained, gets its address back"
    );
    let after_etcd = leases(&on_etcd).await;
    assert_eq!(on_etcd.terminate().code(), Some(0));

    // Again into the same etcd: refused, nothing changed.
    let out = migrate("etcd", &one.data_dir, &etcd.url);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("the target is not empty"),
        "{}",
        text(&out)
    );

    // Back into a new embedded store.
    let back_dir = dir.path().join("back");
    let out = migrate("embedded", &back_dir.join("data"), &etcd.url);
    assert!(out.status.success(), "{}", text(&out));
    let back = Server::start(&back_dir, &[]);
    assert_eq!(leases(&back).await, after_etcd);
    drop(back);

    // Into an embedded store that holds leases: refused.
    let out = migrate("embedded", &one.data_dir, &etcd.url);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("the target is not empty"),
        "{}",
        text(&out)
    );
}
