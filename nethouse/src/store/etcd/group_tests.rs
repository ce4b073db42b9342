//! Group commit against a real etcd (Debian's etcd-server): commits that wait together become
//! one etcd transaction and still get their own outcomes, groups stay within etcd's
//! `--max-txn-ops` as etcd counts it, a group etcd refuses is sent commit by commit, and a
//! group whose answer is lost leaves every member's outcome unknown.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::Client;

use super::batch::{self, Limits};
use super::tests::{Etcd, options, store};
use super::{EtcdStore, txn};
use crate::store::health::{FailureKind, StoreObserver};
use crate::store::{Expect, Outcome, Store, Txn};

/// An allocation's shape: its lease and address absent, its subnet at a revision.
fn alloc(i: usize, subnet_rev: u64) -> Txn {
    let (lease, ip) = (format!("l/{i}"), format!("i/{i}"));
    Txn::default()
        .check(&lease, Expect::Absent)
        .check(&ip, Expect::Absent)
        .check("s/z1", Expect::Revision(subnet_rev))
        .put(lease, vec![1; 190])
        .put(ip, vec![2; 45])
}

/// `n` allocations at once on `s`; their outcomes, in order.
async fn allocate_at_once(s: &Arc<EtcdStore>, n: usize, subnet_rev: u64) -> Vec<Outcome> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.commit(alloc(i, subnet_rev)).await.unwrap() })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn revisions(outcomes: &[Outcome]) -> Vec<u64> {
    outcomes
        .iter()
        .map(|o| match o {
            Outcome::Committed(r) => *r,
            other => panic!("expected a commit, got {other:?}"),
        })
        .collect()
}

/// The subnet key every allocation checks, put on `s`; its revision.
async fn add_subnet(s: &EtcdStore) -> u64 {
    revisions(&[s
        .commit(Txn::default().put("s/z1", b"subnet".to_vec()))
        .await
        .unwrap()])[0]
}

/// The revisions among `revs`, each once, ascending: one per etcd transaction.
fn distinct_of(revs: &[u64]) -> Vec<u64> {
    let mut d = revs.to_vec();
    d.sort_unstable();
    d.dedup();
    d
}

#[tokio::test]
async fn commits_waiting_together_share_one_etcd_transaction_and_are_watched_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), None);
    let s = Arc::new(store(&options(&etcd, "/nethouse/")).await);
    let subnet = add_subnet(&s).await;
    let mut w = s.watch(subnet).await.unwrap();
    let revs = revisions(&allocate_at_once(&s, 64, subnet).await);
    let distinct = distinct_of(&revs);
    // One etcd transaction each would be 64 revisions; waiting ones go together.
    assert!(
        distinct.len() <= 8,
        "{} revisions: {distinct:?}",
        distinct.len()
    );
    assert_eq!(
        etcd.revision(),
        subnet + distinct.len() as u64,
        "etcd's revision moved once per group"
    );
    // Each revision is watched once, with the keys of every commit at it.
    let mut want: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (i, r) in revs.iter().enumerate() {
        let keys = want.entry(*r).or_default();
        keys.push(format!("i/{i}"));
        keys.push(format!("l/{i}"));
    }
    for (rev, mut keys) in want {
        let c = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let mut got: Vec<String> = c.changes.into_iter().map(|c| c.key).collect();
        got.sort();
        keys.sort();
        assert_eq!((c.revision, got), (rev, keys));
    }
}

/// etcd counts a transaction's ops as the most of its compares, success ops and failure ops,
/// and a nested transaction against the limit minus its parent's count: a group of `n` members
/// fits when `n` plus its largest member's count is at most `--max-txn-ops`, however many ops
/// the members hold together. Measured here on both sides of the edge, with the groups
/// `batch` makes.
#[tokio::test]
async fn groups_fit_etcds_max_txn_ops_as_etcd_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), None);
    let mut client = Client::connect([etcd.url.as_str()], None).await.unwrap();
    // Members of 28 puts each: 100 of them count 100 + 28 = 128, etcd's default limit.
    let member = |g: usize, i: usize| {
        let mut t = Txn::default();
        for k in 0..28 {
            t = t.put(format!("m/{g}/{i}/{k}"), vec![0]);
        }
        t
    };
    let waiting: Vec<Txn> = (0..101).map(|i| member(0, i)).collect();
    let group = batch::next_group(waiting.iter(), Limits::default());
    assert_eq!(group.len(), 100, "the most that fit");
    let taken: Vec<&Txn> = group.iter().map(|&i| &waiting[i]).collect();
    let resp = client
        .txn(txn::group_to_etcd(taken.iter().copied(), "/p/"))
        .await
        .expect("2,800 puts in 100 nested transactions: within the limit as etcd counts");
    let outcomes = txn::group_outcomes(taken.iter().copied(), "/p/", &resp);
    let at = resp.header().unwrap().revision() as u64;
    assert!(outcomes.iter().all(|o| *o == Some(Outcome::Committed(at))));

    let one_more: Vec<Txn> = (0..101).map(|i| member(1, i)).collect();
    let refused = client
        .txn(txn::group_to_etcd(one_more.iter(), "/p/"))
        .await
        .expect_err("101 + 28 = 129 is one past the limit");
    assert!(
        refused.to_string().contains("too many operations"),
        "{refused}"
    );
}

/// A group etcd refuses as a whole (here its `--max-txn-ops` is below what NetHouse was told)
/// applied nothing: each commit is sent again alone and gets its own answer.
#[tokio::test]
async fn a_group_etcd_refuses_is_sent_commit_by_commit() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start_with(dir.path(), None, &["--max-txn-ops=8"]);
    let s = Arc::new(store(&options(&etcd, "/nethouse/")).await);
    let subnet = add_subnet(&s).await;
    let revs = revisions(&allocate_at_once(&s, 32, subnet).await);
    let distinct = distinct_of(&revs);
    assert_eq!(distinct.len(), 32, "each alone: {revs:?}");

    // Told etcd's limit, the store groups within it.
    let mut opts = options(&etcd, "/told/");
    opts.max_txn_ops = 8;
    let s = Arc::new(store(&opts).await);
    let subnet = add_subnet(&s).await;
    let revs = revisions(&allocate_at_once(&s, 32, subnet).await);
    let distinct = distinct_of(&revs);
    // 5 members of 3 fit in 8: 32 commits in 7 groups (or a few more, as they arrive).
    assert!(distinct.len() < 16, "{distinct:?}");
}

/// A group whose answer never comes (etcd frozen past the request timeout): every member's
/// outcome is unknown, and says so, as one commit's would.
#[tokio::test]
async fn a_group_whose_answer_is_lost_leaves_every_outcome_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), None);
    let mut opts = options(&etcd, "/nethouse/");
    opts.request_timeout = Duration::from_millis(500);
    let s = Arc::new(store(&opts).await);
    s.commit(Txn::default().put("warm", vec![])).await.unwrap();
    etcd.pause(true);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.commit(alloc(i, 1)).await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    etcd.pause(false);
    for a in answers {
        let e = a.expect_err("no answer from a frozen etcd");
        assert!(
            e.to_string().contains("may or may not have been applied"),
            "{e}"
        );
    }
}

/// The sizes of the commits a store reports.
#[derive(Default)]
struct Sizes(Mutex<Vec<usize>>);

impl StoreObserver for Sizes {
    fn commit(&self, _took: Duration, transactions: usize) {
        self.0.lock().unwrap().push(transactions);
    }
    fn failure(&self, _kind: FailureKind) {}
    fn reopened(&self) {}
    fn healthy(&self, _healthy: bool) {}
}

/// Each group is reported as one commit of its size (the store's commit metrics), as the
/// embedded store reports its group commits.
#[tokio::test]
async fn each_group_is_reported_as_one_commit_of_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), None);
    let sizes = Arc::new(Sizes::default());
    let s = EtcdStore::connect(&options(&etcd, "/nethouse/"), Some(sizes.clone()))
        .await
        .unwrap();
    let s = Arc::new(s);
    let subnet = add_subnet(&s).await;
    let revs = revisions(&allocate_at_once(&s, 64, subnet).await);
    let distinct = distinct_of(&revs);
    let reported = sizes.0.lock().unwrap().clone();
    assert_eq!(reported.iter().sum::<usize>(), 65, "{reported:?}");
    assert_eq!(reported.len(), 1 + distinct.len(), "{reported:?}");
}

/// Under load a group is gathered before it is sent: after a group of 4, a commit waits for
/// the 4 that follow it 50 ms later and goes to etcd with them (one group of 5), where it went
/// alone before. After a group of one, nothing waits: a lone commit is not slowed down.
#[tokio::test]
async fn after_a_group_the_next_is_gathered_and_a_lone_commit_never_waits() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), None);
    let sizes = Arc::new(Sizes::default());
    let mut opts = options(&etcd, "/nethouse/");
    // Long, so that the test does not depend on timing: the commits it waits for come 50 ms
    // later; the default is 2 ms.
    opts.group_wait = Duration::from_millis(400);
    let s = Arc::new(
        EtcdStore::connect(&opts, Some(sizes.clone()))
            .await
            .unwrap(),
    );
    let subnet = add_subnet(&s).await;
    let later = |from: usize, n: usize, after: Duration| {
        let s = s.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let tasks: Vec<_> = (from..from + n)
                .map(|i| {
                    let s = s.clone();
                    tokio::spawn(async move { s.commit(alloc(i, subnet)).await.unwrap() })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        })
    };

    // A lone commit after a lone commit: sent at once.
    let started = std::time::Instant::now();
    s.commit(alloc(100, subnet)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );

    // Four at once: the first goes alone (nothing in flight), the others as one group.
    let (first, rest) = (
        later(0, 1, Duration::ZERO),
        later(1, 3, Duration::from_millis(1)),
    );
    first.await.unwrap();
    rest.await.unwrap();
    let before = sizes.0.lock().unwrap().clone();
    let last = *before.last().unwrap();
    assert!(last > 1, "a group of more than one first: {before:?}");

    // One commit now and `last` more 50 ms later: one group.
    let (one, more) = (
        later(10, 1, Duration::ZERO),
        later(11, last, Duration::from_millis(50)),
    );
    one.await.unwrap();
    more.await.unwrap();
    let after = sizes.0.lock().unwrap()[before.len()..].to_vec();
    assert_eq!(
        after,
        vec![last + 1],
        "one gathered group, in {before:?} then {after:?}"
    );
}
