//! The etcd store when one of its members fails, against a real etcd and stand-ins for the
//! failed member: an endpoint that refuses connections (a member that died) and one that
//! accepts them and answers nothing (a frozen member: SIGSTOP, a cut network). And which member
//! a store asks when all answer: etcd's leader.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use super::tests::{Etcd, options, store};
use super::watch::QUIET;
use crate::store::{Outcome, Store, StoreError, Txn};

/// An endpoint nothing listens on: connecting is refused.
pub(super) fn refusing() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

/// An endpoint that accepts connections (the kernel's backlog) and never answers.
fn silent() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

/// A member that died: every call goes through the other, none fails, and the store never
/// reports etcd unreachable (`/readyz` stays 200).
#[tokio::test]
async fn a_member_that_refuses_connections_is_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), None);
    let mut opts = options(&etcd, "/nethouse/");
    opts.endpoints = vec![refusing(), etcd.url.clone()];
    let s = store(&opts).await;
    let health = s.watch_health().unwrap();
    for i in 0..30 {
        let key = format!("k{i}");
        let Outcome::Committed(r) = s
            .commit(Txn::default().put(&key, vec![1]))
            .await
            .unwrap_or_else(|e| panic!("commit {i}: {e}"))
        else {
            panic!("conflict without checks")
        };
        let got = s.get(&key).await.unwrap_or_else(|e| panic!("get {i}: {e}"));
        assert_eq!(got.map(|v| v.revision), Some(r));
    }
    assert!(!health.has_changed().unwrap(), "{:?}", s.health());
}

/// A member that answers nothing: a read costs at most one request timeout (then the next
/// member answers it), a commit at most one unknown outcome; after that the member is passed
/// over and every call is fast.
#[tokio::test]
async fn a_member_that_answers_nothing_costs_one_timeout_then_is_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), None);
    let (_held, url) = silent();
    let mut opts = options(&etcd, "/nethouse/");
    opts.endpoints = vec![url.clone(), etcd.url.clone()];
    opts.request_timeout = Duration::from_millis(500);
    let s = store(&opts).await;
    let mut slow = 0;
    for i in 0..10 {
        let t = Instant::now();
        s.get("x").await.unwrap_or_else(|e| panic!("get {i}: {e}"));
        if t.elapsed() >= Duration::from_millis(400) {
            slow += 1;
        }
    }
    assert!(slow <= 1, "{slow} reads waited for the silent member");

    let s = store(&opts).await;
    let mut unknown = Vec::new();
    for i in 0..10 {
        match s.commit(Txn::default().put(format!("c{i}"), vec![1])).await {
            Ok(_) => {}
            Err(e) => unknown.push(e.to_string()),
        }
    }
    assert!(unknown.len() <= 1, "{unknown:?}");
    for e in &unknown {
        assert!(
            e.contains(&url) && e.contains("may or may not have been applied"),
            "{e}"
        );
    }
}

/// The member a watch is on stops answering (SIGSTOP): the watch ends with an error within
/// seconds, so the follower watches again elsewhere, instead of waiting, its view going stale,
/// for as long as the member stays frozen.
#[tokio::test]
async fn a_watch_on_a_member_that_stops_answering_ends_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), None);
    let mut opts = options(&etcd, "/nethouse/");
    opts.request_timeout = Duration::from_secs(1);
    let s = store(&opts).await;
    let mut w = s.watch(s.revision().await.unwrap()).await.unwrap();
    s.commit(Txn::default().put("k", vec![1])).await.unwrap();
    w.next().await.unwrap().unwrap();
    // Quiet for longer than QUIET: the member is asked for progress, and answers.
    let quiet = tokio::time::timeout(QUIET * 3, w.next()).await;
    assert!(quiet.is_err(), "a live, quiet watch goes on: {quiet:?}");

    etcd.pause(true);
    let stopped = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(8), w.next()).await;
    let took = stopped.elapsed();
    etcd.pause(false);
    match ended {
        Ok(Some(Err(StoreError::Read { message, .. }))) => {
            assert!(message.contains("did not answer"), "{message}")
        }
        other => panic!("after {took:?}: {other:?}"),
    }
    assert!(
        took < QUIET + opts.request_timeout + Duration::from_secs(1),
        "noticed after {took:?}"
    );
}

/// With several members, requests go to etcd's leader (a commit sent to a follower is
/// forwarded to it and answered only once the follower applied it too), whichever member a
/// replica started at.
#[tokio::test]
async fn requests_go_to_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let members = Etcd::cluster(dir.path(), 3);
    let leader = members
        .iter()
        .position(Etcd::is_leader)
        .expect("a leader among the members");
    let mut opts = options(&members[0], "/nethouse/");
    opts.endpoints = members.iter().map(|m| m.url.clone()).collect();
    // Each store starts at a random member: five all starting at the leader is a 1 in 243 chance.
    for n in 0..5 {
        let s = store(&opts).await;
        let asked = Instant::now();
        while s.conn.members.order()[0] != leader {
            assert!(
                asked.elapsed() < Duration::from_secs(5),
                "store {n} still asks member {} first, not the leader {leader}",
                s.conn.members.order()[0]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let out = s.commit(Txn::default().put(format!("k{n}"), vec![1]));
        assert!(matches!(out.await.unwrap(), Outcome::Committed(_)));
    }
}
