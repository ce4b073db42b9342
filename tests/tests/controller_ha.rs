//! The location controller as real processes on the real control plane:
//! - two replicas, one active (leader Lease); the leader killed with SIGKILL, the standby takes
//!   over and releases what the old one left;
//! - a controller killed in the middle of 100 releases leaks nothing (its successor finishes every
//!   one), and a release it had made before dying is not repeated on the lease the pod name got
//!   since (the release names the Location's addresses).
//!
//! The Locations' pods never existed, so every release is due once a Location is deleted.

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, ListParams};
use nethouse_api::location::Location;
use nethouse_api::{AllocateRequest, Attachment, Client, LeaseKind, Owner};
use nethouse_e2e::cluster::Cluster;
use nethouse_e2e::ports::free_port;
use nethouse_e2e::stack::{
    controller_process, kube_client, nethouse_and_cluster, orphan_locations,
};

fn holder(c: &Cluster) -> String {
    c.kubectl(&[
        "get",
        "lease",
        "nethouse-location-controller",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
    .unwrap_or_default()
    .trim()
    .to_string()
}

fn locations(c: &Cluster) -> usize {
    c.kubectl(&["get", "loc", "-o", "name"])
        .unwrap_or_default()
        .lines()
        .count()
}

fn kill(child: &mut Child) {
    // SIGKILL: no shutdown path runs, the Lease is not released.
    let _ = child.kill();
    let _ = child.wait();
}

fn show_log(path: &Path) {
    if std::thread::panicking() {
        eprintln!(
            "--- {}:\n{}",
            path.display(),
            std::fs::read_to_string(path).unwrap_or_default()
        );
    }
}

struct Procs(Vec<(Child, std::path::PathBuf)>);

impl Drop for Procs {
    fn drop(&mut self) {
        for (c, log) in &mut self.0 {
            kill(c);
            show_log(log);
        }
    }
}

#[test]
fn leader_failover() {
    let rt = nethouse_e2e::stack::runtime();
    let _enter = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let (nethouse, nh, mut cluster) =
        nethouse_and_cluster(&rt, dir.path(), &[("z1", "10.243.0.0/24")]).unwrap();
    rt.block_on(orphan_locations(&nh, &cluster, "z1", "e2e", "zk", 10))
        .unwrap();

    let mut procs = Procs(Vec::new());
    for id in ["ctl-a", "ctl-b"] {
        let log = dir.path().join(format!("{id}.log"));
        let child = controller_process(
            &cluster.kubeconfig,
            &nethouse.url(),
            id,
            free_port().unwrap(),
            &log,
        )
        .unwrap();
        procs.0.push((child, log));
        if id == "ctl-a" {
            cluster
                .wait_for("ctl-a leads", Duration::from_secs(30), |c| {
                    (holder(c) == "ctl-a").then_some(())
                })
                .unwrap();
        }
    }

    // The leader releases; the standby stays the standby.
    for i in 0..5 {
        cluster
            .kubectl(&["delete", "loc", &format!("zk-{i}"), "--wait=false"])
            .unwrap();
    }
    cluster
        .wait_for("5 released by the leader", Duration::from_secs(30), |c| {
            (locations(c) == 5).then_some(())
        })
        .unwrap();
    assert_eq!(holder(&cluster), "ctl-a");

    // The leader dies without a word; the standby takes over when the Lease expires.
    kill(&mut procs.0[0].0);
    for i in 5..10 {
        cluster
            .kubectl(&["delete", "loc", &format!("zk-{i}"), "--wait=false"])
            .unwrap();
    }
    cluster
        .wait_for("ctl-b leads", Duration::from_secs(30), |c| {
            (holder(c) == "ctl-b").then_some(())
        })
        .unwrap();
    cluster
        .wait_for(
            "the rest released by the new leader",
            Duration::from_secs(30),
            |c| (locations(c) == 0).then_some(()),
        )
        .unwrap();
    let left = rt
        .block_on(nh.list_all_leases(&Default::default()))
        .unwrap();
    assert!(left.is_empty(), "{} leases leaked", left.len());

    drop(procs);
    drop(cluster);
    rt.block_on(nethouse.shutdown(Duration::from_secs(2)));
}

async fn fixed_lease(nh: &Client, pod: &str, container: &str) -> String {
    nh.allocate(&AllocateRequest {
        zone: "z1".into(),
        kind: LeaseKind::Fixed,
        owner: Some(Owner {
            cluster: "e2e".into(),
            namespace: "default".into(),
            pod: pod.into(),
        }),
        attachment: Attachment {
            container_id: container.into(),
            ifname: "eth0".into(),
            node: "z1-a".into(),
        },
    })
    .await
    .expect("allocate")
    .lease
    .ips[0]
        .ip
        .to_string()
}

#[test]
fn controller_killed_mid_release_leaks_nothing_and_releases_nothing_twice() {
    const N: usize = 100;
    let rt = nethouse_e2e::stack::runtime();
    let _enter = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let (nethouse, nh, mut cluster) =
        nethouse_and_cluster(&rt, dir.path(), &[("z1", "10.244.0.0/24")]).unwrap();

    // What a controller that died between releasing and removing the finalizer leaves: the
    // Location of solr-0 names IP A, deleted, finalizer on; NetHouse released A, and a new
    // solr-0 got IP B since.
    let a = rt.block_on(fixed_lease(&nh, "solr-0", "c-old"));
    cluster
        .kubectl_stdin(
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: nethouse.io/v1alpha1\nkind: Location\nmetadata: {{name: solr-0, namespace: default, finalizers: [nethouse.io/release-ip]}}\n\
                 spec: {{ips: [\"{a}\"], zone: z1, cluster: e2e}}\n"
            )),
        )
        .unwrap();
    let owner = Owner {
        cluster: "e2e".into(),
        namespace: "default".into(),
        pod: "solr-0".into(),
    };
    rt.block_on(nh.release(&owner)).unwrap();
    let b = rt.block_on(fixed_lease(&nh, "solr-0", "c-new"));
    assert_ne!(a, b, "A is in its cooldown");
    cluster
        .kubectl(&["delete", "loc", "solr-0", "--wait=false"])
        .unwrap();

    // 100 releases due; the controller is killed while it works through them.
    rt.block_on(orphan_locations(&nh, &cluster, "z1", "e2e", "kafka", N))
        .unwrap();
    let mut procs = Procs(Vec::new());
    let log = dir.path().join("first.log");
    let first = controller_process(
        &cluster.kubeconfig,
        &nethouse.url(),
        "first",
        free_port().unwrap(),
        &log,
    )
    .unwrap();
    procs.0.push((first, log));
    cluster
        .wait_for("first leads", Duration::from_secs(30), |c| {
            (holder(c) == "first").then_some(())
        })
        .unwrap();
    // One deletecollection marks all 101; releases take milliseconds each, so the kill lands
    // while they are in flight.
    let kube = rt.block_on(kube_client(&cluster.kubeconfig)).unwrap();
    let api: Api<Location> = Api::namespaced(kube, "default");
    let deleting = rt.spawn(async move {
        api.delete_collection(&DeleteParams::background(), &ListParams::default())
            .await
    });
    std::thread::sleep(Duration::from_millis(150));
    kill(&mut procs.0[0].0);
    rt.block_on(deleting).unwrap().unwrap();
    eprintln!(
        "killed with {} of {} Locations left",
        locations(&cluster),
        N + 1
    );

    let log = dir.path().join("second.log");
    let second = controller_process(
        &cluster.kubeconfig,
        &nethouse.url(),
        "second",
        free_port().unwrap(),
        &log,
    )
    .unwrap();
    procs.0.push((second, log));
    cluster
        .wait_for("every Location gone", Duration::from_secs(60), |c| {
            (locations(c) == 0).then_some(())
        })
        .unwrap();

    let left = rt
        .block_on(nh.list_all_leases(&Default::default()))
        .unwrap();
    assert_eq!(left.len(), 1, "only solr-0's new lease is left: {left:?}");
    assert_eq!(
        left[0].ips[0].ip.to_string(),
        b,
        "the new lease is not released"
    );
    let cooling = rt.block_on(nh.list_subnets()).unwrap()[0].usage.cooling;
    assert_eq!(
        cooling,
        (N + 1) as u64,
        "every kafka IP and A released once"
    );

    drop(procs);
    drop(cluster);
    rt.block_on(nethouse.shutdown(Duration::from_secs(2)));
}
