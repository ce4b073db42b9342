//! Property test: random sequences of allocate / detach / release / gc / restart / time over
//! small dual-stack subnets never give one address to two owners, never lose or change a fixed
//! lease, and never hand out an address inside its cooldown.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use nethouse_api::{AttachmentRef, LeaseFilter, LeaseKind};
use proptest::prelude::*;

use super::tests::{COOLDOWN_MS, del, ephemeral, fixed, ipam_on, owner, subnet};
use super::{Ipam, IpamError};
use crate::clock::{Clock, ManualClock};
use crate::store::memory::MemoryStore;

#[derive(Clone, Debug)]
enum Op {
    AllocFixed { pod: u8, node: u8 },
    AllocEphemeral { node: u8 },
    DelFixed { pod: u8, stale: bool },
    DelEphemeral { pick: u8 },
    Release { pod: u8 },
    Gc { node: u8, keep: u8 },
    Restart,
    Advance { ms: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, 0u8..3).prop_map(|(pod, node)| Op::AllocFixed { pod, node }),
        3 => (0u8..3).prop_map(|node| Op::AllocEphemeral { node }),
        2 => (0u8..6, any::<bool>()).prop_map(|(pod, stale)| Op::DelFixed { pod, stale }),
        3 => any::<u8>().prop_map(|pick| Op::DelEphemeral { pick }),
        2 => (0u8..6).prop_map(|pod| Op::Release { pod }),
        1 => (0u8..3, any::<u8>()).prop_map(|(node, keep)| Op::Gc { node, keep }),
        1 => Just(Op::Restart),
        2 => (0u64..2 * COOLDOWN_MS).prop_map(|ms| Op::Advance { ms }),
    ]
}

#[derive(Default)]
struct Model {
    /// pod -> its addresses and current container.
    fixed: HashMap<u8, (Vec<IpAddr>, Option<String>)>,
    /// container -> addresses, node.
    ephemeral: HashMap<String, (Vec<IpAddr>, String)>,
    released_at: HashMap<IpAddr, u64>,
    old_containers: HashMap<u8, Vec<String>>,
    next_cid: u64,
}

impl Model {
    fn cid(&mut self) -> String {
        self.next_cid += 1;
        format!("c{}", self.next_cid)
    }

    fn check_fresh_allocation(&self, ips: &[IpAddr], now: u64) {
        for ip in ips {
            if let Some(at) = self.released_at.get(ip) {
                assert!(now >= at + COOLDOWN_MS, "{ip} reused {} ms after its release", now - at);
            }
        }
    }

    fn released(&mut self, ips: &[IpAddr], now: u64) {
        for ip in ips {
            self.released_at.insert(*ip, now);
        }
    }
}

async fn check_invariants(ipam: &Ipam<MemoryStore>, model: &Model) {
    let leases = ipam.list(&LeaseFilter { limit: Some(5000), ..Default::default() }).unwrap().items;
    let mut seen = HashSet::new();
    for l in &leases {
        for lip in &l.ips {
            assert!(seen.insert(lip.ip), "{} handed to two owners", lip.ip);
        }
    }
    for (pod, (ips, _)) in &model.fixed {
        let l = ipam.lease_by_owner(&owner(&format!("p{pod}"))).expect("fixed lease lost");
        let got: Vec<IpAddr> = l.ips.iter().map(|x| x.ip).collect();
        assert_eq!(&got, ips, "fixed lease of p{pod} changed");
    }
    let fixed_count = leases.iter().filter(|l| l.kind == LeaseKind::Fixed).count();
    assert_eq!(fixed_count, model.fixed.len());
    assert!(ipam.inconsistencies().is_empty(), "{:?}", ipam.inconsistencies());
}

async fn run(ops: Vec<Op>) {
    let clock = ManualClock::new(1_000_000);
    let store = MemoryStore::new();
    let mut ipam = ipam_on(store.clone(), &clock).await;
    ipam.add_subnet(&subnet("z1", "10.9.0.0/29")).await.unwrap();
    ipam.add_subnet(&subnet("z1", "fd00::/125")).await.unwrap();
    let mut m = Model::default();
    for op in ops {
        let now = clock.now_ms();
        match op {
            Op::AllocFixed { pod, node } => {
                let cid = m.cid();
                match ipam.allocate(fixed(&format!("p{pod}"), &cid, &format!("n{node}"), "z1")).await {
                    Ok((r, _)) => {
                        let ips: Vec<IpAddr> = r.lease.ips.iter().map(|x| x.ip).collect();
                        assert_eq!(ips.len(), 2, "dual-stack gives one of each");
                        match m.fixed.get_mut(&pod) {
                            Some((known, cur)) => {
                                assert_eq!(known, &ips, "same name, same IP");
                                if let Some(old) = cur.replace(cid) {
                                    m.old_containers.entry(pod).or_default().push(old);
                                }
                            }
                            None => {
                                m.check_fresh_allocation(&ips, now);
                                m.fixed.insert(pod, (ips, Some(cid)));
                            }
                        }
                    }
                    Err(IpamError::ZoneExhausted { .. }) => assert!(!m.fixed.contains_key(&pod)),
                    Err(e) => panic!("{e}"),
                }
            }
            Op::AllocEphemeral { node } => {
                let cid = m.cid();
                match ipam.allocate(ephemeral(&cid, &format!("n{node}"), "z1")).await {
                    Ok((r, _)) => {
                        let ips: Vec<IpAddr> = r.lease.ips.iter().map(|x| x.ip).collect();
                        m.check_fresh_allocation(&ips, now);
                        m.ephemeral.insert(cid, (ips, format!("n{node}")));
                    }
                    Err(IpamError::ZoneExhausted { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            Op::DelFixed { pod, stale } => {
                let cid = if stale {
                    m.old_containers.get(&pod).and_then(|v| v.first().cloned())
                } else {
                    m.fixed.get(&pod).and_then(|(_, c)| c.clone())
                };
                let Some(cid) = cid else { continue };
                let out = ipam.detach(del(&cid, Some(&format!("p{pod}")))).await.unwrap();
                if let Some((_, cur)) = m.fixed.get_mut(&pod)
                    && cur.as_deref() == Some(cid.as_str())
                {
                    assert_eq!(out.outcome, "detached");
                    *cur = None;
                } else {
                    assert_ne!(out.outcome, "released", "DEL never releases a fixed lease");
                }
            }
            Op::DelEphemeral { pick } => {
                let mut cids: Vec<String> = m.ephemeral.keys().cloned().collect();
                cids.sort();
                if cids.is_empty() {
                    continue;
                }
                let cid = cids[pick as usize % cids.len()].clone();
                let out = ipam.detach(del(&cid, None)).await.unwrap();
                assert_eq!(out.outcome, "released");
                let (ips, _) = m.ephemeral.remove(&cid).unwrap();
                m.released(&ips, now);
                assert_eq!(ipam.detach(del(&cid, None)).await.unwrap().outcome, "not_found");
            }
            Op::Release { pod } => {
                let got = ipam.release(&owner(&format!("p{pod}"))).await.unwrap();
                match m.fixed.remove(&pod) {
                    Some((ips, _)) => {
                        assert!(got.is_some());
                        m.released(&ips, now);
                    }
                    None => assert!(got.is_none()),
                }
                m.old_containers.remove(&pod);
            }
            Op::Gc { node, keep } => {
                let node = format!("n{node}");
                let mut on_node: Vec<String> = m
                    .ephemeral
                    .iter()
                    .filter(|(_, (_, n))| *n == node)
                    .map(|(c, _)| c.clone())
                    .collect();
                on_node.sort();
                let valid: Vec<String> = on_node
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| keep & (1 << (i % 8)) != 0)
                    .map(|(_, c)| c.clone())
                    .collect();
                // Fixed pods attached on the node stay valid half of the time.
                let mut refs: Vec<AttachmentRef> = valid
                    .iter()
                    .map(|c| AttachmentRef { container_id: c.clone(), ifname: "eth0".into() })
                    .collect();
                if keep & 1 == 1 {
                    for (_, cur) in m.fixed.values() {
                        if let Some(c) = cur {
                            refs.push(AttachmentRef { container_id: c.clone(), ifname: "eth0".into() });
                        }
                    }
                }
                let out = ipam.gc(&node, &refs).await;
                assert!(out.errors.is_empty(), "{out:?}");
                for c in on_node.iter().filter(|c| !valid.contains(c)) {
                    let (ips, _) = m.ephemeral.remove(c).unwrap();
                    m.released(&ips, now);
                }
                // Fixed pods on that node that were not listed lost their attachment, not their IP.
                for (pod, (_, cur)) in m.fixed.iter_mut() {
                    let l = ipam.lease_by_owner(&owner(&format!("p{pod}"))).unwrap();
                    if l.attachment.is_none() {
                        *cur = None;
                    }
                }
            }
            Op::Restart => {
                drop(ipam);
                ipam = ipam_on(store.clone(), &clock).await;
            }
            Op::Advance { ms } => clock.advance_ms(ms),
        }
        check_invariants(&ipam, &m).await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn leases_keep_their_promises(ops in prop::collection::vec(op(), 1..80)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops));
    }
}
