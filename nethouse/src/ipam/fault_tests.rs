//! The cache against a store that fails or changes behind its back: an I/O error or a second
//! writer must never leave an address out of the pool or the cache half-updated.

use std::sync::Arc;

use super::tests::{COOLDOWN_MS, del, ephemeral, fixed, ipam_on, owner, subnet};
use super::*;
use crate::clock::ManualClock;
use crate::store::faulty::FaultyStore;
use crate::store::memory::MemoryStore;

async fn flaky(cidr: &str) -> (Ipam<FaultyStore>, ManualClock, FaultyStore) {
    let clock = ManualClock::new(1_000_000);
    let store = FaultyStore::default();
    let ipam = Ipam::load(
        store.clone(),
        Arc::new(clock.clone()),
        IpamConfig {
            default_cooldown_ms: COOLDOWN_MS,
        },
    )
    .await
    .unwrap();
    ipam.add_subnet(&subnet("z1", cidr)).await.unwrap();
    (ipam, clock, store)
}

/// A reused address leaves the released queue when it is picked; a commit that fails must
/// put it back (a /30 has this one address only).
#[tokio::test]
async fn a_failed_commit_gives_the_picked_address_back() {
    let (ipam, clock, store) = flaky("10.9.0.0/30").await;
    let first = ipam.allocate(ephemeral("c1", "n1", "z1")).await.unwrap();
    ipam.detach(del("c1", None)).await.unwrap();
    clock.advance_ms(COOLDOWN_MS);

    store.fail_next_commit();
    assert!(ipam.allocate(ephemeral("c2", "n1", "z1")).await.is_err());
    let again = ipam.allocate(ephemeral("c3", "n1", "z1")).await.unwrap();
    assert_eq!(again.0.lease.ips[0].ip, first.0.lease.ips[0].ip);
    assert_eq!(ipam.inconsistencies(), Vec::<String>::new());
}

/// Another writer released the lease and gave its owner a new address: the next call here
/// learns both addresses, the old one cooling down and the new one leased.
#[tokio::test]
async fn a_lease_moved_by_another_writer_is_learned_with_both_addresses() {
    let clock = ManualClock::new(1_000_000);
    let store = MemoryStore::new();
    let here = ipam_on(store.clone(), &clock).await;
    here.add_subnet(&subnet("z1", "10.9.0.0/29")).await.unwrap();
    let first = here
        .allocate(fixed("redis-0", "c1", "n1", "z1"))
        .await
        .unwrap();
    let other = ipam_on(store.clone(), &clock).await;
    other.release(&owner("redis-0")).await.unwrap();
    let moved = other
        .allocate(fixed("redis-0", "c2", "n2", "z1"))
        .await
        .unwrap();
    let (old, new) = (first.0.lease.ips[0].ip, moved.0.lease.ips[0].ip);
    assert_ne!(old, new, "the old address is cooling down");

    assert!(
        here.release_exact(&owner("redis-0"), Some(&[old]))
            .await
            .unwrap()
            .is_none(),
        "the lease no longer holds the old address"
    );
    assert_eq!(
        here.lease_by_owner(&owner("redis-0")).unwrap().ips[0].ip,
        new
    );
    assert_eq!(here.inconsistencies(), Vec::<String>::new());
    assert_eq!(here.subnets()[0].usage.cooling, 1);
}

/// A read that fails while a stale lease is being re-read leaves the cache as it was; the next
/// call learns the change.
#[tokio::test]
async fn a_failed_read_during_a_refresh_changes_nothing() {
    let (here, clock, store) = flaky("10.9.0.0/29").await;
    let first = here
        .allocate(fixed("redis-0", "c1", "n1", "z1"))
        .await
        .unwrap();
    let ips = [first.0.lease.ips[0].ip];
    let other = ipam_on(store.inner.clone(), &clock).await;
    other.release(&owner("redis-0")).await.unwrap();

    store.fail_address_reads(true);
    assert!(
        here.release_exact(&owner("redis-0"), Some(&ips))
            .await
            .is_err()
    );
    assert!(
        here.lease_by_owner(&owner("redis-0")).is_ok(),
        "still the old view"
    );
    assert_eq!(here.inconsistencies(), Vec::<String>::new());

    store.fail_address_reads(false);
    assert!(
        here.release_exact(&owner("redis-0"), Some(&ips))
            .await
            .unwrap()
            .is_none()
    );
    assert!(here.lease_by_owner(&owner("redis-0")).is_err());
    assert_eq!(here.subnets()[0].usage.cooling, 1);
    assert_eq!(here.inconsistencies(), Vec::<String>::new());
}

/// The store applied an allocation but its answer was lost (a timeout after the commit). The
/// lease is learned at once, so the caller's retry gets it back instead of "exhausted" (it holds
/// the subnet's one address), and nothing is counted twice.
#[tokio::test]
async fn a_lost_answer_to_an_allocation_is_learned_at_once() {
    let (ipam, _, store) = flaky("10.9.0.0/30").await;
    store.lose_next_answer();
    assert!(
        ipam.allocate(fixed("redis-0", "c1", "n1", "z1"))
            .await
            .is_err()
    );
    assert_eq!(ipam.inconsistencies(), Vec::<String>::new());
    let again = ipam
        .allocate(fixed("redis-0", "c1", "n1", "z1"))
        .await
        .unwrap();
    assert_eq!(again.1, AllocOutcome::Existing);
    assert_eq!(again.0.lease.ips[0].ip.to_string(), "10.9.0.2");
}

/// The same for a released address picked again: it must not stay in the released queue as
/// well, where the usage would count it free.
#[tokio::test]
async fn a_lost_answer_to_a_reuse_leaves_the_address_counted_once() {
    let (ipam, clock, store) = flaky("10.9.0.0/30").await;
    ipam.allocate(ephemeral("c1", "n1", "z1")).await.unwrap();
    ipam.detach(del("c1", None)).await.unwrap();
    clock.advance_ms(COOLDOWN_MS);
    store.lose_next_answer();
    assert!(ipam.allocate(ephemeral("c2", "n1", "z1")).await.is_err());
    let u = &ipam.subnets()[0].usage;
    assert_eq!((u.attached, u.cooling, u.free), (1, 0, 0), "{u:?}");
    assert_eq!(ipam.inconsistencies(), Vec::<String>::new());
}
