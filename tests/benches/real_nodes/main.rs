//! `cargo bench -p nethouse-e2e --bench real_nodes` (root) — NetHouse against Whereabouts, the
//! peer IPAM users compare it with, on the same real nodes in one run: 2 zones × 2 nodes
//! (kubelet + containerd + kube-proxy each, macvlan pods on the zone's L2 segment).
//!
//! 1. NetHouse as users install it (`kubectl apply -k tests/overlays/real`), then the
//!    StatefulSet of the real-install story with 100 fixed pods (Parallel, on the shipped
//!    `nethouse-scheduler`): create → all 100 Running, as pods/s.
//! 2. 20 rounds: one pod deleted (ordinals rotated), until it runs again: p50/p99, and whether
//!    it came back with its IP.
//! 3. 5 crowded rounds: the nodes cordoned, a pod deleted, once the old pod is gone an ordinary
//!    pod started in its zone, then the nodes uncordoned: does the recreated pod keep its IP?
//!
//! Then that stack is dropped and a new one gets Whereabouts v0.9.2 (its CNI plugin and
//! configuration written on each node as its DaemonSet writes them) and the same StatefulSet on
//! the default scheduler (Whereabouts places nothing), with the same rounds.
//! `NETHOUSE_BENCH_QUICK=1`: a smoke run (10 pods, 3 + 1 rounds);
//! `NETHOUSE_BENCH_WHEREABOUTS_FIRST=1`: Whereabouts' stack runs first.

mod rounds;
mod table;
mod usage;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use nethouse_e2e::bench_table;
use nethouse_e2e::realnode::install::pods::{self, NAMESPACE, STS};
use nethouse_e2e::realnode::install::{InstallStack, base, workloads};
use nethouse_e2e::realnode::whereabouts;

const ZONES: &[&str] = &["z1", "z2"];
const NODES: &[(&str, &str)] = &[
    ("z1-a", "z1"),
    ("z1-b", "z1"),
    ("z2-a", "z2"),
    ("z2-b", "z2"),
];
/// Both stacks idle this long after their install before the StatefulSet is created.
const SETTLE: Duration = Duration::from_secs(10);
/// Longer than NetHouse needs by far: a peer that stalls is a result, not a failure.
const ALL_RUNNING_TIMEOUT: Duration = Duration::from_secs(600);

/// The run's size.
#[derive(Clone, Copy)]
struct Size {
    pods: usize,
    rounds: usize,
    crowded: usize,
}

fn size() -> Size {
    if env_is_1("NETHOUSE_BENCH_QUICK") {
        Size {
            pods: 10,
            rounds: 3,
            crowded: 1,
        }
    } else {
        Size {
            pods: 100,
            rounds: 20,
            crowded: 5,
        }
    }
}

fn env_is_1(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v == "1")
}

#[derive(Clone, Copy, PartialEq)]
enum Ipam {
    NetHouse,
    Whereabouts,
}

impl Ipam {
    fn name(self) -> &'static str {
        match self {
            Ipam::NetHouse => "NetHouse",
            Ipam::Whereabouts => "Whereabouts",
        }
    }
}

/// What one side measured.
struct Measured {
    install: Duration,
    created: rounds::Created,
    /// CPU used from the StatefulSet's creation until all its pods ran.
    cpu: usage::Cpu,
    /// Delete → Running again, and whether with the same IP.
    rounds: Vec<(Duration, bool)>,
    /// (recreated pod kept its IP, the other pod got the deleted pod's IP).
    crowded: Vec<(bool, bool)>,
    /// RSS of every process of the nodes (pods included) and of the control plane, with all
    /// pods Running, and the machine's MemAvailable then.
    rss: u64,
    available: u64,
}

fn main() -> ExitCode {
    if !rustix::process::geteuid().is_root() {
        println!("real_nodes: skipped, real nodes need root (network and mount namespaces)");
        return ExitCode::SUCCESS;
    }
    let mut order = [Ipam::NetHouse, Ipam::Whereabouts];
    if env_is_1("NETHOUSE_BENCH_WHEREABOUTS_FIRST") {
        order.reverse();
    }
    let (mut nethouse, mut peer) = (None, None);
    for ipam in order {
        match run(ipam) {
            Ok(m) if ipam == Ipam::NetHouse => nethouse = Some(m),
            Ok(m) => peer = Some(m),
            Err(e) => {
                eprintln!("{}: {e:#}", ipam.name());
                return ExitCode::FAILURE;
            }
        }
    }
    if let (Some(n), Some(w)) = (&nethouse, &peer) {
        table::print(n, w);
    }
    ExitCode::SUCCESS
}

/// One side on a stack of its own, dropped (every process stopped) before the next starts.
fn run(ipam: Ipam) -> anyhow::Result<Measured> {
    let mut s = InstallStack::start(ZONES, NODES)?;
    let r = measure(&mut s, ipam);
    if r.is_err() {
        s.nodes.keep_logs();
        eprintln!("{}", workloads::describe(&s.cluster, NAMESPACE));
    }
    r
}

fn measure(s: &mut InstallStack, ipam: Ipam) -> anyhow::Result<Measured> {
    let name = ipam.name();
    let size = size();
    let t = Instant::now();
    let sts = match ipam {
        Ipam::NetHouse => {
            base::apply(s)?;
            pods::statefulset(size.pods, "10m")
        }
        Ipam::Whereabouts => {
            let w = whereabouts::install(s)?;
            eprintln!(
                "Whereabouts: API objects {:.1} s, nodes Ready {:.1} s after the files, CoreDNS {:.1} s later",
                w.api.as_secs_f64(),
                w.nodes_ready.as_secs_f64(),
                w.dns_ready.as_secs_f64()
            );
            rounds::on_default_scheduler(&pods::statefulset(size.pods, "10m"))?
        }
    };
    let install = t.elapsed();
    eprintln!("{name}: installed in {:.1} s", install.as_secs_f64());
    // Measured on a settled cluster, as users create StatefulSets on one that has been up a
    // while. With the StatefulSet created within a second of the install's end, the
    // scheduler's first call to the extender's Service timed out (its 3 s httpTimeout) in two
    // smoke runs out of three and the pods were placed on the retry, 5 s later; a cluster up
    // for a few seconds places the first fixed pod in ~0.2 s.
    std::thread::sleep(SETTLE);

    let cpu_before = usage::Cpu::now(s);
    let created = rounds::create_all(&mut s.cluster, &sts, size.pods, ALL_RUNNING_TIMEOUT)?;
    let cpu = usage::Cpu::now(s).since(&cpu_before);
    let (rss, available) = (usage::stack_rss(s), usage::mem_available()?);
    eprintln!(
        "{name}: {}/{} Running after {:.1} s (all bound after {:.1} s); CPU: nodes {:.1} s, \
         control plane {:.1} s, others {:.1} s; the stack's processes {:.2} GB RSS, {:.1} GB available",
        created.running.len(),
        size.pods,
        created
            .running
            .last()
            .copied()
            .unwrap_or_default()
            .as_secs_f64(),
        created
            .scheduled
            .last()
            .copied()
            .unwrap_or_default()
            .as_secs_f64(),
        cpu.nodes.unwrap_or_default().as_secs_f64(),
        cpu.control_plane.as_secs_f64(),
        cpu.others().as_secs_f64(),
        rss as f64 / 1e9,
        available as f64 / 1e9
    );

    eprintln!(
        "{name}: bound to a node: first {:.1} s, half {:.1} s; {}",
        created
            .scheduled
            .first()
            .copied()
            .unwrap_or_default()
            .as_secs_f64(),
        bench_table::pct(&created.scheduled, 0.5).as_secs_f64(),
        rounds::failed_scheduling(&s.cluster)
    );
    if std::env::var_os("NETHOUSE_BENCH_DEBUG").is_some() {
        for args in [
            &[
                "-n",
                "nethouse-system",
                "logs",
                "deploy/nethouse-scheduler",
                "--tail=60",
            ][..],
            &[
                "-n",
                "nethouse-system",
                "logs",
                "deploy/nethouse-scheduler-extender",
                "--tail=60",
            ][..],
            &["-n", NAMESPACE, "get", "events", "--sort-by=.lastTimestamp"][..],
        ] {
            eprintln!(
                "{}",
                s.cluster.kubectl(args).unwrap_or_else(|e| format!("{e:#}"))
            );
        }
    }
    let live = rounds::live_ordinals(&s.cluster)?;
    anyhow::ensure!(!live.is_empty(), "{name}: no pod of {STS} runs");
    let mut deleted = Vec::new();
    for r in 0..size.rounds {
        let pod = format!("{STS}-{}", live[(r * 5) % live.len()]);
        let (took, same) = rounds::delete_round(&mut s.cluster, &pod)?;
        eprintln!(
            "{name}: {pod} deleted → Running again in {:.2} s, {} IP",
            took.as_secs_f64(),
            if same { "same" } else { "another" }
        );
        deleted.push((took, same));
    }
    let nodes: Vec<&str> = NODES.iter().map(|(n, _)| *n).collect();
    let mut crowded = Vec::new();
    for r in 0..size.crowded {
        let pod = format!("{STS}-{}", live[(r * 5 + 2) % live.len()]);
        let (same, taken) = rounds::crowded_round(s, &nodes, &pod, &format!("other-{r}"))?;
        eprintln!(
            "{name}: {pod} deleted, another pod started in its zone meanwhile: {} IP{}",
            if same { "same" } else { "another" },
            if taken {
                "; the other pod got its old IP"
            } else {
                ""
            }
        );
        crowded.push((same, taken));
    }
    Ok(Measured {
        install,
        created,
        cpu,
        rounds: deleted,
        crowded,
        rss,
        available,
    })
}
