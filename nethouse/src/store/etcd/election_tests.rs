//! The etcd store while etcd has no leader, against a real 3-member etcd: with two members
//! frozen (SIGSTOP) the third has no quorum and refuses every request at once ("no leader"),
//! and the store's other endpoints are stand-ins for members that died (connections refused).
//! A call rides that out up to `--etcd-leader-wait` — a commit too, since such refusals
//! certainly did nothing — and only once every member refused for longer is etcd reported
//! unreachable.

use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

use super::EtcdOptions;
use super::failover_tests::refusing;
use super::tests::{Etcd, options, store};
use crate::store::{Outcome, Store, Txn};

/// Member 0 and two members that died, waiting for a leader up to `leader_wait`.
fn member_0_and_two_dead(members: &[Etcd], leader_wait: Duration) -> EtcdOptions {
    let mut opts = options(&members[0], "/nethouse/");
    opts.endpoints = vec![members[0].url.clone(), refusing(), refusing()];
    opts.leader_wait = leader_wait;
    opts
}

/// Freezes members 1 and 2, and returns once member 0 says it has no leader (until it notices,
/// 1-2 s, a request to it waits for the lost leader instead, and may time out).
async fn freeze_two(members: &[Etcd]) {
    members[1].pause(true);
    members[2].pause(true);
    let opts = ConnectOptions::new()
        .with_require_leader(true)
        .with_timeout(Duration::from_millis(500));
    let mut c = Client::connect([members[0].url.as_str()], Some(opts))
        .await
        .unwrap();
    let t = Instant::now();
    loop {
        let asked = tokio::time::timeout(Duration::from_secs(1), c.get("x", None)).await;
        match asked {
            Ok(Err(e)) if e.to_string().contains("no leader") => return,
            other => assert!(
                t.elapsed() < Duration::from_secs(15),
                "member 0 still has a leader: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// No leader; a commit and a read start; a member comes back a second later, etcd elects a
/// leader, and both calls are served — where they failed at once before the wait existed.
#[tokio::test]
async fn calls_wait_for_a_leader_while_every_member_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let members = Etcd::cluster(dir.path(), 3);
    let s = store(&member_0_and_two_dead(&members, Duration::from_secs(10))).await;
    s.commit(Txn::default().put("before", vec![1]))
        .await
        .unwrap();

    freeze_two(&members).await;
    let started = Instant::now();
    let thaw = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        members[1].pause(false);
    };
    let commit = s.commit(Txn::default().put("k", vec![2]));
    let (committed, read, ()) = tokio::join!(commit, s.get("before"), thaw);
    let took = started.elapsed();
    eprintln!("no leader: a commit and a read served after {took:?} (a member back after 1 s)");
    let Outcome::Committed(r) = committed.unwrap_or_else(|e| panic!("commit after {took:?}: {e}"))
    else {
        panic!("conflict without checks")
    };
    let read = read.unwrap_or_else(|e| panic!("read after {took:?}: {e}"));
    assert_eq!(read.map(|v| v.value), Some(vec![1]));
    assert!(
        took >= Duration::from_secs(1),
        "served before a leader: {took:?}"
    );
    assert_eq!(s.get("k").await.unwrap().map(|v| v.revision), Some(r));
    assert!(s.health().failing.is_none(), "{:?}", s.health());
}

/// No leader for good: a commit fails once every member refused for the bound (not at once,
/// and not later), saying nothing was applied; from then on etcd is reported unreachable and
/// calls fail at once, until a leader is back.
#[tokio::test]
async fn calls_give_up_after_the_leader_wait_and_etcd_is_then_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let members = Etcd::cluster(dir.path(), 3);
    let bound = Duration::from_secs(3);
    let s = store(&member_0_and_two_dead(&members, bound)).await;
    s.commit(Txn::default().put("before", vec![1]))
        .await
        .unwrap();

    freeze_two(&members).await;
    // The bound counts from the first round that found every member refusing, in any call:
    // the store's probe may have met one already.
    let refused_before = s.conn.reach.refusing_for().unwrap_or_default();
    let started = Instant::now();
    let e = s
        .commit(Txn::default().put("k", vec![2]))
        .await
        .unwrap_err()
        .to_string();
    let took = started.elapsed();
    eprintln!("no leader for good: a commit failed after {took:?}: {e}");
    let waited_for = bound.saturating_sub(refused_before);
    assert!(
        took + Duration::from_millis(50) >= waited_for
            && took < waited_for + Duration::from_secs(1),
        "failed after {took:?}, every member refusing for {refused_before:?} before: {e}"
    );
    for says in ["no leader", "--etcd-leader-wait", "was not applied"] {
        assert!(e.contains(says), "{says:?}: {e}");
    }
    // Past the bound: an outage (`/readyz` answers 503), and calls no longer wait.
    let f = s.health().failing.expect("etcd reported unreachable");
    assert!(f.cause.contains("etcd cannot be reached"), "{}", f.cause);
    let t = Instant::now();
    s.get("before").await.unwrap_err();
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );

    members[1].pause(false);
    members[2].pause(false);
    let t = Instant::now();
    while s.get("before").await.is_err() {
        assert!(t.elapsed() < Duration::from_secs(15), "no leader again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(s.health().failing.is_none(), "{:?}", s.health());
}
