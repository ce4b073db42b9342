//! The shipped manifests, applied as users apply them, on real nodes (root): 2 zones × 2 nodes
//! (kubelet + containerd + kube-proxy each), CoreDNS, and `kubectl apply -k tests/overlays/real`
//! (the base with its images retargeted to ones built here, the macvlan template and a local
//! volume), the Secrets as `manifests/secrets-example.yaml` makes them, subnets with
//! `nethouse subnet add`. Every workload of the base becomes Ready as real pods: NetHouse's
//! StatefulSet, the nethouse-cni DaemonSet (whose init container put the plugin, the conflist and
//! the credentials on every node), the extender, the second scheduler, the controller's two
//! replicas. Then a StatefulSet of 5 fixed pods placed by that scheduler keeps IP and zone,
//! reachable at that IP from a client pod of its zone, through: each pod deleted; a node killed
//! (link down, kubelet, containerd and its containers SIGKILLed) and its pods force-deleted;
//! scale 5 → 2 → 5 inside the retention. Deleted with its retention emptied, it gives every IP
//! back. Timings are printed (`--nocapture`).

use std::time::Instant;

use nethouse_e2e::realnode::install::story;
use nethouse_e2e::realnode::install::{InstallStack, base, secrets, workloads};

const REPLICAS: usize = 5;

#[test]
fn shipped_manifests_run_on_real_nodes_and_fixed_pods_keep_ip_and_zone() {
    let t_test = Instant::now();
    let mut s =
        InstallStack::two_by_two().expect("images, fabric, control plane, 4 real nodes, CoreDNS");
    let t = s.timings;
    println!(
        "images {:.1} s; control plane {:.1} s; 4 nodes registered {:.1} s after their start; \
         Services routed {:.1} s later",
        t.images.as_secs_f64(),
        t.control_plane.as_secs_f64(),
        t.nodes_registered.as_secs_f64(),
        t.services.as_secs_f64()
    );
    // Panics while the stack is alive, so that its logs are kept.
    if let Err(e) = base::apply(&mut s).and_then(|b| fixed_pods(&mut s, &b)) {
        s.nodes.keep_logs();
        panic!(
            "{e:#}\n{}{}",
            workloads::describe(&s.cluster, secrets::NAMESPACE),
            workloads::describe(&s.cluster, "default")
        );
    }
    println!(
        "whole test before teardown {:.1} s",
        t_test.elapsed().as_secs_f64()
    );
}

fn fixed_pods(s: &mut InstallStack, b: &base::Base) -> anyhow::Result<()> {
    let created = story::create(s, REPLICAS)?;
    created.judge()?;
    anyhow::ensure!(
        created.after.values().any(|r| r.zone == "z1")
            && created.after.values().any(|r| r.zone == "z2"),
        "the extender spread the pods over both zones"
    );
    let deleted = story::delete_each(s, &created.after)?;
    deleted.judge()?;
    let failed = story::node_failure(s, b, &deleted.after)?;
    failed.judge()?;
    let scaled = story::scale_down_up(s, &failed.after, 2)?;
    scaled.judge()?;
    let released = story::delete_statefulset(s, b)?;
    println!(
        "StatefulSet deleted with ip-retention 0s: Locations and leases gone in {:.1} s",
        released.as_secs_f64()
    );
    Ok(())
}
