//! The etcd store against a real etcd (Debian's etcd-server, one member on loopback): the
//! conformance suite every store passes, paged scans, TLS with a client certificate, etcd's
//! auth, and readiness that follows etcd.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{EtcdOptions, EtcdStore, EtcdTls};
use crate::store::{Expect, Outcome, Store, Txn};

#[path = "../../../tests/common/etcd.rs"]
mod etcd_process;
#[path = "../../../tests/common/pki.rs"]
mod pki;

// Also the IPAM's tests on etcd (`ipam::removal_tests`): a file is one module once.
pub(crate) use etcd_process::Etcd;
use etcd_process::EtcdTlsFiles;

pub(super) fn options(etcd: &Etcd, prefix: &str) -> EtcdOptions {
    EtcdOptions::new(std::slice::from_ref(&etcd.url), prefix, None, None).unwrap()
}

pub(super) async fn store(opts: &EtcdOptions) -> EtcdStore {
    EtcdStore::connect(opts, None).await.unwrap()
}

#[tokio::test]
async fn conformance() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), None);
    // One etcd, a prefix per case: the prefix is all that keeps installs apart.
    let n = AtomicUsize::new(0);
    crate::store::conformance::run(|| {
        let opts = options(
            &etcd,
            &format!("/case{}/", n.fetch_add(1, Ordering::SeqCst)),
        );
        async move { store(&opts).await }
    })
    .await;
    let s = store(&options(&etcd, "/compacted/")).await;
    let e = &etcd;
    crate::store::conformance::old_watch_is_compacted(&s, |rev| async move {
        e.compact(rev);
    })
    .await;
}

#[tokio::test]
async fn scans_come_in_pages_of_one_snapshot_and_stay_under_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), None);
    let s = store(&options(&etcd, "/a/")).await;
    // Another install whose prefix starts like this one's.
    let other = store(&options(&etcd, "/ab/")).await;
    // More than two pages; etcd takes at most 128 ops per transaction.
    let n = 2 * super::SCAN_PAGE as usize + 345;
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let mut t = Txn::default();
        for i in chunk {
            t = t.put(format!("k/{i:05}"), i.to_string().into_bytes());
        }
        assert!(matches!(s.commit(t).await.unwrap(), Outcome::Committed(_)));
    }
    other
        .commit(Txn::default().put("k/x", b"theirs".to_vec()))
        .await
        .unwrap();
    let all = s.scan("k/").await.unwrap();
    assert_eq!(all.len(), n);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "in key order");
    assert_eq!(all[n - 1].0, format!("k/{:05}", n - 1));
    assert_eq!(all[7].1.value, b"7");
    let everything = s.scan("").await.unwrap();
    assert_eq!(everything.len(), n, "only this prefix's keys");
    assert_eq!(s.get("k/00007").await.unwrap().unwrap().value, b"7");
    assert_eq!(
        etcd.etcdctl(&["get", "/a/k/00007", "--print-value-only"])
            .trim(),
        "7",
        "stored under the prefix, as etcdctl sees it"
    );
}

/// etcd with TLS that requires a client certificate: the store connects with the CA and a
/// certificate; without the certificate, or without the CA, it cannot.
#[tokio::test]
async fn tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    std::fs::create_dir_all(&pki_dir).unwrap();
    let (ca, cert, key) = pki::tls_files(&pki_dir);
    let (client_cert, client_key) = pki::client_files(&pki_dir, "nethouse");
    let etcd = Etcd::start(
        &dir.path().join("etcd"),
        Some(EtcdTlsFiles {
            ca: ca.clone(),
            cert,
            key,
            client_cert: client_cert.clone(),
            client_key: client_key.clone(),
        }),
    );
    assert!(etcd.url.starts_with("https://"));
    let with = |tls: EtcdTls| {
        let mut o = options(&etcd, "/nethouse/");
        o.tls = Some(tls);
        o.request_timeout = Duration::from_secs(3);
        o
    };
    let s = store(&with(EtcdTls {
        ca_file: Some(ca.clone()),
        identity: Some((client_cert.clone(), client_key.clone())),
    }))
    .await;
    let mut w = s.watch(s.revision().await.unwrap()).await.unwrap();
    let Outcome::Committed(r) = s
        .commit(
            Txn::default()
                .check("k", Expect::Absent)
                .put("k", b"v".to_vec()),
        )
        .await
        .unwrap()
    else {
        panic!("conflict on an empty store")
    };
    assert_eq!(s.get("k").await.unwrap().unwrap().revision, r);
    assert_eq!(w.next().await.unwrap().unwrap().revision, r);

    for (what, tls) in [
        (
            "no client certificate",
            EtcdTls {
                ca_file: Some(ca.clone()),
                identity: None,
            },
        ),
        (
            "no CA",
            EtcdTls {
                ca_file: None,
                identity: Some((client_cert.clone(), client_key.clone())),
            },
        ),
    ] {
        // The channel connects lazily: the refusal shows on the first call.
        let refused = match EtcdStore::connect(&with(tls), None).await {
            Err(e) => e.to_string(),
            Ok(s) => s.get("k").await.unwrap_err().to_string(),
        };
        assert!(!refused.is_empty(), "{what}");
    }
    let e = EtcdStore::connect(
        &with(EtcdTls {
            ca_file: Some(dir.path().join("missing.crt")),
            identity: None,
        }),
        None,
    )
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(e.starts_with("--etcd-ca-file "), "{e}");
}

/// etcd's auth on: the store's user reads and writes under its prefix; a wrong password is
/// refused when connecting, naming etcd.
#[tokio::test]
async fn auth_with_a_user_and_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(dir.path(), None);
    etcd.enable_auth("nethouse", "s3cret", "/nethouse/");
    let mut opts = options(&etcd, "/nethouse/");
    opts.user = Some(("nethouse".into(), "s3cret".into()));
    let s = store(&opts).await;
    let start = s.revision().await.unwrap();
    let mut w = s.watch(start).await.unwrap();
    let Outcome::Committed(r) = s.commit(Txn::default().put("l/x", vec![1])).await.unwrap() else {
        panic!("conflict without checks")
    };
    assert_eq!(s.scan("l/").await.unwrap().len(), 1);
    assert_eq!(w.next().await.unwrap().unwrap().revision, r);

    // The same user under a prefix it has no permission for.
    let mut elsewhere = opts.clone();
    elsewhere.prefix = "/other/".into();
    let denied = store(&elsewhere)
        .await
        .commit(Txn::default().put("k", vec![]))
        .await
        .unwrap_err()
        .to_string();
    assert!(denied.contains("permission denied"), "{denied}");

    opts.user = Some(("nethouse".into(), "wrong".into()));
    let e = EtcdStore::connect(&opts, None)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("connecting to etcd at ") && e.contains("authentication failed"),
        "{e}"
    );
}

/// etcd stops answering (SIGSTOP): the store reports itself failing within seconds — what
/// `/readyz` answers from — and healthy again once etcd answers.
#[tokio::test]
async fn health_follows_whether_etcd_answers() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), None);
    let mut opts = options(&etcd, "/nethouse/");
    opts.request_timeout = Duration::from_secs(1);
    let s = store(&opts).await;
    s.get("x").await.unwrap();
    assert!(s.health().failing.is_none());
    let mut health = s.watch_health().unwrap();
    etcd.pause(true);
    let stopped = Instant::now();
    let failing = tokio::time::timeout(
        Duration::from_secs(15),
        health.wait_for(|h| h.failing.is_some()),
    )
    .await
    .expect("the store noticed etcd stopped answering")
    .unwrap()
    .clone();
    let f = failing.failing.unwrap();
    assert!(f.cause.contains("etcd cannot be reached"), "{}", f.cause);
    let noticed = stopped.elapsed();
    etcd.pause(false);
    tokio::time::timeout(
        Duration::from_secs(15),
        health.wait_for(|h| h.failing.is_none()),
    )
    .await
    .expect("the store noticed etcd answers again")
    .unwrap();
    eprintln!("etcd paused: failing after {noticed:?}, healthy again after resuming");
    s.get("x").await.unwrap();
}
