//! One suite every [`Store`] must pass: the semantics the IPAM relies on.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{Change, Changes, Expect, Outcome, Revision, Store, StoreError, Txn, Watch};

fn committed(o: Outcome) -> u64 {
    match o {
        Outcome::Committed(r) => r,
        other => panic!("expected a commit, got {other:?}"),
    }
}

pub async fn run<S: Store, F: Future<Output = S>>(mut make: impl FnMut() -> F) {
    reserve_if_free(make().await).await;
    compare_and_swap(make().await).await;
    all_or_nothing(make().await).await;
    scan_by_prefix(make().await).await;
    delete_then_reserve(make().await).await;
    concurrent_reservers_have_one_winner(Arc::new(make().await)).await;
    watch_sees_each_commit_once(make().await).await;
    watch_from_an_old_revision_replays_or_says_compacted(make().await).await;
    concurrent_commits_are_watched_in_revision_order(Arc::new(make().await)).await;
}

/// The next item of `w`, failing the test after a few seconds instead of hanging it.
async fn next(w: &mut Watch) -> Option<Result<Changes, StoreError>> {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("no change watched within 10 s")
}

fn put(key: &str, value: &[u8]) -> Change {
    Change {
        key: key.into(),
        value: Some(value.to_vec()),
    }
}

async fn watch_sees_each_commit_once(s: impl Store) {
    let start = s.revision().await.unwrap();
    let mut w = s.watch(start).await.unwrap();
    let r1 = committed(
        s.commit(
            Txn::default()
                .check("w/a", Expect::Absent)
                .put("w/a", b"1".to_vec())
                .put("w/b", b"2".to_vec()),
        )
        .await
        .unwrap(),
    );
    assert!(r1 > start);
    assert_eq!(s.revision().await.unwrap(), r1);
    // A lost race and a delete of a missing key write nothing: nothing is watched.
    let lost = s
        .commit(
            Txn::default()
                .check("w/a", Expect::Absent)
                .put("w/a", b"x".to_vec()),
        )
        .await
        .unwrap();
    assert!(matches!(lost, Outcome::Conflict { .. }));
    let _ = s.commit(Txn::default().delete("w/missing")).await.unwrap();
    let r2 = committed(
        s.commit(
            Txn::default()
                .check("w/a", Expect::Revision(r1))
                .delete("w/a"),
        )
        .await
        .unwrap(),
    );
    let r3 = committed(
        s.commit(Txn::default().put("w/c", b"3".to_vec()))
            .await
            .unwrap(),
    );
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next(&mut w).await.unwrap().unwrap());
    }
    let mut first = got[0].changes.clone();
    first.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        (got[0].revision, first),
        (r1, vec![put("w/a", b"1"), put("w/b", b"2")])
    );
    assert_eq!(
        got[1],
        Changes {
            revision: r2,
            changes: vec![Change {
                key: "w/a".into(),
                value: None
            }]
        }
    );
    assert_eq!(
        got[2],
        Changes {
            revision: r3,
            changes: vec![put("w/c", b"3")]
        }
    );
    // Nothing more: each commit was seen once.
    let more = tokio::time::timeout(Duration::from_millis(300), w.next()).await;
    assert!(more.is_err(), "an extra item: {more:?}");
}

async fn watch_from_an_old_revision_replays_or_says_compacted(s: impl Store) {
    let start = s.revision().await.unwrap();
    let mut revs = Vec::new();
    for k in ["o/1", "o/2", "o/3"] {
        revs.push(committed(
            s.commit(Txn::default().put(k, b"v".to_vec()))
                .await
                .unwrap(),
        ));
    }
    let mut w = match s.watch(start).await {
        Ok(w) => w,
        Err(StoreError::Compacted { after, .. }) => {
            assert_eq!(after, start);
            return;
        }
        Err(e) => panic!("watch from an old revision: {e}"),
    };
    let mut seen = Vec::new();
    for _ in 0..3 {
        match next(&mut w).await.unwrap() {
            Ok(c) => seen.push(c.revision),
            Err(StoreError::Compacted { .. }) if seen.is_empty() => return,
            Err(e) => panic!("replaying: {e}"),
        }
    }
    assert_eq!(seen, revs, "the replay, in revision order");
    let live = committed(
        s.commit(Txn::default().put("o/4", b"v".to_vec()))
            .await
            .unwrap(),
    );
    assert_eq!(next(&mut w).await.unwrap().unwrap().revision, live);
}

/// Fills the store past what `compact` makes it forget, then a watch from before that must say
/// so — at once or as its first item — rather than skip changes.
pub async fn old_watch_is_compacted<S: Store, F: Future<Output = ()>>(
    s: &S,
    compact: impl FnOnce(Revision) -> F,
) {
    let start = s.revision().await.unwrap();
    let mut last = start;
    for i in 0..5 {
        last = committed(
            s.commit(Txn::default().put(format!("c/{i}"), b"v".to_vec()))
                .await
                .unwrap(),
        );
    }
    compact(last).await;
    match s.watch(start).await {
        Err(StoreError::Compacted { after, .. }) => assert_eq!(after, start),
        Err(e) => panic!("expected compacted, got {e}"),
        Ok(mut w) => match next(&mut w).await {
            Some(Err(StoreError::Compacted { .. })) => {}
            other => panic!("expected compacted, got {other:?}"),
        },
    }
    // From the latest revision a watch works again.
    let mut w = s.watch(last).await.unwrap();
    let r = committed(
        s.commit(Txn::default().put("c/after", b"v".to_vec()))
            .await
            .unwrap(),
    );
    assert_eq!(next(&mut w).await.unwrap().unwrap().revision, r);
}

async fn concurrent_commits_are_watched_in_revision_order<S: Store>(s: Arc<S>) {
    let start = s.revision().await.unwrap();
    let mut w = s.watch(start).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            committed(
                s.commit(Txn::default().put(format!("p/{i}"), vec![i]))
                    .await
                    .unwrap(),
            )
        }));
    }
    let mut revs = Vec::new();
    for t in tasks {
        revs.push(t.await.unwrap());
    }
    revs.sort_unstable();
    let mut seen = Vec::new();
    for _ in 0..16 {
        seen.push(next(&mut w).await.unwrap().unwrap().revision);
    }
    assert_eq!(seen, revs, "each commit once, in revision order");
}

async fn reserve_if_free(s: impl Store) {
    let r1 = committed(
        s.commit(
            Txn::default()
                .check("ip/1", Expect::Absent)
                .put("ip/1", b"a".to_vec()),
        )
        .await
        .unwrap(),
    );
    let again = s
        .commit(
            Txn::default()
                .check("ip/1", Expect::Absent)
                .put("ip/1", b"b".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(again, Outcome::Conflict { key: "ip/1".into() });
    let v = s.get("ip/1").await.unwrap().unwrap();
    assert_eq!((v.value.as_slice(), v.revision), (&b"a"[..], r1));
    assert_eq!(s.get("ip/2").await.unwrap(), None);
}

async fn compare_and_swap(s: impl Store) {
    let r1 = committed(
        s.commit(Txn::default().put("k", b"1".to_vec()))
            .await
            .unwrap(),
    );
    let r2 = committed(
        s.commit(
            Txn::default()
                .check("k", Expect::Revision(r1))
                .put("k", b"2".to_vec()),
        )
        .await
        .unwrap(),
    );
    assert!(r2 > r1);
    // A writer holding the old revision loses.
    let stale = s
        .commit(
            Txn::default()
                .check("k", Expect::Revision(r1))
                .put("k", b"3".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(stale, Outcome::Conflict { key: "k".into() });
    assert_eq!(s.get("k").await.unwrap().unwrap().value, b"2");
    // Expecting a revision of a missing key fails.
    let missing = s
        .commit(
            Txn::default()
                .check("nope", Expect::Revision(r1))
                .put("nope", vec![]),
        )
        .await
        .unwrap();
    assert_eq!(missing, Outcome::Conflict { key: "nope".into() });
}

async fn all_or_nothing(s: impl Store) {
    committed(
        s.commit(Txn::default().put("taken", b"x".to_vec()))
            .await
            .unwrap(),
    );
    let out = s
        .commit(
            Txn::default()
                .check("free", Expect::Absent)
                .check("taken", Expect::Absent)
                .put("free", b"y".to_vec())
                .delete("taken"),
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        Outcome::Conflict {
            key: "taken".into()
        }
    );
    assert_eq!(
        s.get("free").await.unwrap(),
        None,
        "no op of a failed transaction may apply"
    );
    assert!(s.get("taken").await.unwrap().is_some());
}

async fn scan_by_prefix(s: impl Store) {
    for k in ["a/2", "a/1", "b/1", "a", "ab/1"] {
        committed(
            s.commit(Txn::default().put(k, k.as_bytes().to_vec()))
                .await
                .unwrap(),
        );
    }
    let keys: Vec<String> = s
        .scan("a/")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec!["a/1", "a/2"]);
    assert_eq!(s.scan("").await.unwrap().len(), 5);
    assert!(s.scan("zzz").await.unwrap().is_empty());
}

async fn delete_then_reserve(s: impl Store) {
    let r = committed(
        s.commit(Txn::default().put("k", b"1".to_vec()))
            .await
            .unwrap(),
    );
    committed(
        s.commit(Txn::default().check("k", Expect::Revision(r)).delete("k"))
            .await
            .unwrap(),
    );
    assert_eq!(s.get("k").await.unwrap(), None);
    committed(
        s.commit(
            Txn::default()
                .check("k", Expect::Absent)
                .put("k", b"2".to_vec()),
        )
        .await
        .unwrap(),
    );
}

async fn concurrent_reservers_have_one_winner<S: Store>(s: Arc<S>) {
    let mut tasks = Vec::new();
    for i in 0..32u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.commit(
                Txn::default()
                    .check("contended", Expect::Absent)
                    .put("contended", vec![i]),
            )
            .await
            .unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), Outcome::Committed(_)) {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}
