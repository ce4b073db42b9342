//! The fixed-IP story on an install, told by `make demo` and checked by the real-install test:
//! a StatefulSet of fixed pods on the shipped second scheduler, then each pod deleted, a node
//! killed (kubelet, containerd and every container gone, its link down; its pods
//! force-deleted as an operator does), a scale-down and scale-up inside the retention, and the
//! StatefulSet deleted with the retention emptied. Every step records where each pod ran before
//! and after and whether a client pod of its zone reached it at its IP; [`Step::broken`] says
//! what of the promise did not hold. The steps act and measure; the caller judges and prints.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::InstallStack;
use super::base::Base;
use super::pods::{self, NAMESPACE, Row, Rows, STS};
use crate::binaries::workspace_bin;
use crate::realnode::netns::run;

/// How long a pod may take to run again after a step.
const POD_TIMEOUT: Duration = Duration::from_secs(180);
/// A moved pod must answer at its IP within this (gratuitous ARP, or the client's ARP cache
/// timing out the old MAC).
const REACH_TIMEOUT: Duration = Duration::from_secs(20);

/// One step of the story.
pub struct Step {
    pub title: String,
    pub before: Rows,
    pub after: Rows,
    /// Step start → each pod it touched Running again (the wait for a node to be NotReady
    /// included, for a node failure).
    pub took: Vec<Duration>,
    /// Pods the client of their zone did not reach at their IP, with the error.
    pub unreachable: Vec<String>,
    /// Things worth a line in the output (which node died, how long NotReady took).
    pub notes: Vec<String>,
}

impl Step {
    /// What of the promise did not hold: a pod of `before` missing after, with another IP or
    /// zone, or unreachable.
    pub fn broken(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (pod, b) in &self.before {
            match self.after.get(pod) {
                None => out.push(format!("{pod} is not Running")),
                Some(a) if a.ip != b.ip || a.zone != b.zone => out.push(format!(
                    "{pod} was {} in {} ({}), is {} in {} ({})",
                    b.ip, b.zone, b.node, a.ip, a.zone, a.node
                )),
                Some(_) => {}
            }
        }
        out.extend(self.unreachable.iter().cloned());
        out
    }

    /// Prints the step (title, how long, where each pod runs, the notes) and fails on anything
    /// of the promise it broke.
    pub fn judge(&self) -> anyhow::Result<()> {
        let secs = |d: &Duration| format!("{:.1}", d.as_secs_f64());
        println!(
            "{}: Running again after {} s",
            self.title,
            self.took.iter().map(secs).collect::<Vec<_>>().join(", ")
        );
        for (pod, r) in &self.after {
            println!("  {pod} {} on {} ({})", r.ip, r.node, r.zone);
        }
        for n in &self.notes {
            println!("  {n}");
        }
        let broken = self.broken();
        anyhow::ensure!(broken.is_empty(), "{}: {broken:#?}", self.title);
        Ok(())
    }

    pub fn kept_ips(&self) -> bool {
        self.before
            .iter()
            .all(|(p, b)| self.after.get(p).is_some_and(|a| a.ip == b.ip))
    }

    pub fn kept_zones(&self) -> bool {
        self.before
            .iter()
            .all(|(p, b)| self.after.get(p).is_some_and(|a| a.zone == b.zone))
    }
}

/// The client pods, then the StatefulSet with `replicas` fixed pods; returns them Running,
/// each reached from its zone's client.
pub fn create(s: &mut InstallStack, replicas: usize) -> anyhow::Result<Step> {
    pods::ensure_clients(s)?;
    let t = Instant::now();
    s.cluster.kubectl_stdin(
        &["create", "-f", "-"],
        Some(&pods::statefulset(replicas, "10m")),
    )?;
    let mut after = Rows::new();
    let mut took = Vec::new();
    for name in pods::names(replicas) {
        after.insert(name.clone(), pods::wait_row(s, &name, None, POD_TIMEOUT)?);
        took.push(t.elapsed());
    }
    let mut step = finish(s, "StatefulSet created", Rows::new(), after, took);
    let locations = s.cluster.kubectl(&[
        "-n",
        NAMESPACE,
        "get",
        "loc",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name} {.spec.zone} {.spec.ips[*]} {.status.phase}{"\n"}{end}"#,
    ])?;
    step.notes
        .extend(locations.lines().map(|l| format!("Location {l}")));
    Ok(step)
}

/// Each pod deleted in turn, waited for until it runs again.
pub fn delete_each(s: &mut InstallStack, before: &Rows) -> anyhow::Result<Step> {
    let mut after = Rows::new();
    let mut took = Vec::new();
    for (name, row) in before {
        let t = Instant::now();
        s.cluster
            .kubectl(&["-n", NAMESPACE, "delete", "pod", name, "--wait=false"])?;
        after.insert(
            name.clone(),
            pods::wait_row(s, name, Some(&row.uid), POD_TIMEOUT)?,
        );
        took.push(t.elapsed());
    }
    Ok(finish(s, "each pod deleted", before.clone(), after, took))
}

/// The node that hosts most of `before`'s pods dies (not the single replica's, whose local
/// volume would die with it: that install is not HA); once the node controller marks it
/// NotReady, an operator force-deletes its pods, as Kubernetes leaves pods of an unreachable
/// node Terminating forever.
pub fn node_failure(s: &mut InstallStack, base: &Base, before: &Rows) -> anyhow::Result<Step> {
    let pinned = base.pinned_node.as_deref();
    let dead = busiest(before, |node| Some(node) != pinned)
        .context("no fixed pod on a node the install survives losing")?;
    kill_node(s, before, &dead)
}

/// The node hosting most of `rows`' pods among those `eligible` allows.
pub fn busiest(rows: &Rows, eligible: impl Fn(&str) -> bool) -> Option<String> {
    let mut count = std::collections::BTreeMap::<&str, usize>::new();
    for r in rows.values().filter(|r| eligible(&r.node)) {
        *count.entry(r.node.as_str()).or_default() += 1;
    }
    count
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(node, _)| node.to_string())
}

/// Node `dead` dies; once it is NotReady its pods are force-deleted; `before`'s pods that ran
/// there are waited for until they run again.
pub fn kill_node(s: &mut InstallStack, before: &Rows, dead: &str) -> anyhow::Result<Step> {
    let dead = dead.to_string();
    let moved: BTreeSet<String> = before
        .iter()
        .filter(|(_, r)| r.node == dead)
        .map(|(p, _)| p.clone())
        .collect();
    let t = Instant::now();
    s.nodes
        .nodes
        .iter_mut()
        .find(|n| n.name == dead)
        .context("the node to kill")?
        .fail()?;
    s.cluster
        .wait_for(&format!("{dead} NotReady"), Duration::from_secs(120), |c| {
            let ready = c
                .kubectl(&[
                    "get",
                    "node",
                    &dead,
                    "-o",
                    r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
                ])
                .ok()?;
            (ready.trim() != "True").then_some(())
        })?;
    let not_ready = t.elapsed();
    let on_node = s.cluster.kubectl(&[
        "get",
        "pods",
        "-A",
        "--field-selector",
        &format!("spec.nodeName={dead}"),
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.namespace} {.metadata.name}{"\n"}{end}"#,
    ])?;
    let mut deleted = Vec::new();
    for line in on_node.lines() {
        if let Some((ns, pod)) = line.split_once(' ') {
            s.cluster.kubectl(&[
                "-n",
                ns,
                "delete",
                "pod",
                pod,
                "--force",
                "--grace-period=0",
            ])?;
            deleted.push(format!("{ns}/{pod}"));
        }
    }
    let mut after = before.clone();
    let mut took = Vec::new();
    for name in &moved {
        let row = pods::wait_row(s, name, Some(&before[name].uid), POD_TIMEOUT)?;
        took.push(t.elapsed());
        after.insert(name.clone(), row);
    }
    pods::ensure_clients(s)?;
    let mut step = finish(
        s,
        &format!("node {dead} killed, its pods force-deleted"),
        before.clone(),
        after,
        took,
    );
    step.notes.push(format!(
        "{dead}: link down, kubelet, containerd and every container SIGKILLed; NotReady after {:.1} s",
        not_ready.as_secs_f64()
    ));
    step.notes
        .push(format!("force-deleted: {}", deleted.join(", ")));
    Ok(step)
}

/// Scale to `low`, wait until the pods beyond it are gone and their Locations `Retained`,
/// then back to `before.len()`.
pub fn scale_down_up(s: &mut InstallStack, before: &Rows, low: usize) -> anyhow::Result<Step> {
    let high = before.len();
    let t = Instant::now();
    scale(s, low)?;
    let gone: Vec<String> = pods::names(high).split_off(low);
    s.cluster.wait_for(
        &format!("{} pods gone and their Locations Retained", gone.len()),
        POD_TIMEOUT,
        |c| {
            let pods = c
                .kubectl(&[
                    "-n",
                    NAMESPACE,
                    "get",
                    "pods",
                    "-l",
                    &format!("app={STS}"),
                    "-o",
                    "name",
                ])
                .ok()?;
            let locs = c
                .kubectl(&[
                    "-n",
                    NAMESPACE,
                    "get",
                    "loc",
                    "-o",
                    r#"jsonpath={range .items[*]}{.metadata.name} {.status.phase}{"\n"}{end}"#,
                ])
                .ok()?;
            let all = gone.iter().all(|p| {
                !pods.lines().any(|l| l == format!("pod/{p}"))
                    && locs.lines().any(|l| l == format!("{p} Retained"))
            });
            all.then_some(())
        },
    )?;
    let down = t.elapsed();
    let t = Instant::now();
    scale(s, high)?;
    let mut after = Rows::new();
    let mut took = Vec::new();
    for name in pods::names(high) {
        let row = pods::wait_row(s, &name, None, POD_TIMEOUT)?;
        // A pod the scale-down kept must not have been restarted by it.
        if !gone.contains(&name) {
            anyhow::ensure!(
                row.uid == before[&name].uid,
                "{name} was restarted by the scale-down"
            );
        }
        after.insert(name, row);
        took.push(t.elapsed());
    }
    let mut step = finish(
        s,
        &format!("scaled {high} → {low} → {high} inside the retention"),
        before.clone(),
        after,
        took,
    );
    step.notes.push(format!(
        "{} gone, Locations Retained {:.1} s after the scale-down",
        gone.join(", "),
        down.as_secs_f64()
    ));
    Ok(step)
}

fn scale(s: &InstallStack, replicas: usize) -> anyhow::Result<()> {
    s.cluster
        .kubectl(&[
            "-n",
            NAMESPACE,
            "scale",
            "statefulset",
            STS,
            &format!("--replicas={replicas}"),
        ])
        .map(|_| ())
}

/// The StatefulSet deleted with its retention emptied (`ip-retention: 0s`): how long until no
/// Location is left and NetHouse holds no lease of its pods.
pub fn delete_statefulset(s: &mut InstallStack, base: &Base) -> anyhow::Result<Duration> {
    let t = Instant::now();
    s.cluster.kubectl(&[
        "-n",
        NAMESPACE,
        "annotate",
        "--overwrite",
        "statefulset",
        STS,
        "nethouse.io/ip-retention=0s",
    ])?;
    s.cluster.kubectl(&[
        "-n",
        NAMESPACE,
        "delete",
        "statefulset",
        STS,
        "--wait=false",
    ])?;
    let cli = workspace_bin("nethouse")?;
    let prefix = format!("\"{STS}-");
    s.cluster
        .wait_for("the StatefulSet's IPs released", POD_TIMEOUT, |c| {
            let locs = c
                .kubectl(&["-n", NAMESPACE, "get", "loc", "-o", "name"])
                .ok()?;
            let leases = run(Command::new(&cli)
                .env("NETHOUSE_SERVER", &base.nethouse_url)
                .env("NETHOUSE_TOKEN_FILE", &base.creds.controller_token)
                .env("NETHOUSE_CA_FILE", &base.creds.ca)
                .args(["lease", "list", "-o", "json"]))
            .ok()?;
            (locs.trim().is_empty() && !leases.contains(&prefix)).then_some(())
        })?;
    Ok(t.elapsed())
}

/// The step's rows after it, and whether each pod answers at its IP from its zone's client.
fn finish(s: &InstallStack, title: &str, before: Rows, after: Rows, took: Vec<Duration>) -> Step {
    let unreachable = after
        .iter()
        .filter_map(|(pod, Row { ip, zone, .. })| {
            pods::reach(&s.cluster, zone, ip, REACH_TIMEOUT)
                .err()
                .map(|e| format!("{pod} unreachable: {e:#}"))
        })
        .collect();
    Step {
        title: title.to_string(),
        before,
        after,
        took,
        unreachable,
        notes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ip: &str, node: &str, zone: &str) -> Row {
        Row {
            uid: format!("{ip}-{node}"),
            ip: ip.into(),
            node: node.into(),
            zone: zone.into(),
        }
    }

    fn step(before: &[(&str, Row)], after: &[(&str, Row)], unreachable: &[&str]) -> Step {
        let rows = |r: &[(&str, Row)]| r.iter().map(|(p, r)| (p.to_string(), r.clone())).collect();
        Step {
            title: "t".into(),
            before: rows(before),
            after: rows(after),
            took: Vec::new(),
            unreachable: unreachable.iter().map(|s| s.to_string()).collect(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn broken_names_every_pod_that_lost_ip_zone_presence_or_reach() {
        let a = row("10.0.0.5", "z1-a", "z1");
        // Another node of the same zone is what the promise allows.
        let moved = row("10.0.0.5", "z1-b", "z1");
        let s = step(&[("p", a.clone())], &[("p", moved)], &[]);
        assert!(s.broken().is_empty());
        assert!(s.kept_ips() && s.kept_zones());

        let s = step(
            &[("p", a.clone())],
            &[("p", row("10.0.0.6", "z1-a", "z1"))],
            &[],
        );
        assert_eq!(s.broken().len(), 1);
        assert!(!s.kept_ips() && s.kept_zones());

        let s = step(
            &[("p", a.clone())],
            &[("p", row("10.0.0.5", "z2-a", "z2"))],
            &[],
        );
        assert!(s.broken()[0].contains("z2"), "{:?}", s.broken());
        assert!(s.kept_ips() && !s.kept_zones());

        let s = step(
            &[("p", a.clone()), ("q", a.clone())],
            &[("p", a.clone())],
            &[],
        );
        assert_eq!(s.broken(), vec!["q is not Running".to_string()]);
        assert!(!s.kept_ips());

        let s = step(&[("p", a.clone())], &[("p", a)], &["p unreachable: x"]);
        assert_eq!(s.broken(), vec!["p unreachable: x".to_string()]);
    }
}
