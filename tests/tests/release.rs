//! Invariant 4 on the real control plane: a fixed pod's IP is released only after its Location
//! is deleted AND the pod is gone; the finalizer comes off only after NetHouse confirmed. While
//! the pod runs, a deleted Location stays (finalizer) and the lease stays. Locations are written
//! by the extender's writer from running pods.

use std::time::Duration;

use nethouse_api::Owner;
use nethouse_e2e::ports::free_port;
use nethouse_e2e::stack::{
    agent, extender, fixed_statefulset, kube_client, location_controller, nethouse_and_cluster,
    wait_running,
};

fn owner(pod: &str) -> Owner {
    Owner {
        cluster: "e2e".into(),
        namespace: "default".into(),
        pod: pod.into(),
    }
}

#[test]
fn ip_is_released_only_when_the_location_is_deleted_and_the_pod_is_gone() {
    let rt = nethouse_e2e::stack::runtime();
    let _enter = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let (nethouse, nh, mut cluster) =
        nethouse_and_cluster(&rt, dir.path(), &[("z1", "10.240.0.0/24")]).unwrap();
    let kube = rt.block_on(kube_client(&cluster.kubeconfig)).unwrap();
    let _writer = rt
        .block_on(extender(kube.clone(), &nh, "e2e", free_port().unwrap()))
        .unwrap();
    let controller = location_controller(kube.clone(), &nh, "e2e", Duration::from_secs(3600));
    let mut agent = agent(kube, &nethouse.url(), "e2e", "rl").unwrap();
    for node in ["z1-a", "z1-b"] {
        rt.block_on(agent.add_node(node, "z1")).unwrap();
    }

    cluster
        .kubectl_stdin(
            &["apply", "-f", "-"],
            Some(&fixed_statefulset("redis", 2, Some("z1"), true)),
        )
        .unwrap();
    wait_running(&mut cluster, "app=redis", 2, None).unwrap();
    cluster
        .wait_for("2 Locations", Duration::from_secs(60), |c| {
            let out = c.kubectl(&["get", "loc", "-o", "name"]).ok()?;
            (out.lines().count() == 2).then_some(())
        })
        .unwrap();

    // Deleting the Location of a running pod releases nothing: Location and lease stay.
    cluster
        .kubectl(&["delete", "loc", "redis-0", "--wait=false"])
        .unwrap();
    std::thread::sleep(Duration::from_secs(6));
    let deleting = cluster
        .kubectl(&[
            "get",
            "loc",
            "redis-0",
            "-o",
            "jsonpath={.metadata.deletionTimestamp} {.metadata.finalizers}",
        ])
        .unwrap();
    assert!(
        deleting.contains("nethouse.io/release-ip") && !deleting.starts_with(' '),
        "{deleting}"
    );
    assert!(
        rt.block_on(nh.lease_by_owner(&owner("redis-0"))).is_ok(),
        "lease released while the pod runs"
    );

    // The pods go (scale to 0): redis-0's IP is released and its Location goes; redis-1's
    // Location was not deleted, so its lease is retained.
    cluster
        .kubectl(&["scale", "statefulset", "redis", "--replicas=0"])
        .unwrap();
    cluster
        .wait_for("redis-0 released", Duration::from_secs(90), |c| {
            let gone = c.kubectl(&["get", "loc", "redis-0"]).is_err();
            (gone && rt.block_on(nh.lease_by_owner(&owner("redis-0"))).is_err()).then_some(())
        })
        .unwrap();
    let kept = rt
        .block_on(nh.lease_by_owner(&owner("redis-1")))
        .expect("redis-1 keeps its IP");
    assert!(kept.attachment.is_none(), "retained, detached");

    // Its Location deleted with the pod already gone: released at once.
    cluster
        .kubectl(&["delete", "loc", "redis-1", "--wait=false"])
        .unwrap();
    cluster
        .wait_for("redis-1 released", Duration::from_secs(60), |c| {
            (c.kubectl(&["get", "loc", "redis-1"]).is_err()
                && rt.block_on(nh.lease_by_owner(&owner("redis-1"))).is_err())
            .then_some(())
        })
        .unwrap();
    let subnet = rt.block_on(nh.list_subnets()).unwrap();
    assert_eq!(
        subnet[0].usage.cooling, 2,
        "both released IPs are in their cooldown"
    );

    controller.abort();
    agent.shutdown();
    drop(cluster);
    rt.block_on(nethouse.shutdown(Duration::from_secs(2)));
}
