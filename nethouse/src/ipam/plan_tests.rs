//! Allocation planning from tables of views: each case builds a view (no store, no clock), asks
//! for one allocation and states the whole decision — the addresses, every check the write
//! makes, or the refusal's words.

use std::net::IpAddr;

use super::AllocOutcome;
use super::plan::{self, Plan};
use super::pool::{Pick, Pool};
use super::state::{Cached, IpState, State, SubnetEntry};
use super::tests::{ephemeral, fixed, owner, subnet};
use crate::model::lease::{OwnerKey, ValidAllocate};
use crate::model::subnet::Subnet;
use crate::store::{Expect, Revision};

const NOW: u64 = 1_000_000;
const COOLDOWN: u64 = 10_000;

/// A view of fresh subnets, each at revision 1.
fn view(subnets: &[(&str, &str)]) -> State {
    let mut st = State::default();
    for (zone, cidr) in subnets {
        let subnet = Subnet::from_spec(&subnet(zone, cidr)).unwrap();
        let pool = Pool::new(subnet.cidr.size(), subnet.reserved().to_vec(), Vec::new());
        st.subnets.insert(
            subnet.name.clone(),
            SubnetEntry::new(subnet, 1, false, pool),
        );
    }
    st
}

/// Plans `req` and applies it as landed at `rev`.
fn allocated(st: &mut State, req: &ValidAllocate, rev: Revision) {
    match plan::allocation(st, req, NOW, COOLDOWN) {
        Ok(Plan::Write { allocation, .. }) => {
            allocation.apply(st, rev);
        }
        Ok(Plan::Done(..)) => {}
        Err(e) => panic!("{e}"),
    }
}

/// Ends the fixed lease of `pod` as landed at `rev`, its addresses released at `at`.
fn released(st: &mut State, pod: &str, rev: Revision, at: u64) {
    let old = st.remove_lease(&OwnerKey::fixed(&owner(pod))).unwrap();
    for lip in old.value.ips.iter() {
        st.mark_released(&lip.subnet, lip.ip, rev, at);
    }
}

enum Want {
    Write {
        outcome: AllocOutcome,
        ips: &'static [&'static str],
        checks: &'static [(&'static str, Expect)],
        picks: &'static [Pick],
    },
    Done(&'static [&'static str]),
    Refused(&'static str),
}

struct Case {
    name: &'static str,
    subnets: &'static [(&'static str, &'static str)],
    before: fn(&mut State),
    req: fn() -> ValidAllocate,
    want: Want,
}

fn nothing(_: &mut State) {}

fn cases() -> Vec<Case> {
    use Expect::{Absent, Revision as Rev};
    let v4: &[(&str, &str)] = &[("z1", "10.9.0.0/29")];
    let one: &[(&str, &str)] = &[("z1", "10.9.0.0/30")];
    vec![
        Case {
            name: "a new lease takes the first host after the gateway",
            subnets: v4,
            before: nothing,
            req: || fixed("p0", "c1", "n1", "z1"),
            want: Want::Write {
                outcome: AllocOutcome::Created,
                ips: &["10.9.0.2"],
                checks: &[
                    ("l/f/k/db/p0", Absent),
                    ("s/10.9.0.0-29", Rev(1)),
                    ("i/10.9.0.0-29/10.9.0.2", Absent),
                ],
                picks: &[Pick::Fresh(2)],
            },
        },
        Case {
            name: "an ephemeral lease is keyed by its attachment",
            subnets: v4,
            before: nothing,
            req: || ephemeral("c1", "n1", "z1"),
            want: Want::Write {
                outcome: AllocOutcome::Created,
                ips: &["10.9.0.2"],
                checks: &[
                    ("l/e/c1/eth0", Absent),
                    ("s/10.9.0.0-29", Rev(1)),
                    ("i/10.9.0.0-29/10.9.0.2", Absent),
                ],
                picks: &[Pick::Fresh(2)],
            },
        },
        Case {
            name: "a dual-stack zone gives one address of each family, IPv4 first",
            subnets: &[("z1", "fd00::/125"), ("z1", "10.9.0.0/29")],
            before: nothing,
            req: || fixed("p0", "c1", "n1", "z1"),
            want: Want::Write {
                outcome: AllocOutcome::Created,
                ips: &["10.9.0.2", "fd00::2"],
                checks: &[
                    ("l/f/k/db/p0", Absent),
                    ("s/10.9.0.0-29", Rev(1)),
                    ("i/10.9.0.0-29/10.9.0.2", Absent),
                    ("s/fd00::-125", Rev(1)),
                    ("i/fd00::-125/fd00::2", Absent),
                ],
                picks: &[Pick::Fresh(2), Pick::Fresh(2)],
            },
        },
        Case {
            name: "an address the view has leased is skipped though the pool offers it",
            subnets: v4,
            before: |st| {
                allocated(st, &fixed("p9", "c9", "n1", "z1"), 10);
                let stale = st.subnets.get_mut("10.9.0.0-29").unwrap();
                stale.pool.give_back(Pick::Fresh(2));
            },
            req: || fixed("p0", "c1", "n1", "z1"),
            want: Want::Write {
                outcome: AllocOutcome::Created,
                ips: &["10.9.0.3"],
                checks: &[
                    ("l/f/k/db/p0", Absent),
                    ("s/10.9.0.0-29", Rev(1)),
                    ("i/10.9.0.0-29/10.9.0.3", Absent),
                ],
                picks: &[Pick::Fresh(3)],
            },
        },
        Case {
            name: "a released address is reused once its cooldown ended, checked by revision",
            subnets: one,
            before: |st| {
                allocated(st, &fixed("p0", "c1", "n1", "z1"), 10);
                released(st, "p0", 20, NOW - COOLDOWN);
            },
            req: || fixed("p1", "c2", "n1", "z1"),
            want: Want::Write {
                outcome: AllocOutcome::Created,
                ips: &["10.9.0.2"],
                checks: &[
                    ("l/f/k/db/p1", Absent),
                    ("s/10.9.0.0-30", Rev(1)),
                    ("i/10.9.0.0-30/10.9.0.2", Rev(20)),
                ],
                picks: &[Pick::Reused(2, NOW - COOLDOWN)],
            },
        },
        Case {
            name: "a released address inside its cooldown is not handed out",
            subnets: one,
            before: |st| {
                allocated(st, &fixed("p0", "c1", "n1", "z1"), 10);
                released(st, "p0", 20, NOW - COOLDOWN + 1);
            },
            req: || fixed("p1", "c2", "n1", "z1"),
            want: Want::Refused(
                "zone \"z1\" is exhausted: no free IPv4 address: 0 of 1 free, 0 leased, 1 cooling down, 0 held by allocations not yet committed",
            ),
        },
        Case {
            name: "a full subnet says how many are leased",
            subnets: one,
            before: |st| allocated(st, &fixed("p0", "c1", "n1", "z1"), 10),
            req: || fixed("p1", "c2", "n1", "z1"),
            want: Want::Refused(
                "zone \"z1\" is exhausted: no free IPv4 address: 0 of 1 free, 1 leased, 0 cooling down, 0 held by allocations not yet committed",
            ),
        },
        Case {
            name: "a zone no subnet serves is unknown",
            subnets: v4,
            before: nothing,
            req: || fixed("p0", "c1", "n1", "z9"),
            want: Want::Refused("unknown zone \"z9\": no subnet serves it"),
        },
        Case {
            name: "a zone whose every subnet is being removed is exhausted",
            subnets: v4,
            before: |st| st.subnets.values_mut().for_each(|e| e.draining = true),
            req: || fixed("p0", "c1", "n1", "z1"),
            want: Want::Refused(
                "zone \"z1\" is exhausted: every subnet of the zone is being removed",
            ),
        },
        Case {
            name: "the same attachment again gets its answer without a write",
            subnets: v4,
            before: |st| allocated(st, &fixed("p0", "c1", "n1", "z1"), 10),
            req: || fixed("p0", "c1", "n1", "z1"),
            want: Want::Done(&["10.9.0.2"]),
        },
        Case {
            name: "a fixed owner's new sandbox moves the lease, checked by the lease's revision",
            subnets: v4,
            before: |st| allocated(st, &fixed("p0", "c1", "n1", "z1"), 10),
            req: || fixed("p0", "c2", "n2", "z1"),
            want: Want::Write {
                outcome: AllocOutcome::Reattached,
                ips: &["10.9.0.2"],
                checks: &[("l/f/k/db/p0", Rev(10))],
                picks: &[],
            },
        },
        Case {
            name: "a fixed lease asked for in another zone is refused, naming both zones",
            subnets: &[("z1", "10.9.0.0/29"), ("z2", "10.8.0.0/29")],
            before: |st| allocated(st, &fixed("p0", "c1", "n1", "z1"), 10),
            req: || fixed("p0", "c2", "n2", "z2"),
            want: Want::Refused(
                "k/db/p0 holds IP 10.9.0.2 in zone \"z1\", but was asked for in zone \"z2\"",
            ),
        },
    ]
}

#[test]
fn allocation_plans() {
    for case in cases() {
        let mut st = view(case.subnets);
        (case.before)(&mut st);
        let got = plan::allocation(&mut st, &(case.req)(), NOW, COOLDOWN);
        let name = case.name;
        match (got, case.want) {
            (
                Ok(Plan::Write {
                    txn,
                    picks,
                    allocation,
                }),
                Want::Write {
                    outcome,
                    ips,
                    checks,
                    picks: want_picks,
                },
            ) => {
                let got_checks: Vec<(&str, Expect)> = txn
                    .checks
                    .iter()
                    .map(|(k, e)| (k.as_str(), e.clone()))
                    .collect();
                assert_eq!(got_checks, checks, "{name}");
                let got_picks: Vec<Pick> = picks.into_iter().map(|(_, p)| p).collect();
                assert_eq!(got_picks, want_picks, "{name}");
                let (resp, got_outcome) = allocation.apply(&mut st, 99);
                assert_eq!(got_outcome, outcome, "{name}");
                let got_ips: Vec<String> =
                    resp.lease.ips.iter().map(|i| i.ip.to_string()).collect();
                assert_eq!(got_ips, ips, "{name}");
                assert!(
                    st.inconsistencies().is_empty(),
                    "{name}: {:?}",
                    st.inconsistencies()
                );
            }
            (Ok(Plan::Done(resp, outcome)), Want::Done(ips)) => {
                assert_eq!(outcome, AllocOutcome::Existing, "{name}");
                let got_ips: Vec<String> =
                    resp.lease.ips.iter().map(|i| i.ip.to_string()).collect();
                assert_eq!(got_ips, ips, "{name}");
            }
            (Err(e), Want::Refused(words)) => {
                assert!(e.to_string().starts_with(words), "{name}: {e}");
            }
            (Ok(Plan::Done(..)), _) => panic!("{name}: answered without a write"),
            (Ok(Plan::Write { .. }), _) => panic!("{name}: planned a write"),
            (Err(e), _) => panic!("{name}: refused: {e}"),
        }
    }
}

/// A family that has no address left gives back what the other family already took.
#[test]
fn an_exhausted_family_returns_the_other_familys_pick() {
    let mut st = view(&[("z1", "10.9.0.0/29"), ("z1", "fd00::/126")]);
    allocated(&mut st, &fixed("p0", "c1", "n1", "z1"), 10);
    allocated(&mut st, &fixed("p1", "c2", "n1", "z1"), 11);
    let v4_free = |st: &State| st.subnets["10.9.0.0-29"].pool.fresh_count();
    assert_eq!(v4_free(&st), 3);
    let e = match plan::allocation(&mut st, &fixed("p2", "c3", "n1", "z1"), NOW, COOLDOWN) {
        Err(e) => e,
        Ok(_) => panic!("fd00::/126 has two addresses, both leased"),
    };
    assert!(
        e.to_string()
            .contains("no free IPv6 address: 0 of 2 free, 2 leased"),
        "{e}"
    );
    assert_eq!(v4_free(&st), 3, "the IPv4 pick went back");
}

/// A pick goes back after a write that did not land only while the view has it as picked.
#[test]
fn only_picks_the_view_still_has_as_picked_go_back() {
    let mut st = view(&[("z1", "10.9.0.0/30")]);
    let picks = match plan::allocation(&mut st, &fixed("p0", "c1", "n1", "z1"), NOW, COOLDOWN) {
        Ok(Plan::Write { picks, .. }) => picks,
        _ => panic!("a fresh /30 has an address"),
    };
    let ip: IpAddr = "10.9.0.2".parse().unwrap();
    let taken = IpState::Leased(OwnerKey::from_stored("f/k/db/other"));
    st.ips.insert(
        ip,
        Cached {
            rev: 7,
            value: taken,
        },
    );
    plan::give_back(&mut st, picks.clone(), true);
    assert_eq!(
        st.subnets["10.9.0.0-30"].pool.fresh_count(),
        0,
        "leased meanwhile"
    );
    st.ips.remove(&ip);
    plan::give_back(&mut st, picks, true);
    assert_eq!(
        st.subnets["10.9.0.0-30"].pool.fresh_count(),
        1,
        "still free"
    );
}
