//! The controller's periodic reconciliation with NetHouse, both ways, and what it reports:
//! - a fixed lease with neither Location nor pod is released after the grace period; one whose
//!   pod exists (pending, no Location written yet) is kept;
//! - a Location whose lease vanished gets phase `LeaseLost` and a Warning event;
//! - a release is announced by a `Released` event on the Location, and counted in the metrics.

use std::time::Duration;

use nethouse_api::{AllocateRequest, Attachment, LeaseKind, Owner};
use nethouse_e2e::cluster::Cluster;
use nethouse_e2e::stack::{
    controller_context, kube_client, nethouse_and_cluster, orphan_locations,
};

fn owner(pod: &str) -> Owner {
    Owner {
        cluster: "e2e".into(),
        namespace: "default".into(),
        pod: pod.into(),
    }
}

fn events(c: &Cluster, reason: &str, name: &str) -> String {
    c.kubectl(&[
        "get",
        "events",
        "--field-selector",
        &format!("reason={reason},involvedObject.name={name}"),
        "-o",
        "jsonpath={.items[*].message}",
    ])
    .unwrap_or_default()
}

#[test]
fn leases_and_locations_are_reconciled_both_ways() {
    let rt = nethouse_e2e::stack::runtime();
    let _enter = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let (nethouse, nh, mut cluster) =
        nethouse_and_cluster(&rt, dir.path(), &[("z1", "10.245.0.0/24")]).unwrap();

    // ghost-0: a lease, no Location, no pod. pending-0: a lease and a pod not yet running (no
    // node exists, so it stays Pending), no Location yet.
    for pod in ["ghost-0", "pending-0"] {
        rt.block_on(nh.allocate(&AllocateRequest {
            zone: "z1".into(),
            kind: LeaseKind::Fixed,
            owner: Some(owner(pod)),
            attachment: Attachment {
                container_id: format!("c-{pod}"),
                ifname: "eth0".into(),
                node: "z1-a".into(),
            },
        }))
        .unwrap();
    }
    cluster
        .kubectl_stdin(
            &["apply", "-f", "-"],
            Some(
                "apiVersion: v1\nkind: Pod\nmetadata: {name: pending-0, namespace: default, annotations: {nethouse.io/fixed-ip: \"true\"}}\n\
                 spec: {containers: [{name: c, image: busybox}]}\n",
            ),
        )
        .unwrap();
    // lost-0 and gone-0: Locations with leases.
    rt.block_on(orphan_locations(&nh, &cluster, "z1", "e2e", "lost", 1))
        .unwrap();
    rt.block_on(orphan_locations(&nh, &cluster, "z1", "e2e", "gone", 1))
        .unwrap();

    let kube = rt.block_on(kube_client(&cluster.kubeconfig)).unwrap();
    let ctx = controller_context(kube, &nh, "e2e", Duration::from_secs(3600));
    let controller = nethouse_location_controller::start(ctx.clone());

    // The orphan goes after the grace period (5 s here); the pending pod's lease stays.
    cluster
        .wait_for("ghost-0 released", Duration::from_secs(60), |_| {
            rt.block_on(nh.lease_by_owner(&owner("ghost-0")))
                .is_err()
                .then_some(())
        })
        .unwrap();
    assert!(
        rt.block_on(nh.lease_by_owner(&owner("pending-0"))).is_ok(),
        "a lease whose pod exists is not an orphan"
    );

    // lost-0's lease vanishes behind the controller's back.
    rt.block_on(nh.release(&owner("lost-0"))).unwrap();
    cluster
        .wait_for("lost-0 LeaseLost", Duration::from_secs(60), |c| {
            let phase = c
                .kubectl(&["get", "loc", "lost-0", "-o", "jsonpath={.status.phase}"])
                .ok()?;
            (phase == "LeaseLost").then_some(())
        })
        .unwrap();
    let warned = cluster
        .wait_for("a LeaseLost event", Duration::from_secs(30), |c| {
            let ev = events(c, "LeaseLost", "lost-0");
            (!ev.is_empty()).then_some(ev)
        })
        .unwrap();
    assert!(warned.contains("no lease"), "{warned}");

    // A release is an event on the Location.
    cluster
        .kubectl(&["delete", "loc", "gone-0", "--wait=false"])
        .unwrap();
    let released = cluster
        .wait_for("a Released event", Duration::from_secs(30), |c| {
            let ev = events(c, "Released", "gone-0");
            (!ev.is_empty()).then_some(ev)
        })
        .unwrap();
    assert!(released.contains("e2e/default/gone-0"), "{released}");

    let metrics = ctx.metrics.encode();
    for line in [
        "nethouse_controller_orphan_leases_released_total 1",
        "nethouse_controller_leases_lost_total 1",
        "nethouse_controller_releases_total{result=\"released\"} 1",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in\n{metrics}");
    }

    controller.abort();
    drop(cluster);
    rt.block_on(nethouse.shutdown(Duration::from_secs(2)));
}
