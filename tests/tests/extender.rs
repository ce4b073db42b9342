//! The scheduler extender on the real scheduler, configured with the KubeSchedulerConfiguration
//! users apply (`manifests/base/scheduler/`): fixed pods go anywhere with room at first, their
//! Locations are written, and from then on a recreated pod only lands in its Location's zone
//! (20 rounds of every pod recreated: same IP, same zone) —
//! after its node died it comes back on the other node of that zone with the same IP, never in
//! the other zone; with no node of its zone left it stays Pending and FailedScheduling says why.

use std::time::Duration;

use nethouse::server::running::start_local;
use nethouse_e2e::cluster::{Cluster, ClusterOptions};
use nethouse_e2e::ports::free_port;
use nethouse_e2e::stack::{
    agent, apply_crd, extender, fixed_statefulset, kube_client, running_pods, scheduler_config,
    wait_node_not_ready, wait_running,
};

fn zone_of(node: &str) -> &str {
    &node[..2]
}

#[test]
fn fixed_pods_stay_in_their_zone() {
    let rt = nethouse_e2e::stack::runtime();
    let _enter = rt.enter();
    let nh_dir = tempfile::tempdir().unwrap();
    let (nethouse, nh) = rt
        .block_on(start_local(
            nh_dir.path().join("nethouse"),
            Duration::from_secs(600),
            &[("z1", "10.230.0.0/24"), ("z2", "10.231.0.0/24")],
        ))
        .unwrap();

    // The scheduler gets the users' configuration, pointed at this test's extender.
    let port = free_port().unwrap();
    let cfg = scheduler_config(nh_dir.path(), port).unwrap();
    let mut cluster = Cluster::start(ClusterOptions {
        scheduler_config: Some(cfg),
        ..ClusterOptions::default()
    })
    .expect("control plane");
    apply_crd(&mut cluster).unwrap();

    let kube = rt.block_on(kube_client(&cluster.kubeconfig)).unwrap();
    let extender = rt
        .block_on(extender(kube.clone(), &nh, "e2e", port))
        .unwrap();
    let mut agent = agent(kube, &nethouse.url(), "e2e", "xt").unwrap();
    for (node, zone) in [
        ("z1-a", "z1"),
        ("z1-b", "z1"),
        ("z2-a", "z2"),
        ("z2-b", "z2"),
    ] {
        rt.block_on(agent.add_node(node, zone)).unwrap();
    }

    cluster
        .kubectl_stdin(
            &["apply", "-f", "-"],
            Some(&fixed_statefulset("redis", 3, None, true)),
        )
        .unwrap();
    let pods = wait_running(&mut cluster, "app=redis", 3, None).unwrap();
    // Every running fixed pod gets its Location: IP, zone, node.
    let locations = cluster
        .wait_for("3 Locations", Duration::from_secs(60), |c| {
            let out = c.kubectl(&["get", "loc", "-o", r#"jsonpath={range .items[*]}{.metadata.name} {.spec.ips[0]} {.spec.zone} {.status.node}{"\n"}{end}"#]).ok()?;
            (out.lines().filter(|l| l.split_whitespace().count() == 4).count() == 3).then_some(out)
        })
        .unwrap();
    for (pod, row) in &pods {
        let line = format!("{pod} {} {} {}", row.ip, zone_of(&row.node), row.node);
        assert!(
            locations.contains(&line),
            "missing `{line}` in\n{locations}"
        );
    }

    // Every pod deleted and recreated by the StatefulSet controller, 20 rounds: the same IP and
    // the same zone every time.
    let mut pods = pods;
    for round in 0..20 {
        let old: Vec<(String, String)> = pods
            .iter()
            .map(|(n, r)| (n.clone(), r.uid.clone()))
            .collect();
        cluster
            .kubectl(&[
                "delete",
                "pod",
                "redis-0",
                "redis-1",
                "redis-2",
                "--wait=false",
            ])
            .unwrap();
        let now = cluster
            .wait_for(
                &format!("round {round}: 3 pods recreated"),
                Duration::from_secs(180),
                |c| {
                    let p = running_pods(c, "app=redis");
                    let fresh = old
                        .iter()
                        .all(|(n, uid)| p.get(n).is_some_and(|r| &r.uid != uid));
                    (p.len() == 3 && fresh).then_some(p)
                },
            )
            .unwrap();
        for (name, row) in &now {
            assert_eq!(row.ip, pods[name].ip, "round {round}: {name} keeps its IP");
            assert_eq!(
                zone_of(&row.node),
                zone_of(&pods[name].node),
                "round {round}: {name} keeps its zone"
            );
        }
        pods = now;
    }

    // redis-0's node dies; the pod is force-deleted and must come back in its zone.
    let (uid, dead, ip) = (
        pods["redis-0"].uid.clone(),
        pods["redis-0"].node.clone(),
        pods["redis-0"].ip.clone(),
    );
    let zone = zone_of(&dead).to_string();
    let sibling = if dead.ends_with('a') {
        dead.replace("-a", "-b")
    } else {
        dead.replace("-b", "-a")
    };
    agent.kill(&dead).unwrap();
    wait_node_not_ready(&mut cluster, &dead).unwrap();
    cluster
        .kubectl(&["delete", "pod", "redis-0", "--force", "--grace-period=0"])
        .unwrap();
    let back =
        wait_running(&mut cluster, "app=redis", 3, Some(("redis-0", &uid))).unwrap()["redis-0"]
            .clone();
    assert_eq!(
        back.node, sibling,
        "redis-0 must come back on the other node of zone {zone}"
    );
    assert_eq!(back.ip, ip, "same IP");

    // Its zone loses its last node: the pod stays Pending and the scheduler says why.
    agent.kill(&sibling).unwrap();
    wait_node_not_ready(&mut cluster, &sibling).unwrap();
    cluster
        .kubectl(&["delete", "pod", "redis-0", "--force", "--grace-period=0"])
        .unwrap();
    let message = cluster
        .wait_for(
            "FailedScheduling naming the zone",
            Duration::from_secs(90),
            |c| {
                let ev = c
                    .kubectl(&[
                        "get",
                        "events",
                        "--field-selector",
                        "reason=FailedScheduling,involvedObject.name=redis-0",
                        "-o",
                        "jsonpath={.items[*].message}",
                    ])
                    .ok()?;
                ev.contains(&format!("holds IP {ip} in zone {zone}"))
                    .then_some(ev)
            },
        )
        .unwrap();
    assert!(message.contains("default/redis-0"), "{message}");
    let phase = cluster
        .kubectl(&[
            "get",
            "pod",
            "redis-0",
            "-o",
            "jsonpath={.status.phase} {.metadata.uid}",
        ])
        .unwrap();
    assert!(
        phase.starts_with("Pending") && !phase.contains(&back.uid),
        "{phase}"
    );

    drop(extender);
    agent.shutdown();
    drop(cluster);
    rt.block_on(nethouse.shutdown(Duration::from_secs(2)));
}
