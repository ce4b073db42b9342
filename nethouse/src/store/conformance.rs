//! One suite every [`Store`] must pass: the semantics the IPAM relies on.

use std::future::Future;
use std::sync::Arc;

use super::{Expect, Outcome, Store, Txn};

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
