//! The side-by-side table, as BENCHMARKS.md records it.

use std::time::Duration;

use nethouse_e2e::bench_table::{header, pct, row, whole_ms};

use super::{ALL_RUNNING_TIMEOUT, Measured, size};

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// `a / b` as `1.23×`, or a dash when there is no `b`.
fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

fn count(v: impl Iterator<Item = bool>) -> usize {
    v.filter(|b| *b).count()
}

/// One row of durations, with the ratio.
fn durations(label: String, n: Duration, w: Duration) {
    row(&[label, whole_ms(n), whole_ms(w), ratio(secs(n), secs(w))]);
}

pub fn print(nh: &Measured, wa: &Measured) {
    let size = size();
    let pods = size.pods;
    println!("## {pods} fixed pods on real nodes: NetHouse vs Whereabouts (2 zones × 2 nodes)\n");
    header(&[
        "measure".into(),
        "NetHouse".into(),
        "Whereabouts v0.9.2".into(),
        "NetHouse / Whereabouts".into(),
    ]);
    let all = |m: &Measured| match m.created.all_running {
        Some(d) => whole_ms(d),
        None => format!(
            "{}/{pods} after {}",
            m.created.running.len(),
            whole_ms(ALL_RUNNING_TIMEOUT)
        ),
    };
    let rate = |m: &Measured| {
        m.created
            .all_running
            .map(|d| pods as f64 / secs(d))
            .unwrap_or(0.0)
    };
    // Not a like-for-like pair: NetHouse's base runs five workloads, Whereabouts is files.
    row(&[
        "install → nodes and cluster DNS Ready (NetHouse: every workload of the base)".into(),
        whole_ms(nh.install),
        whole_ms(wa.install),
        String::new(),
    ]);
    row(&[
        format!("StatefulSet of {pods} created → all Running"),
        all(nh),
        all(wa),
        match (nh.created.all_running, wa.created.all_running) {
            (Some(a), Some(b)) => ratio(secs(a), secs(b)),
            _ => "–".into(),
        },
    ]);
    row(&[
        "pods/s to Running".into(),
        format!("{:.1}", rate(nh)),
        format!("{:.1}", rate(wa)),
        ratio(rate(nh), rate(wa)),
    ]);
    durations(
        "half of the pods Running after (p50)".into(),
        pct(&nh.created.running, 0.5),
        pct(&wa.created.running, 0.5),
    );
    durations(
        format!("all {pods} bound to a node after"),
        pct(&nh.created.scheduled, 1.0),
        pct(&wa.created.scheduled, 1.0),
    );
    let cpu = |d: Option<Duration>| d.map_or("–".into(), |d| format!("{:.1} s", secs(d)));
    let cpu_row = |label: &str, n: Option<Duration>, w: Option<Duration>| {
        let r = match (n, w) {
            (Some(a), Some(b)) => ratio(secs(a), secs(b)),
            _ => "–".into(),
        };
        row(&[label.into(), cpu(n), cpu(w), r]);
    };
    cpu_row(
        "CPU of the nodes (all their processes) until all Running",
        nh.cpu.nodes,
        wa.cpu.nodes,
    );
    cpu_row(
        "CPU of the control plane until all Running",
        Some(nh.cpu.control_plane),
        Some(wa.cpu.control_plane),
    );
    // Says how quiet the machine was: the bench's own kubectl polls are in it.
    row(&[
        "CPU of everything else on the machine meanwhile".into(),
        cpu(Some(nh.cpu.others())),
        cpu(Some(wa.cpu.others())),
        String::new(),
    ]);
    let took = |m: &Measured| {
        let mut v: Vec<Duration> = m.rounds.iter().map(|r| r.0).collect();
        v.sort();
        v
    };
    let (nt, wt) = (took(nh), took(wa));
    for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
        durations(
            format!(
                "pod deleted → Running again, {label} ({} rounds)",
                size.rounds
            ),
            pct(&nt, p),
            pct(&wt, p),
        );
    }
    let same = |m: &Measured| {
        let kept = count(m.rounds.iter().map(|r| r.1));
        format!("{kept}/{}", m.rounds.len())
    };
    row(&[
        "recreated pod back with the same IP".into(),
        same(nh),
        same(wa),
        String::new(),
    ]);
    let kept = |m: &Measured| {
        let k = count(m.crowded.iter().map(|r| r.0));
        let taken = count(m.crowded.iter().map(|r| r.1));
        format!("{k}/{} (the other pod took it: {taken})", m.crowded.len())
    };
    row(&[
        "same IP when another pod started in the zone meanwhile".into(),
        kept(nh),
        kept(wa),
        String::new(),
    ]);
    let gb = |b: u64| format!("{:.2} GB", b as f64 / 1e9);
    row(&[
        format!("RSS of the nodes' and control plane's processes, {pods} pods Running"),
        gb(nh.rss),
        gb(wa.rss),
        String::new(),
    ]);
    row(&[
        "the machine's MemAvailable then".into(),
        gb(nh.available),
        gb(wa.available),
        String::new(),
    ]);
}
