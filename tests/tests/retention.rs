//! The retention policy ("recycle bin") on the real control plane, with the real StatefulSet
//! controller and garbage collector:
//! - scaled 5 → 2, the three Locations it no longer wants are `Retained` and keep their leases;
//!   scaled back to 5 inside the retention, the pods get the same IPs;
//! - with `nethouse.io/ip-retention: 0s`, a scale-down releases at once and the released IPs
//!   stay out of use (cooldown): the pods that come back get other IPs;
//! - the StatefulSet annotated with a new retention and deleted at once: its Locations (deleted
//!   by the garbage collector through their owner reference) hold their IPs for that retention,
//!   not the one they recorded before, then release them.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use nethouse_api::Owner;
use nethouse_e2e::cluster::Cluster;
use nethouse_e2e::ports::free_port;
use nethouse_e2e::stack::{
    agent, extender, fixed_statefulset, kube_client, location_controller, nethouse_and_cluster,
    wait_gc_collects_locations, wait_running,
};

fn owner(pod: &str) -> Owner {
    Owner {
        cluster: "e2e".into(),
        namespace: "default".into(),
        pod: pod.into(),
    }
}

/// `name -> phase` of every Location.
fn phases(c: &Cluster) -> BTreeMap<String, String> {
    c.kubectl(&[
        "get",
        "loc",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name} {.status.phase}{"\n"}{end}"#,
    ])
    .unwrap_or_default()
    .lines()
    .filter_map(|l| {
        let mut f = l.split_whitespace();
        Some((f.next()?.to_string(), f.next().unwrap_or("").to_string()))
    })
    .collect()
}

fn ips(pods: &BTreeMap<String, nethouse_e2e::stack::PodRow>) -> BTreeMap<String, String> {
    pods.iter()
        .map(|(n, r)| (n.clone(), r.ip.clone()))
        .collect()
}

fn retained_until(c: &Cluster, location: &str) -> String {
    c.kubectl(&[
        "get",
        "loc",
        location,
        "-o",
        "jsonpath={.status.retainedUntil}",
    ])
    .unwrap()
}

#[test]
fn scaled_down_and_deleted_statefulsets_keep_their_ips_for_the_retention() {
    nethouse_e2e::stack::init_logs();
    let rt = nethouse_e2e::stack::runtime();
    let _enter = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let (nethouse, nh, mut cluster) =
        nethouse_and_cluster(&rt, dir.path(), &[("z1", "10.242.0.0/24")]).unwrap();
    let kube = rt.block_on(kube_client(&cluster.kubeconfig)).unwrap();
    let _writer = rt
        .block_on(extender(kube.clone(), &nh, "e2e", free_port().unwrap()))
        .unwrap();
    // The default retention (the flag) is an hour: nothing below waits for it.
    let controller = location_controller(kube.clone(), &nh, "e2e", Duration::from_secs(3600));
    let mut agent = agent(kube, &nethouse.url(), "e2e", "rt").unwrap();
    for node in ["z1-a", "z1-b"] {
        rt.block_on(agent.add_node(node, "z1")).unwrap();
    }

    cluster
        .kubectl_stdin(
            &["apply", "-f", "-"],
            Some(&fixed_statefulset("redis", 5, Some("z1"), true)),
        )
        .unwrap();
    let first = ips(&wait_running(&mut cluster, "app=redis", 5, None).unwrap());
    cluster
        .wait_for("5 Running Locations", Duration::from_secs(60), |c| {
            let p = phases(c);
            (p.len() == 5 && p.values().all(|v| v == "Running")).then_some(())
        })
        .unwrap();

    // 5 -> 2: redis-2..4 are retained with their leases.
    cluster
        .kubectl(&["scale", "statefulset", "redis", "--replicas=2"])
        .unwrap();
    cluster
        .wait_for("3 Retained Locations", Duration::from_secs(90), |c| {
            let p = phases(c);
            let retained: Vec<&String> = p
                .iter()
                .filter(|(_, v)| *v == "Retained")
                .map(|(k, _)| k)
                .collect();
            (retained == ["redis-2", "redis-3", "redis-4"]).then_some(())
        })
        .unwrap();
    for pod in ["redis-2", "redis-3", "redis-4"] {
        let lease = rt.block_on(nh.lease_by_owner(&owner(pod))).unwrap();
        assert_eq!(
            lease.ips[0].ip.to_string(),
            first[pod],
            "{pod} keeps its IP"
        );
    }
    let until = retained_until(&cluster, "redis-4");
    assert!(!until.is_empty(), "retainedUntil is recorded");

    // 2 -> 5 inside the retention: the same IPs, and the Locations run again.
    cluster
        .kubectl(&["scale", "statefulset", "redis", "--replicas=5"])
        .unwrap();
    let again = ips(&wait_running(&mut cluster, "app=redis", 5, None).unwrap());
    assert_eq!(
        again, first,
        "scale-up inside the retention gets the same IPs"
    );
    cluster
        .wait_for("5 Running Locations again", Duration::from_secs(60), |c| {
            let p = phases(c);
            (p.len() == 5 && p.values().all(|v| v == "Running")).then_some(())
        })
        .unwrap();
    let until = retained_until(&cluster, "redis-4");
    assert!(until.is_empty(), "the retention is cancelled: {until}");

    // Retention 0s: 5 -> 3 releases redis-3 and redis-4 at once; the cooldown keeps their
    // IPs out of use, so 3 -> 5 gives them other ones.
    cluster
        .kubectl(&[
            "annotate",
            "statefulset",
            "redis",
            "nethouse.io/ip-retention=0s",
        ])
        .unwrap();
    cluster
        .kubectl(&["scale", "statefulset", "redis", "--replicas=3"])
        .unwrap();
    cluster
        .wait_for(
            "redis-3 and redis-4 released",
            Duration::from_secs(90),
            |c| {
                let p = phases(c);
                let gone = !p.contains_key("redis-3") && !p.contains_key("redis-4");
                let released = ["redis-3", "redis-4"]
                    .iter()
                    .all(|pod| rt.block_on(nh.lease_by_owner(&owner(pod))).is_err());
                (gone && released).then_some(())
            },
        )
        .unwrap();
    let subnet = rt.block_on(nh.list_subnets()).unwrap();
    assert_eq!(subnet[0].usage.cooling, 2, "both IPs cool down");
    cluster
        .kubectl(&["scale", "statefulset", "redis", "--replicas=5"])
        .unwrap();
    let third = ips(&wait_running(&mut cluster, "app=redis", 5, None).unwrap());
    for pod in ["redis-3", "redis-4"] {
        assert_ne!(third[pod], first[pod], "{pod}'s old IP is in its cooldown");
        let old: std::net::IpAddr = first[pod].parse().unwrap();
        assert!(
            rt.block_on(nh.lease_by_ip(old)).is_err(),
            "{old} handed out during its cooldown"
        );
    }
    for pod in ["redis-0", "redis-1", "redis-2"] {
        assert_eq!(third[pod], first[pod], "{pod} untouched");
    }

    // The StatefulSet deleted with a 25 s retention: its Locations and leases stay for it,
    // then everything is released.
    cluster
        .wait_for("5 Locations", Duration::from_secs(60), |c| {
            (phases(c).len() == 5).then_some(())
        })
        .unwrap();
    wait_gc_collects_locations(&mut cluster).unwrap();
    cluster
        .kubectl(&[
            "annotate",
            "--overwrite",
            "statefulset",
            "redis",
            "nethouse.io/ip-retention=25s",
        ])
        .unwrap();
    // Deleted right after, as an operator would: the Locations may not have recorded 25s yet
    // (they hold 0s from above). The controller takes the StatefulSet's last annotation from
    // its deletion (location-controller's `gone`), so the hold is 25 s whichever came first.
    cluster
        .kubectl(&["delete", "statefulset", "redis", "--wait=false"])
        .unwrap();
    // The garbage collector deletes the Locations (owner reference); the retention counts
    // from their deletionTimestamp.
    let stamps = cluster
        .wait_for("5 retained deleted Locations", Duration::from_secs(90), |c| {
            let out = c
                .kubectl(&[
                    "get",
                    "loc",
                    "-o",
                    r#"jsonpath={range .items[*]}{.metadata.deletionTimestamp} {.status.phase}{"\n"}{end}"#,
                ])
                .ok()?;
            let stamps: Vec<Timestamp> = out
                .lines()
                .filter(|l| l.ends_with(" Retained"))
                .filter_map(|l| l.split_whitespace().next()?.parse().ok())
                .collect();
            (stamps.len() == 5).then_some(stamps)
        })
        .unwrap();
    let deleted_at = stamps.iter().min().copied().unwrap();
    let held = rt
        .block_on(nh.list_all_leases(&Default::default()))
        .unwrap();
    let checked_after = Timestamp::now().duration_since(deleted_at);
    assert!(
        checked_after < SignedDuration::from_secs(24),
        "too slow to check the hold ({checked_after:?})"
    );
    assert_eq!(
        held.len(),
        5,
        "no lease released inside the retention: {:#?}",
        held.iter()
            .map(|l| (l.owner.as_ref().map(|o| o.pod.clone()), l.kind, l.ips[0].ip))
            .collect::<Vec<_>>()
    );
    cluster
        .wait_for("every IP released", Duration::from_secs(90), |c| {
            let none_left = c
                .kubectl(&["get", "loc", "-o", "name"])
                .ok()?
                .trim()
                .is_empty();
            let leases = rt.block_on(nh.list_all_leases(&Default::default())).ok()?;
            (none_left && leases.is_empty()).then_some(())
        })
        .unwrap();
    let took = Timestamp::now().duration_since(deleted_at);
    // deletionTimestamp has whole seconds: allow for the truncation.
    assert!(
        took >= SignedDuration::from_secs(24),
        "released before the retention ended ({took:?})"
    );
    eprintln!("released {took:?} after the Locations were deleted (retention 25s)");

    controller.abort();
    agent.shutdown();
    drop(cluster);
    rt.block_on(nethouse.shutdown(Duration::from_secs(2)));
}
