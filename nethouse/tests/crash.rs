//! A real `nethouse serve` under load is killed with SIGKILL 20 times. After each restart every
//! acknowledged change is there (allocations with their address, acknowledged releases gone)
//! and no address is held twice.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, subnet};
use nethouse_api::{AllocateRequest, Attachment, Client, LeaseFilter, LeaseKind, Owner};

#[derive(Clone, Debug, PartialEq)]
enum Known {
    Allocated(std::net::IpAddr),
    Released,
}

#[derive(Default)]
struct Ledger {
    /// What the server acknowledged last, per pod.
    acked: HashMap<String, Known>,
    /// Pods whose last request got no answer: either outcome is legitimate.
    in_doubt: HashSet<String>,
}

fn owner(pod: &str) -> Owner {
    Owner {
        cluster: "k".into(),
        namespace: "crash".into(),
        pod: pod.into(),
    }
}

async fn load(
    client: Client,
    ctrl: Client,
    worker: usize,
    round: usize,
    ledger: Arc<Mutex<Ledger>>,
) {
    for i in 0.. {
        let pod = format!("w{worker}-r{round}-{i}");
        let req = AllocateRequest {
            zone: "z1".into(),
            kind: LeaseKind::Fixed,
            owner: Some(owner(&pod)),
            attachment: Attachment {
                container_id: format!("c-{pod}"),
                ifname: "eth0".into(),
                node: "n1".into(),
            },
        };
        ledger.lock().unwrap().in_doubt.insert(pod.clone());
        match client.allocate(&req).await {
            Ok(r) => {
                let mut l = ledger.lock().unwrap();
                l.in_doubt.remove(&pod);
                l.acked
                    .insert(pod.clone(), Known::Allocated(r.lease.ips[0].ip));
            }
            Err(_) => return,
        }
        // Every third pod is released again, so releases are crashed into too.
        if i % 3 == 0 {
            ledger.lock().unwrap().in_doubt.insert(pod.clone());
            match ctrl.release(&owner(&pod)).await {
                Ok(_) => {
                    let mut l = ledger.lock().unwrap();
                    l.in_doubt.remove(&pod);
                    l.acked.insert(pod, Known::Released);
                }
                Err(_) => return,
            }
        }
    }
}

async fn verify(server: &Server, ledger: &Ledger) -> usize {
    let ctrl = server.ctrl();
    let leases = ctrl
        .list_all_leases(&LeaseFilter {
            namespace: Some("crash".into()),
            limit: Some(5000),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut seen = HashSet::new();
    let mut held: HashMap<String, std::net::IpAddr> = HashMap::new();
    for l in &leases {
        for ip in &l.ips {
            assert!(seen.insert(ip.ip), "{} held twice after restart", ip.ip);
        }
        held.insert(l.owner.clone().unwrap().pod, l.ips[0].ip);
    }
    for (pod, known) in &ledger.acked {
        if ledger.in_doubt.contains(pod) {
            continue;
        }
        match known {
            Known::Allocated(ip) => assert_eq!(
                held.get(pod),
                Some(ip),
                "acknowledged allocation of {pod} lost"
            ),
            Known::Released => assert!(
                !held.contains_key(pod),
                "acknowledged release of {pod} undone"
            ),
        }
    }
    ledger.acked.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_survive_twenty_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    {
        let server = Server::start(dir.path(), &["--default-cooldown", "0s"]);
        server
            .ctrl()
            .add_subnet(&subnet("z1", "10.40.0.0/16"))
            .await
            .unwrap();
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut total_acked = 0;
    for round in 0..20 {
        let mut server = Server::start(dir.path(), &["--default-cooldown", "0s"]);
        {
            let l = ledger.lock().unwrap();
            total_acked = total_acked.max(l.acked.len());
        }
        // Everything acknowledged before the previous kill must be here.
        let snapshot = {
            let l = ledger.lock().unwrap();
            Ledger {
                acked: l.acked.clone(),
                in_doubt: l.in_doubt.clone(),
            }
        };
        verify(&server, &snapshot).await;
        let workers: Vec<_> = (0..16)
            .map(|w| tokio::spawn(load(server.node(), server.ctrl(), w, round, ledger.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(150 + 20 * round as u64)).await;
        server.kill9();
        for w in workers {
            w.await.unwrap();
        }
    }
    let server = Server::start(dir.path(), &[]);
    let l = std::mem::take(&mut *ledger.lock().unwrap());
    let checked = verify(&server, &l).await;
    assert!(
        checked > 200,
        "the load was too light to prove anything: {checked} acknowledged"
    );
    eprintln!("verified {checked} acknowledged pods over 20 SIGKILLs");
}
