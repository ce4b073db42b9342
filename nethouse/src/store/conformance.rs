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
    concurrent_independent_commits_each_get_their_own_outcome(Arc::new(make().await)).await;
    a_conflict_fails_alone_among_concurrent_commits(Arc::new(make().await)).await;
    dependent_concurrent_commits_are_ordered(Arc::new(make().await)).await;
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

/// Concurrent commits: each is watched once, at the revision its commit answered, in revision
/// order. Commits a store committed together share a revision and come as one [`Changes`].
async fn concurrent_commits_are_watched_in_revision_order<S: Store>(s: Arc<S>) {
    let start = s.revision().await.unwrap();
    let mut w = s.watch(start).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let r = committed(
                s.commit(Txn::default().put(format!("p/{i}"), vec![i]))
                    .await
                    .unwrap(),
            );
            (r, put(&format!("p/{i}"), &[i]))
        }));
    }
    let mut want: Vec<(Revision, Change)> = Vec::new();
    for t in tasks {
        want.push(t.await.unwrap());
    }
    let mut seen: Vec<(Revision, Change)> = Vec::new();
    let mut last = start;
    while seen.len() < want.len() {
        let c = next(&mut w).await.unwrap().unwrap();
        assert!(c.revision > last, "in revision order, each revision once");
        last = c.revision;
        seen.extend(c.changes.into_iter().map(|ch| (c.revision, ch)));
    }
    let by_key = |v: &mut Vec<(Revision, Change)>| v.sort_by(|a, b| a.1.key.cmp(&b.1.key));
    by_key(&mut want);
    by_key(&mut seen);
    assert_eq!(seen, want, "each commit once, at its revision");
    let more = tokio::time::timeout(Duration::from_millis(300), w.next()).await;
    assert!(more.is_err(), "an extra item: {more:?}");
}

/// Many commits at once on keys of their own, each checking one: every one commits, and each
/// key carries the revision its own commit answered (several may share one).
async fn concurrent_independent_commits_each_get_their_own_outcome<S: Store>(s: Arc<S>) {
    let tasks: Vec<_> = (0..64u8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let key = format!("g/{i}");
                let out = s
                    .commit(
                        Txn::default()
                            .check(&key, Expect::Absent)
                            .check("g/shared", Expect::Absent)
                            .put(&key, vec![i]),
                    )
                    .await
                    .unwrap();
                (key, i, committed(out))
            })
        })
        .collect();
    for t in tasks {
        let (key, i, rev) = t.await.unwrap();
        let v = s.get(&key).await.unwrap().unwrap();
        assert_eq!((v.value, v.revision), (vec![i], rev), "{key}");
    }
}

/// Among many commits at once, the ones whose check fails lose alone: each names its own
/// failed check and writes nothing, every other commits.
async fn a_conflict_fails_alone_among_concurrent_commits<S: Store>(s: Arc<S>) {
    let taken = committed(
        s.commit(Txn::default().put("f/taken", b"x".to_vec()))
            .await
            .unwrap(),
    );
    let tasks: Vec<_> = (0..48u8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let key = format!("f/{i}");
                let mut t = Txn::default().check(&key, Expect::Absent);
                // Every eighth one expects what is not there (the first check holds).
                let loses = i % 8 == 3;
                if loses {
                    t = t.check("f/taken", Expect::Absent);
                }
                let t = t
                    .check("f/taken", Expect::Revision(taken))
                    .put(&key, vec![i]);
                (key, loses, s.commit(t).await.unwrap())
            })
        })
        .collect();
    for t in tasks {
        let (key, loses, out) = t.await.unwrap();
        if loses {
            assert_eq!(
                out,
                Outcome::Conflict {
                    key: "f/taken".into()
                },
                "{key}"
            );
            assert_eq!(s.get(&key).await.unwrap(), None, "{key}: nothing written");
        } else {
            let rev = committed(out);
            assert_eq!(s.get(&key).await.unwrap().unwrap().revision, rev, "{key}");
        }
    }
}

/// Commits at once that depend on each other behave as if one came after the other: of two
/// that each write the key the other expects absent, exactly one commits; commits writing one
/// key never share a revision.
async fn dependent_concurrent_commits_are_ordered<S: Store>(s: Arc<S>) {
    let mut pairs = Vec::new();
    for i in 0..16u8 {
        let (a, b) = (format!("d/{i}/a"), format!("d/{i}/b"));
        for (check, write) in [(a.clone(), b.clone()), (b, a)] {
            let s = s.clone();
            pairs.push(tokio::spawn(async move {
                let t = Txn::default()
                    .check(check, Expect::Absent)
                    .put(write, vec![i]);
                (i, s.commit(t).await.unwrap())
            }));
        }
    }
    let mut wins = [0u8; 16];
    for p in pairs {
        let (i, out) = p.await.unwrap();
        if matches!(out, Outcome::Committed(_)) {
            wins[usize::from(i)] += 1;
        }
    }
    assert_eq!(wins, [1; 16], "one commit of each pair");
    let same_key: Vec<_> = (0..16u8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                committed(
                    s.commit(Txn::default().put("d/same", vec![i]))
                        .await
                        .unwrap(),
                )
            })
        })
        .collect();
    let mut revs = Vec::new();
    for t in same_key {
        revs.push(t.await.unwrap());
    }
    revs.sort_unstable();
    revs.dedup();
    assert_eq!(revs.len(), 16, "writes of one key at 16 revisions");
    let last = s.get("d/same").await.unwrap().unwrap();
    assert_eq!(last.revision, revs[15], "the last write is the one kept");
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
