//! What the bench does to the StatefulSet, the same on both sides: create it and time its pods
//! to Running, delete one pod and time it back, and the crowded round (something else starts
//! in the zone between the deletion and the recreation). Times come from polling with kubectl
//! (see each function for the period): the same resolution on both sides.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use nethouse_e2e::cluster::Cluster;
use nethouse_e2e::realnode::images;
use nethouse_e2e::realnode::install::InstallStack;
use nethouse_e2e::realnode::install::pods::{self, NAMESPACE, STS};

const POD_TIMEOUT: Duration = Duration::from_secs(180);

/// The StatefulSet's pods over time, from its creation.
pub struct Created {
    /// When each pod was first seen bound to a node, sorted.
    pub scheduled: Vec<Duration>,
    /// When each pod was first seen Running, sorted.
    pub running: Vec<Duration>,
    /// Until the last one ran, if all did before the timeout.
    pub all_running: Option<Duration>,
}

/// The same StatefulSet on the default scheduler: the only scheduler of a Whereabouts cluster.
pub fn on_default_scheduler(sts: &str) -> anyhow::Result<String> {
    const OURS: &str = "schedulerName: nethouse-scheduler";
    anyhow::ensure!(sts.contains(OURS), "the StatefulSet no longer names {OURS}");
    Ok(sts.replace(OURS, "schedulerName: default-scheduler"))
}

/// Creates the StatefulSet of `replicas` pods and polls them every 500 ms (a kubectl call
/// costs CPU the pods need) until all run or `timeout` passes.
pub fn create_all(
    c: &mut Cluster,
    sts: &str,
    replicas: usize,
    timeout: Duration,
) -> anyhow::Result<Created> {
    let t = Instant::now();
    c.kubectl_stdin(&["create", "-f", "-"], Some(sts))?;
    let (mut scheduled, mut running) = (BTreeMap::new(), BTreeMap::new());
    while running.len() < replicas && t.elapsed() < timeout {
        let now = t.elapsed();
        for (pod, phase, node) in pod_rows(c)? {
            if !node.is_empty() {
                scheduled.entry(pod.clone()).or_insert(now);
            }
            if phase == "Running" {
                running.entry(pod).or_insert(now);
            }
        }
        c.check_alive()?;
        std::thread::sleep(Duration::from_millis(500));
    }
    let sorted = |m: BTreeMap<String, Duration>| {
        let mut v: Vec<Duration> = m.into_values().collect();
        v.sort();
        v
    };
    let running = sorted(running);
    Ok(Created {
        scheduled: sorted(scheduled),
        all_running: (running.len() == replicas)
            .then(|| running.last().copied())
            .flatten(),
        running,
    })
}

/// How many times the scheduler reported a pod of the namespace unschedulable, and the last
/// message: the StatefulSet's pods should never be.
pub fn failed_scheduling(c: &Cluster) -> String {
    let out = c.kubectl(&[
        "-n",
        NAMESPACE,
        "get",
        "events",
        "--field-selector",
        "reason=FailedScheduling",
        "-o",
        r#"jsonpath={range .items[*]}{.count} {.message}{"\n"}{end}"#,
    ]);
    match out {
        Err(e) => format!("events: {e:#}"),
        Ok(out) => {
            let times: u64 = out
                .lines()
                // Events of the events.k8s.io API have no count: one each.
                .map(|l| {
                    l.split(' ')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(1)
                })
                .sum();
            let last = out.lines().last().unwrap_or_default();
            format!("FailedScheduling {times} times (last: {last})")
        }
    }
}

/// (name, phase, node) of every pod of the StatefulSet; node is empty before binding.
fn pod_rows(c: &Cluster) -> anyhow::Result<Vec<(String, String, String)>> {
    let out = c.kubectl(&[
        "-n",
        NAMESPACE,
        "get",
        "pods",
        "-l",
        &format!("app={STS}"),
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name},{.status.phase},{.spec.nodeName}{"\n"}{end}"#,
    ])?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut f = l.split(',').map(str::to_string);
            Some((f.next()?, f.next()?, f.next()?))
        })
        .collect())
}

/// Ordinals of the pods that run now.
pub fn live_ordinals(c: &Cluster) -> anyhow::Result<Vec<usize>> {
    let mut out: Vec<usize> = pod_rows(c)?
        .into_iter()
        .filter(|r| r.1 == "Running")
        .filter_map(|r| r.0.rsplit('-').next()?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// (uid, IP, node) of `pod` once it runs with a UID other than `old_uid`; polled every 100 ms
/// (kubectl itself takes ~50 ms), so a time is at most ~150 ms late.
fn wait_recreated(
    c: &mut Cluster,
    pod: &str,
    old_uid: &str,
) -> anyhow::Result<(String, String, String)> {
    let t = Instant::now();
    loop {
        if let Some(r) = pods::running(c, pod).filter(|(uid, _, _)| uid != old_uid) {
            return Ok(r);
        }
        c.check_alive()?;
        anyhow::ensure!(
            t.elapsed() < POD_TIMEOUT,
            "{pod} not Running again after {POD_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `pod` deleted; how long until it runs again, and whether with the IP it had.
pub fn delete_round(c: &mut Cluster, pod: &str) -> anyhow::Result<(Duration, bool)> {
    let (uid, ip, _) = pods::running(c, pod).with_context(|| format!("{pod} is not Running"))?;
    let t = Instant::now();
    c.kubectl(&["-n", NAMESPACE, "delete", "pod", pod, "--wait=false"])?;
    let (_, new_ip, _) = wait_recreated(c, pod, &uid)?;
    Ok((t.elapsed(), new_ip == ip))
}

/// Every node cordoned, `pod` deleted; once the old pod is gone (kubelet has torn its sandbox
/// down, CNI DEL included), an ordinary pod named `other` is started in the zone `pod` ran in
/// (it tolerates the cordon), then the nodes are uncordoned. Returns (the recreated pod got its
/// IP, the other pod got that IP).
pub fn crowded_round(
    s: &mut InstallStack,
    nodes: &[&str],
    pod: &str,
    other: &str,
) -> anyhow::Result<(bool, bool)> {
    let (uid, ip, node) =
        pods::running(&s.cluster, pod).with_context(|| format!("{pod} is not Running"))?;
    let zone = s.nodes.get(&node)?.zone.clone();
    s.cluster.kubectl(&[&["cordon"], nodes].concat())?;
    s.cluster
        .kubectl(&["-n", NAMESPACE, "delete", "pod", pod, "--wait=false"])?;
    s.cluster
        .wait_for(&format!("the old {pod} gone"), POD_TIMEOUT, |c| {
            // A list, so that no pod of the name is an empty answer, not an error.
            let now = c
                .kubectl(&[
                    "-n",
                    NAMESPACE,
                    "get",
                    "pods",
                    "--field-selector",
                    &format!("metadata.name={pod}"),
                    "-o",
                    "jsonpath={.items[*].metadata.uid}",
                ])
                .ok()?;
            (now.trim() != uid).then_some(())
        })?;
    s.cluster
        .kubectl_stdin(&["create", "-f", "-"], Some(&other_pod(other, &zone)))?;
    let (_, other_ip, _) = s
        .cluster
        .wait_for(&format!("{other} Running"), POD_TIMEOUT, |c| {
            pods::running(c, other)
        })?;
    s.cluster.kubectl(&[&["uncordon"], nodes].concat())?;
    let (_, new_ip, _) = wait_recreated(&mut s.cluster, pod, &uid)?;
    Ok((new_ip == ip, other_ip == ip))
}

/// An ordinary pod of `zone` that the cordon does not keep out.
fn other_pod(name: &str, zone: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\n\
         spec:\n  nodeSelector: {{nethouse.io/network-zone: {zone}}}\n\
         \x20 tolerations: [{{key: node.kubernetes.io/unschedulable, operator: Exists, effect: NoSchedule}}]\n\
         \x20 terminationGracePeriodSeconds: 1\n  automountServiceAccountToken: false\n  enableServiceLinks: false\n\
         \x20 containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: Never\n\
         \x20   command: [\"sleep\", \"3600\"]\n",
        image = images::BUSYBOX,
    )
}
