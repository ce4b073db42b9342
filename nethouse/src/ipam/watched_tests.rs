//! Two replicas on one shared store: what one commits reaches the other's view through the
//! store's watch (applied in order or not), and an answer one gives from its view is confirmed
//! against the store first.

use nethouse_api::LeaseFilter;

use super::tests::{del, ephemeral, fixed, ipam_on, owner, subnet};
use super::*;
use crate::clock::ManualClock;
use crate::store::memory::MemoryStore;
use crate::store::{Changes, Store};

/// Everything committed after `after`, as the watch reports it.
async fn watched(store: &MemoryStore, after: u64) -> Vec<Changes> {
    let until = store.revision().await.unwrap();
    let mut w = store.watch(after).await.unwrap();
    let mut out = Vec::new();
    while out.last().is_none_or(|c: &Changes| c.revision < until) {
        out.push(w.next().await.unwrap().unwrap());
    }
    out
}

fn leases<S: Store>(ipam: &Ipam<S>) -> Vec<nethouse_api::Lease> {
    let all = LeaseFilter {
        limit: Some(MAX_PAGE),
        ..Default::default()
    };
    ipam.list(&all).unwrap().items
}

/// The view of `b` equals a fresh read of the store, and is consistent.
async fn same_as_the_store(b: &Ipam<MemoryStore>, store: &MemoryStore, clock: &ManualClock) {
    assert_eq!(b.inconsistencies(), Vec::<String>::new());
    let fresh = ipam_on(store.clone(), clock).await;
    assert_eq!(b.subnets(), fresh.subnets());
    assert_eq!(leases(b), leases(&fresh));
}

#[tokio::test]
async fn a_replica_learns_what_the_other_commits_from_the_watch() {
    let clock = ManualClock::new(1_000);
    let store = MemoryStore::shared();
    let a = ipam_on(store.clone(), &clock).await;
    let b = ipam_on(store.clone(), &clock).await;
    a.add_subnet(&subnet("z1", "10.9.0.0/28")).await.unwrap();
    for i in 0..4 {
        a.allocate(fixed(&format!("p{i}"), &format!("c{i}"), "n1", "z1"))
            .await
            .unwrap();
    }
    a.allocate(ephemeral("e1", "n1", "z1")).await.unwrap();
    a.release(&owner("p1")).await.unwrap();
    a.detach(del("e1", None)).await.unwrap();
    for c in watched(&store, b.applied()).await {
        b.apply_watched(&c).unwrap();
    }
    assert_eq!(b.applied(), store.revision().await.unwrap());
    same_as_the_store(&b, &store, &clock).await;
    // b picks an address nobody holds at once: its commit is the next revision, no retry.
    let before = store.revision().await.unwrap();
    b.allocate(fixed("q", "cq", "n2", "z1")).await.unwrap();
    assert_eq!(store.revision().await.unwrap(), before + 1, "no lost race");
}

#[tokio::test]
async fn changes_applied_late_or_twice_do_not_undo_newer_ones() {
    let clock = ManualClock::new(1_000);
    let store = MemoryStore::shared();
    let a = ipam_on(store.clone(), &clock).await;
    a.add_subnet(&subnet("z1", "10.9.0.0/28")).await.unwrap();
    let b = ipam_on(store.clone(), &clock).await;
    let from = b.applied();
    a.allocate(fixed("p", "c1", "n1", "z1")).await.unwrap();
    a.allocate(fixed("p", "c2", "n2", "z1")).await.unwrap();
    a.release(&owner("p")).await.unwrap();
    let changes = watched(&store, from).await;
    // Newest first, then everything again in order: the end state is the store's.
    for c in changes.iter().rev().chain(changes.iter()) {
        b.apply_watched(c).unwrap();
    }
    same_as_the_store(&b, &store, &clock).await;
    assert!(
        b.lease_by_owner(&owner("p")).is_err(),
        "released stays released"
    );
}

#[tokio::test]
async fn an_answer_from_a_stale_view_is_confirmed_against_the_store() {
    let clock = ManualClock::new(1_000);
    let store = MemoryStore::shared();
    let a = ipam_on(store.clone(), &clock).await;
    a.add_subnet(&subnet("z1", "10.9.0.0/28")).await.unwrap();
    let b = ipam_on(store.clone(), &clock).await;
    let first = b.allocate(fixed("p", "c1", "n1", "z1")).await.unwrap();
    // a ends p's lease; b does not follow the watch here, so its view still has it.
    a.release(&owner("p")).await.unwrap();
    // The same attachment asks b again: b must not answer "already yours" with an address
    // that is cooling down in the store.
    let (again, outcome) = b.allocate(fixed("p", "c1", "n1", "z1")).await.unwrap();
    assert_eq!(outcome, AllocOutcome::Created);
    assert_ne!(again.lease.ips, first.0.lease.ips);
    // a makes an ephemeral lease b never saw; its DEL through b releases it.
    a.allocate(ephemeral("e1", "n1", "z1")).await.unwrap();
    assert_eq!(b.detach(del("e1", None)).await.unwrap().outcome, "released");
    same_as_the_store(&b, &store, &clock).await;
}
