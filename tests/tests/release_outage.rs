//! NetHouse stopped while 100 Locations are deleted: nothing is released while it is down, every
//! finalizer stays, and once it is back every IP is released (and every Location gone) within
//! 30 s. No pods are involved: the Locations' pods never existed, so each release is due.

use std::time::{Duration, Instant};

use nethouse::server::running::{ServerOptions, start, start_local};
use nethouse_e2e::cluster::{Cluster, ClusterOptions};
use nethouse_e2e::stack::{apply_crd, kube_client, orphan_locations};

const N: usize = 100;

#[test]
fn nethouse_outage_delays_releases_and_loses_none() {
    let rt = nethouse_e2e::stack::runtime();
    let _enter = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nethouse");
    let cooldown = Duration::from_secs(60);
    let (running, nh) = rt
        .block_on(start_local(&data_dir, cooldown, &[("z1", "10.250.0.0/24")]))
        .unwrap();
    let mut nethouse = Some(running);

    let mut cluster = Cluster::start(ClusterOptions::default()).expect("control plane");
    apply_crd(&mut cluster).unwrap();

    rt.block_on(orphan_locations(&nh, &cluster, "z1", "e2e", "kafka", N))
        .unwrap();
    let kube = rt.block_on(kube_client(&cluster.kubeconfig)).unwrap();
    let controller =
        nethouse_e2e::stack::location_controller(kube, &nh, "e2e", Duration::from_secs(3600));

    // NetHouse goes down; all 100 Locations are deleted.
    let port = nethouse.as_ref().unwrap().addr.port();
    rt.block_on(nethouse.take().unwrap().shutdown(Duration::from_secs(1)));
    cluster
        .kubectl(&["delete", "loc", "--all", "--wait=false"])
        .unwrap();
    std::thread::sleep(Duration::from_secs(8));
    let left = cluster.kubectl(&["get", "loc", "-o", "name"]).unwrap();
    assert_eq!(
        left.lines().count(),
        N,
        "a finalizer came off while NetHouse could not confirm a release"
    );

    // It comes back (same port, same store): everything is released within 30 s.
    let mut again = ServerOptions::local(&data_dir);
    again.default_cooldown = cooldown;
    again.listen.set_port(port);
    let back = rt.block_on(start(again)).unwrap();
    let t = Instant::now();
    cluster
        .wait_for("every Location gone", Duration::from_secs(30), |c| {
            c.kubectl(&["get", "loc", "-o", "name"])
                .ok()
                .filter(|o| o.trim().is_empty())
        })
        .unwrap();
    let took = t.elapsed();
    let held = rt
        .block_on(nh.list_all_leases(&Default::default()))
        .unwrap();
    assert!(held.is_empty(), "{} leases were not released", held.len());
    eprintln!("all {N} released {took:?} after NetHouse came back");

    controller.abort();
    drop(cluster);
    rt.block_on(back.shutdown(Duration::from_secs(1)));
}
