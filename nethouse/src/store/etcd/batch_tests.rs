//! Which waiting commits `batch` puts in one group: independent ones only, within etcd's
//! limits, the oldest always.

use super::batch::{Limits, next_group};
use crate::store::{Expect, Txn};

fn alloc(lease: &str, ip: &str) -> Txn {
    Txn::default()
        .check(lease, Expect::Absent)
        .check(ip, Expect::Absent)
        .check("s/z1", Expect::Revision(3))
        .put(lease, b"lease".to_vec())
        .put(ip, b"ip".to_vec())
}

fn group(ts: &[Txn], limits: Limits) -> Vec<usize> {
    next_group(ts.iter(), limits)
}

#[test]
fn independent_allocations_go_together_even_checking_one_subnet() {
    let ts: Vec<Txn> = (0..10)
        .map(|i| alloc(&format!("l/{i}"), &format!("i/{i}")))
        .collect();
    assert_eq!(group(&ts, Limits::default()), (0..10).collect::<Vec<_>>());
}

#[test]
fn a_key_written_by_one_is_neither_written_nor_checked_by_another() {
    let ts = vec![
        alloc("l/a", "i/1"),
        // The same address: waits.
        alloc("l/b", "i/1"),
        // The same lease: waits.
        alloc("l/a", "i/2"),
        // Writes the subnet the first one checks: waits.
        Txn::default().put("s/z1", b"draining".to_vec()),
        // Checks the lease the first one writes: waits.
        Txn::default()
            .check("l/a", Expect::Revision(7))
            .delete("i/9"),
        // Deletes a key the first one writes: waits.
        Txn::default().delete("i/1"),
        alloc("l/c", "i/3"),
    ];
    assert_eq!(group(&ts, Limits::default()), vec![0, 6]);
    // The rest, next time: the oldest of them leads.
    let rest: Vec<Txn> = ts[1..6].to_vec();
    assert_eq!(group(&rest, Limits::default()), vec![0, 1]);
}

#[test]
fn a_key_only_checked_by_the_group_may_be_checked_again_but_not_written() {
    let ts = vec![
        Txn::default().check("k", Expect::Absent).put("a", vec![]),
        Txn::default().check("k", Expect::Absent).put("b", vec![]),
        Txn::default().put("k", vec![]),
    ];
    assert_eq!(group(&ts, Limits::default()), vec![0, 1]);
}

#[test]
fn a_transaction_writing_a_key_twice_goes_alone() {
    let twice = Txn::default().put("k", vec![1]).delete("k");
    let ts = vec![alloc("l/a", "i/1"), twice.clone()];
    assert_eq!(group(&ts, Limits::default()), vec![0]);
    let ts = vec![twice, alloc("l/a", "i/1")];
    assert_eq!(group(&ts, Limits::default()), vec![0, 1]);
}

#[test]
fn members_plus_the_largest_member_stay_within_max_txn_ops() {
    let limits = Limits {
        max_txn_ops: 10,
        ..Limits::default()
    };
    // Each counts 3: seven fit (7 + 3 = 10), the eighth would not.
    let ts: Vec<Txn> = (0..9)
        .map(|i| alloc(&format!("l/{i}"), &format!("i/{i}")))
        .collect();
    assert_eq!(group(&ts, limits), (0..7).collect::<Vec<_>>());
    // A larger member lowers how many fit: 5 puts count 5, so 5 members at most.
    let mut big = Txn::default();
    for k in 0..5 {
        big = big.put(format!("b/{k}"), vec![]);
    }
    let mut ts = vec![big];
    ts.extend((0..9).map(|i| alloc(&format!("l/{i}"), &format!("i/{i}"))));
    assert_eq!(group(&ts, limits), (0..5).collect::<Vec<_>>());
}

#[test]
fn a_transaction_too_large_to_nest_goes_alone() {
    let limits = Limits {
        max_txn_ops: 10,
        ..Limits::default()
    };
    let mut big = Txn::default();
    for k in 0..9 {
        big = big.put(format!("b/{k}"), vec![]);
    }
    let small = alloc("l/a", "i/1");
    assert_eq!(group(&[big.clone(), small.clone()], limits), vec![0]);
    assert_eq!(group(&[small, big], limits), vec![0]);
}

#[test]
fn the_bytes_of_a_group_are_bounded() {
    let limits = Limits {
        max_bytes: 1000,
        ..Limits::default()
    };
    let ts: Vec<Txn> = (0..5)
        .map(|i| Txn::default().put(format!("k/{i}"), vec![0; 300]))
        .collect();
    assert_eq!(group(&ts, limits), vec![0, 1, 2]);
    // One larger than the bound still goes, alone.
    let huge = Txn::default().put("h", vec![0; 5000]);
    assert_eq!(group(&[huge, ts[0].clone()], limits), vec![0]);
}
