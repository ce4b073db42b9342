//! Allocations that overlap and whose commits fail (issue 11, defect 2: after failed commits a
//! /16 answered "zone exhausted" while its usage showed 59,785 addresses free). Each test runs
//! every interleaving of the calls' store accesses up to a bound, with [`Interleaved`].

use std::net::IpAddr;
use std::sync::Arc;

use nethouse_api::{LeaseFilter, SubnetSpec};

use super::interleave::{Fault, Interleaved, join_all};
use super::tests::{COOLDOWN_MS, del, ephemeral, ipam_on, subnet};
use super::*;
use crate::clock::ManualClock;

async fn on(spec: &SubnetSpec) -> (Ipam<Interleaved>, ManualClock, Interleaved) {
    let clock = ManualClock::new(1_000_000);
    let store = Interleaved::default();
    let config = IpamConfig {
        default_cooldown_ms: COOLDOWN_MS,
    };
    let ipam = Ipam::load(store.clone(), Arc::new(clock.clone()), config)
        .await
        .unwrap();
    ipam.add_subnet(spec).await.unwrap();
    (ipam, clock, store)
}

/// Every sequence of `len` yield counts, each 0..=2: the interleavings of `len` store calls.
fn schedules(len: u32) -> impl Iterator<Item = Vec<u8>> {
    (0..3u32.pow(len)).map(move |mut i| {
        (0..len)
            .map(|_| {
                let y = (i % 3) as u8;
                i /= 3;
                y
            })
            .collect()
    })
}

fn leased_ips<S: crate::store::Store>(ipam: &Ipam<S>) -> Vec<IpAddr> {
    let all = LeaseFilter {
        limit: Some(MAX_PAGE),
        ..Default::default()
    };
    let leases = ipam.list(&all).unwrap().items;
    leases
        .iter()
        .flat_map(|l| l.ips.iter().map(|i| i.ip))
        .collect()
}

/// Once every call has returned: the view is whole and agrees with the store, and every
/// address is free, leased or cooling down — none lost to the failed calls.
async fn assert_settled(
    ipam: &Ipam<Interleaved>,
    store: &Interleaved,
    clock: &ManualClock,
    at: &str,
) {
    assert_eq!(ipam.inconsistencies(), Vec::<String>::new(), "{at}");
    for s in ipam.subnets() {
        let u = &s.usage;
        let held = (u.attached + u.retained + u.cooling) as u128;
        assert_eq!(
            u.free,
            u.capacity - held,
            "{at}: usage of {}: {u:?}",
            s.name
        );
    }
    let fresh = ipam_on(store.faulty.inner.clone(), clock).await;
    assert_eq!(
        ipam.subnets(),
        fresh.subnets(),
        "{at}: usage differs from the store's"
    );
    assert_eq!(
        leased_ips(ipam),
        leased_ips(&fresh),
        "{at}: leases differ from the store's"
    );
}

/// Faults hit commits in the order the calls reach the store, which the schedule decides:
/// what is fixed is how many calls get an answer.
fn assert_outcomes<T: std::fmt::Debug>(out: Vec<Result<T, IpamError>>, faults: &[Fault], at: &str) {
    let answered = out.iter().filter(|r| r.is_ok()).count();
    let applied = faults.iter().filter(|f| **f == Fault::Apply).count();
    assert_eq!(answered, applied, "{at}: {out:?}");
    for r in &out {
        assert!(matches!(r, Ok(_) | Err(IpamError::Store(_))), "{at}: {r:?}");
    }
}

/// The commit patterns run for `n` overlapping allocations: all fail; and with three, one in
/// the middle lands, or lands with its answer lost.
fn patterns(n: usize) -> Vec<Vec<Fault>> {
    let mut out = vec![vec![Fault::Fail; n]];
    if n == 3 {
        out.push(vec![Fault::Fail, Fault::Apply, Fault::Fail]);
        out.push(vec![Fault::Fail, Fault::LoseAnswer, Fault::Fail]);
    }
    out
}

/// Never-used addresses of a /16, picked by overlapping allocations whose commits fail and
/// given back in every order (each failed call re-reads its lease key before giving back, so
/// another call can pick, fail or give back in between). Afterwards the next allocation gets
/// the lowest address nobody holds: no range was lost or cut short.
#[tokio::test]
async fn overlapping_failed_commits_in_a_16_lose_no_free_range() {
    for n in 2..=3usize {
        for faults in patterns(n) {
            for yields in schedules(2 * n as u32) {
                let at = format!("{faults:?} yields {yields:?}");
                let (ipam, clock, store) = on(&subnet("z1", "10.9.0.0/16")).await;
                ipam.allocate(ephemeral("c0", "n1", "z1")).await.unwrap();
                store.script(yields, faults.clone());
                let calls = (1..=n).map(|i| ipam.allocate(ephemeral(&format!("c{i}"), "n1", "z1")));
                assert_outcomes(join_all(calls.collect()).await, &faults, &at);
                store.script(Vec::new(), Vec::new());
                assert_settled(&ipam, &store, &clock, &at).await;

                let held = leased_ips(&ipam);
                let lowest = (2..)
                    .map(|i: u32| IpAddr::from([10, 9, (i >> 8) as u8, i as u8]))
                    .find(|ip| !held.contains(ip));
                let next = ipam.allocate(ephemeral("next", "n1", "z1")).await;
                let got = next.map(|(r, _)| r.lease.ips[0].ip);
                assert_eq!(got.ok(), lowest, "{at}");
            }
        }
    }
}

/// The same with released addresses (a /16 whose never-used ones are excluded, so every pick
/// is a reuse): afterwards the next allocation gets the address free the longest, and the
/// released queue is still in release order.
#[tokio::test]
async fn overlapping_failed_commits_keep_released_addresses_oldest_first() {
    let mut spec = subnet("z1", "10.9.0.0/16");
    spec.exclude = vec!["10.9.0.8-10.9.255.255".into()];
    for n in 2..=3usize {
        for faults in patterns(n) {
            for yields in schedules(2 * n as u32) {
                let at = format!("{faults:?} yields {yields:?}");
                let (ipam, clock, store) = on(&spec).await;
                let mut released = Vec::new();
                for i in 0..6 {
                    let (r, _) = ipam
                        .allocate(ephemeral(&format!("old{i}"), "n1", "z1"))
                        .await
                        .unwrap();
                    released.push(r.lease.ips[0].ip);
                }
                // Released one after another, last allocated first: release order is not
                // address order.
                for i in (0..6).rev() {
                    ipam.detach(del(&format!("old{i}"), None)).await.unwrap();
                    clock.advance_ms(1);
                }
                released.reverse();
                clock.advance_ms(COOLDOWN_MS);
                store.script(yields, faults.clone());
                let calls = (1..=n).map(|i| ipam.allocate(ephemeral(&format!("c{i}"), "n1", "z1")));
                assert_outcomes(join_all(calls.collect()).await, &faults, &at);
                store.script(Vec::new(), Vec::new());
                assert_settled(&ipam, &store, &clock, &at).await;

                let held = leased_ips(&ipam);
                let oldest = released.iter().copied().find(|ip| !held.contains(ip));
                let next = ipam.allocate(ephemeral("next", "n1", "z1")).await;
                let got = next.map(|(r, _)| r.lease.ips[0].ip);
                assert_eq!(got.ok(), oldest, "{at}");
            }
        }
    }
}

/// Under load the refusal counts what the decision saw: nothing free, and the addresses that
/// are neither leased nor cooling down held by the allocations still in flight — not "2 of 5
/// leased", which read as if 3 were free.
#[tokio::test]
async fn zone_exhausted_reports_the_counts_the_decision_used() {
    let (ipam, _, store) = on(&subnet("z1", "10.9.0.0/29")).await; // .2 .. .6
    for c in ["a", "b", "gone"] {
        ipam.allocate(ephemeral(c, "n1", "z1")).await.unwrap();
    }
    ipam.detach(del("gone", None)).await.unwrap();
    // The first two commits wait while the third call plans.
    store.script(vec![8, 8], Vec::new());
    let calls = ["c1", "c2", "c3"].map(|c| ipam.allocate(ephemeral(c, "n1", "z1")));
    let out = join_all(calls.into()).await;
    assert!(out[0].is_ok() && out[1].is_ok(), "{out:?}");
    let e = out[2].as_ref().unwrap_err();
    assert!(matches!(e, IpamError::ZoneExhausted { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "zone \"z1\" is exhausted: no free IPv4 address: 0 of 5 free, 2 leased, 1 cooling down, \
         2 held by allocations not yet committed"
    );
}
