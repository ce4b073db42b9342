//! Removing a subnet with more address records than one transaction of the store may carry
//! (etcd's `--max-txn-ops`): on a real etcd, on the embedded store, and on a memory store told
//! a small limit, where chunks can be made to fail midway.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::interleave::{Fault, Interleaved, join_all};
use super::removal::{chunk_txn, chunks};
use super::tests::{COOLDOWN_MS, del, ephemeral, subnet};
use super::*;
use crate::clock::ManualClock;
use crate::store::embedded::EmbeddedStore;
use crate::store::etcd::tests::Etcd;
use crate::store::etcd::{EtcdOptions, EtcdStore};
use crate::store::memory::MemoryStore;
use crate::store::{Expect, Op, Txn, Versioned};
use nethouse_api::Subnet as SubnetView;

const NAME: &str = "10.9.0.0-23";

async fn ipam_on<S: Store>(store: S, clock: &ManualClock) -> Ipam<S> {
    let config = IpamConfig {
        default_cooldown_ms: COOLDOWN_MS,
    };
    Ipam::load(store, Arc::new(clock.clone()), config)
        .await
        .unwrap()
}

/// `n` addresses of the subnet used once each and released (cooling down, so each allocation
/// takes a new one): `n` address records, no lease.
async fn use_and_release<S: Store>(ipam: &Ipam<S>, n: usize) {
    for i in 0..n {
        let cid = format!("c{i}");
        ipam.allocate(ephemeral(&cid, "n1", "z1")).await.unwrap();
        ipam.detach(del(&cid, None)).await.unwrap();
    }
}

/// The subnet is gone from the store (its key and every address record) and from the view.
async fn assert_gone<S: Store>(ipam: &Ipam<S>) {
    let store = ipam.store();
    assert_eq!(store.scan(&keys::addresses_of(NAME)).await.unwrap(), vec![]);
    assert_eq!(store.get(&keys::subnet(NAME)).await.unwrap(), None);
    assert!(ipam.subnets().is_empty());
    assert_eq!(
        ipam.state().ips.len(),
        0,
        "no address of it left in the view"
    );
    assert_eq!(ipam.inconsistencies(), Vec::<String>::new());
}

/// 300 released records, removed; then the same CIDR again, every address fresh.
async fn removes_300_released_records<S: Store>(ipam: Ipam<S>) {
    ipam.add_subnet(&subnet("z1", "10.9.0.0/23")).await.unwrap();
    use_and_release(&ipam, 300).await;
    assert_eq!(
        ipam.store()
            .scan(&keys::addresses_of(NAME))
            .await
            .unwrap()
            .len(),
        300
    );
    let removed = ipam.remove_subnet(NAME).await.unwrap();
    assert_eq!(removed.name, NAME);
    assert_gone(&ipam).await;
    ipam.add_subnet(&subnet("z1", "10.9.0.0/23")).await.unwrap();
    assert_eq!(ipam.subnet(NAME).unwrap().usage.free, 509);
}

/// etcd refuses a transaction of more than `--max-txn-ops` (128) compares or ops: one
/// transaction for 300 records (301 compares) was refused, and the subnet could never go.
#[tokio::test]
async fn etcd_removes_a_subnet_with_more_records_than_one_transaction_takes() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), None);
    let opts = EtcdOptions::new(std::slice::from_ref(&etcd.url), "/nethouse/", None, None).unwrap();
    let store = EtcdStore::connect(&opts, None).await.unwrap();
    let clock = ManualClock::new(1_000_000);
    removes_300_released_records(ipam_on(store, &clock).await).await;
}

#[tokio::test]
async fn embedded_removes_a_subnet_with_300_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let clock = ManualClock::new(1_000_000);
    removes_300_released_records(ipam_on(store, &clock).await).await;
}

#[test]
fn chunks_fit_the_limit_in_as_few_transactions_as_possible() {
    // (records, the store's limit, each transaction's records as start..end)
    type Case = (usize, Option<usize>, &'static [(usize, usize)]);
    let cases: Vec<Case> = vec![
        // No limit (embedded, memory): one transaction, as before.
        (0, None, &[(0, 0)]),
        (300, None, &[(0, 300)]),
        // etcd's default: 126 records + subnet + meta = 128 in the last.
        (0, Some(128), &[(0, 0)]),
        (126, Some(128), &[(0, 126)]),
        (127, Some(128), &[(0, 127), (127, 127)]),
        // 127 records + the subnet key's check = 128 in every other one.
        (300, Some(128), &[(0, 127), (127, 254), (254, 300)]),
        (
            381,
            Some(128),
            &[(0, 127), (127, 254), (254, 381), (381, 381)],
        ),
        // The least a store may say (the CLI's floor for --etcd-max-txn-ops).
        (3, Some(2), &[(0, 1), (1, 2), (2, 3), (3, 3)]),
        (1, Some(3), &[(0, 1)]),
        (2, Some(3), &[(0, 2), (2, 2)]),
        // Below what one record needs: still one a transaction (the store refuses the last).
        (2, Some(1), &[(0, 1), (1, 2), (2, 2)]),
        (2, Some(0), &[(0, 1), (1, 2), (2, 2)]),
    ];
    for (records, max, want) in cases {
        let got: Vec<(usize, usize)> = chunks(records, max)
            .into_iter()
            .map(|r| (r.start, r.end))
            .collect();
        assert_eq!(got, want, "{records} records, limit {max:?}");
    }
}

/// Every record deleted once, in key order, each transaction within the limit as the store
/// counts it ([`Txn::size`]), the subnet key checked by all and deleted by the last only, and
/// no plan with fewer transactions could fit.
#[test]
fn every_chunk_plan_fits_and_deletes_each_record_once() {
    let records: Vec<(String, Versioned)> = (0..300)
        .map(|i| {
            let v = Versioned {
                value: vec![],
                revision: 10 + i as u64,
            };
            (format!("i/{NAME}/10.9.{}.{}", i / 256, i % 256), v)
        })
        .collect();
    let st = state::State {
        subnets_meta_rev: Some(3),
        ..Default::default()
    };
    for max in (2..=20).chain([127, 128, 129, 1000]) {
        for n in [0, 1, 2, 5, 17, 126, 127, 128, 254, 255, 300] {
            let plan = chunks(n, Some(max));
            let (in_last, per_chunk) = (max - 2, max - 1);
            let fewest = 1 + (n.saturating_sub(in_last)).div_ceil(per_chunk);
            assert_eq!(plan.len(), fewest, "{n} records, limit {max}");
            let mut deleted = Vec::new();
            for (i, r) in plan.iter().enumerate() {
                let mut txn = chunk_txn(NAME, 7, &records[r.clone()]);
                if i + 1 == plan.len() {
                    txn = super::subnets::meta_check(&st, txn.delete(keys::subnet(NAME)));
                }
                assert!(
                    txn.size() <= max,
                    "{n} records, limit {max}: {}",
                    txn.size()
                );
                assert_eq!(txn.checks[0], (keys::subnet(NAME), Expect::Revision(7)));
                let deletes_subnet = txn.ops.contains(&Op::Delete(keys::subnet(NAME)));
                assert_eq!(deletes_subnet, i + 1 == plan.len());
                for op in &txn.ops {
                    if let Op::Delete(k) = op
                        && k.starts_with(keys::ADDRESSES)
                    {
                        deleted.push(k.clone());
                    }
                }
            }
            let want: Vec<String> = records[..n].iter().map(|(k, _)| k.clone()).collect();
            assert_eq!(deleted, want, "{n} records, limit {max}");
        }
    }
}

/// A memory store that refuses transactions over `max` ops, holding a /24 with `n` released
/// records (and its commits scriptable: `Interleaved`).
async fn limited(max: usize, n: usize) -> (Ipam<Interleaved>, ManualClock, Interleaved) {
    let clock = ManualClock::new(1_000_000);
    let store = Interleaved::default();
    let ipam = ipam_on(store.clone(), &clock).await;
    ipam.add_subnet(&subnet("z1", "10.9.0.0/23")).await.unwrap();
    use_and_release(&ipam, n).await;
    store.faulty.limit_txn_ops(max);
    (ipam, clock, store)
}

async fn records_in_store<S: Store>(ipam: &Ipam<S>) -> usize {
    ipam.store()
        .scan(&keys::addresses_of(NAME))
        .await
        .unwrap()
        .len()
}

async fn draining_in_store<S: Store>(ipam: &Ipam<S>) -> bool {
    let key = keys::subnet(NAME);
    let v = ipam
        .store()
        .get(&key)
        .await
        .unwrap()
        .expect("the subnet key");
    codec::decode_subnet(&key, &v.value).unwrap().draining
}

/// The removal left the subnet as it was: `records` address records still in the store, not
/// draining, handing out addresses, and the view agreeing with itself.
async fn left_usable<S: Store>(ipam: &Ipam<S>, records: usize) {
    assert_eq!(records_in_store(ipam).await, records);
    assert!(!draining_in_store(ipam).await);
    ipam.allocate(ephemeral("new", "n1", "z1")).await.unwrap();
    assert_eq!(ipam.inconsistencies(), Vec::<String>::new());
}

#[tokio::test]
async fn a_limited_store_gets_the_removal_in_transactions_that_fit() {
    for (max, n) in [(2, 5), (8, 20), (128, 300)] {
        let (ipam, _, _) = limited(max, n).await;
        assert_eq!(ipam.store().max_txn_ops(), Some(max));
        // The store refuses what does not fit, such as the one transaction of old.
        let records = ipam.store().scan(&keys::addresses_of(NAME)).await.unwrap();
        let whole = chunk_txn(NAME, 1, &records);
        assert!(ipam.store().commit(whole).await.is_err());
        ipam.remove_subnet(NAME).await.unwrap();
        assert_gone(&ipam).await;
    }
}

/// A leased record still refuses the removal, with the records over the limit: nothing is
/// deleted and the subnet is usable again.
#[tokio::test]
async fn a_leased_record_refuses_a_chunked_removal_and_leaves_the_subnet_usable() {
    let (ipam, _, _) = limited(8, 20).await;
    ipam.allocate(ephemeral("kept", "n1", "z1")).await.unwrap();
    let e = ipam.remove_subnet(NAME).await.unwrap_err();
    assert!(matches!(e, IpamError::SubnetInUse { leases: 1, .. }), "{e}");
    left_usable(&ipam, 21).await;
}

/// A chunk fails midway (applied or not): the subnet stays draining with what is left, the
/// view agrees with the store, the error says so, and removing again finishes.
#[tokio::test]
async fn a_chunk_that_fails_midway_leaves_a_draining_subnet_to_remove_again() {
    // Limit 8: chunks of 7 records, the last of at most 6: 0..7, 7..14, 14..20.
    for (fault, left) in [(Fault::Fail, 13), (Fault::LoseAnswer, 6)] {
        let (ipam, clock, store) = limited(8, 20).await;
        // The drain, the first chunk, then the second.
        store.script(vec![], vec![Fault::Apply, Fault::Apply, fault]);
        let e = ipam.remove_subnet(NAME).await.unwrap_err();
        let IpamError::SubnetRemovalIncomplete {
            deleted, records, ..
        } = &e
        else {
            panic!("{fault:?}: {e}");
        };
        assert_eq!((*deleted, *records), (7, 20), "{fault:?}");
        assert!(e.to_string().contains("remove it again"), "{e}");
        assert_eq!(records_in_store(&ipam).await, left, "{fault:?}");
        assert!(draining_in_store(&ipam).await, "{fault:?}");
        // The view: the deleted records gone from `ips`, no new lease in the subnet.
        assert_eq!(ipam.state().ips.len(), left, "{fault:?}");
        assert_eq!(ipam.inconsistencies(), Vec::<String>::new());
        assert_eq!(ipam.subnet(NAME).unwrap().usage.free, 0);
        assert!(ipam.allocate(ephemeral("x", "n1", "z1")).await.is_err());
        // A restart reads back the same draining subnet.
        let again = ipam_on(store.clone(), &clock).await;
        assert_eq!(again.subnet(NAME).unwrap().usage.free, 0);
        assert_eq!(again.state().ips.len(), left);

        ipam.remove_subnet(NAME).await.unwrap();
        assert_gone(&ipam).await;
    }
}

/// A lost race before any record was deleted changes nothing: the subnet is undrained, as
/// when a removal is refused. Here a record changes between the scan and the first chunk.
#[tokio::test]
async fn a_lost_race_before_any_delete_undrains_the_subnet() {
    let (ipam, _, store) = limited(8, 20).await;
    let first = ipam.store().scan(&keys::addresses_of(NAME)).await.unwrap()[0].clone();
    // The drain commits at once; the first chunk waits two turns, the write below takes one.
    store.script(vec![0, 2], vec![]);
    let removal = ipam.remove_subnet(NAME);
    let writer = async {
        tokio::task::yield_now().await;
        let rewrite = Txn::default().put(first.0.clone(), first.1.value.clone());
        store.faulty.inner.commit(rewrite).await.unwrap();
        Ok(ipam.subnet(NAME).unwrap())
    };
    type Call<'a> = Pin<Box<dyn Future<Output = Result<SubnetView, IpamError>> + 'a>>;
    let mut out = join_all(vec![Box::pin(removal) as Call, Box::pin(writer)]).await;
    let e = out.remove(0).unwrap_err();
    assert!(
        matches!(&e, IpamError::Contention { lost, .. } if *lost == first.0),
        "{e}"
    );
    left_usable(&ipam, 20).await;
}

/// Two replicas remove the subnet at once: the one that drained it last finishes; the other
/// had deleted a chunk, says its removal is incomplete, and its view follows the store.
#[tokio::test]
async fn two_replicas_removing_at_once_leave_both_views_right() {
    let (ipam, clock, store) = limited(8, 20).await;
    let faulty = store.faulty.clone();
    faulty.hold_next_commit();
    let removal = ipam.remove_subnet(NAME);
    let other = async {
        faulty.committed().await; // the drain
        faulty.hold_next_commit();
        faulty.release();
        faulty.committed().await; // the first chunk
        let other = ipam_on(faulty.inner.clone(), &clock).await;
        assert_eq!(other.state().ips.len(), 13);
        other.remove_subnet(NAME).await.unwrap();
        faulty.release();
    };
    let (e, ()) = tokio::join!(removal, other);
    let e = e.unwrap_err();
    assert!(
        matches!(
            &e,
            IpamError::SubnetRemovalIncomplete { deleted: 7, cause, .. }
                if matches!(**cause, IpamError::Contention { .. })
        ),
        "{e}"
    );
    assert_gone(&ipam).await;
    assert!(matches!(
        ipam.remove_subnet(NAME).await,
        Err(IpamError::NotFound { .. })
    ));
}

/// Another subnet added meanwhile (the meta key every subnet change rewrites) does not fail
/// the removal: its last transaction is sent again.
#[tokio::test]
async fn a_subnet_added_meanwhile_does_not_fail_the_removal() {
    let (ipam, clock, store) = limited(8, 20).await;
    let faulty = store.faulty.clone();
    faulty.hold_next_commit();
    let removal = ipam.remove_subnet(NAME);
    let other = async {
        faulty.committed().await; // the drain
        let other = ipam_on(faulty.inner.clone(), &clock).await;
        other
            .add_subnet(&subnet("z2", "10.8.0.0/24"))
            .await
            .unwrap();
        faulty.release();
    };
    let (removed, ()) = tokio::join!(removal, other);
    removed.unwrap();
    assert_eq!(records_in_store(&ipam).await, 0);
    assert_eq!(ipam.store().get(&keys::subnet(NAME)).await.unwrap(), None);
    assert!(ipam.subnet(NAME).is_err());
}

/// Applies to `b` everything committed to `store` that it has not seen, as the watch reports it.
async fn follow(b: &Ipam<MemoryStore>, store: &MemoryStore) {
    let until = store.revision().await.unwrap();
    let mut w = store.watch(b.applied()).await.unwrap();
    while b.applied() < until {
        b.apply_watched(&w.next().await.unwrap().unwrap()).unwrap();
    }
}

/// Another replica follows a chunked removal through the watch: after the chunk that failed
/// and after the removal again, its view equals the store's and is whole (no deleted address
/// left cooling down in its pool).
#[tokio::test]
async fn a_replica_watching_a_chunked_removal_keeps_its_view_whole() {
    let (a, clock, store) = limited(8, 20).await;
    let shared = store.faulty.inner.clone();
    let b = ipam_on(shared.clone(), &clock).await;
    store.script(vec![], vec![Fault::Apply, Fault::Apply, Fault::Fail]);
    a.remove_subnet(NAME).await.unwrap_err();
    follow(&b, &shared).await;
    assert_eq!(b.inconsistencies(), Vec::<String>::new());
    assert_eq!(b.state().ips.len(), 13);
    assert_eq!(b.subnet(NAME).unwrap(), a.subnet(NAME).unwrap());
    assert_eq!(b.subnet(NAME).unwrap().usage.cooling, 13);

    a.remove_subnet(NAME).await.unwrap();
    follow(&b, &shared).await;
    assert_gone(&b).await;
}
