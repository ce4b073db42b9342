//! Mutual TLS: with a client CA, only a client presenting a certificate that CA signed is
//! served; one without a certificate, or with another CA's, is refused at the handshake.

use axum::Router;
use axum::routing::get;
use nethouse_runtime::serve::{Http, serve};
use nethouse_runtime::tls::Tls;

#[path = "../../nethouse/tests/common/pki.rs"]
mod pki;

fn client(
    ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let mut b = reqwest::Client::builder().tls_certs_only([ca]);
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend(std::fs::read(key).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test]
async fn only_clients_with_a_certificate_of_the_client_ca_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki::tls_files(dir.path());
    let (scheduler_crt, scheduler_key) = pki::client_files(dir.path(), "kube-scheduler");
    let other = tempfile::tempdir().unwrap();
    pki::tls_files(other.path());
    let (stranger_crt, stranger_key) = pki::client_files(other.path(), "stranger");

    let tls = Tls {
        cert,
        key,
        client_ca: Some(ca.clone()),
    };
    let app = Router::new().route("/filter", get(|| async { "decided" }));
    let s = serve(
        app,
        "127.0.0.1:0".parse().unwrap(),
        Some(&tls),
        &Http::default(),
    )
    .await
    .unwrap();
    let url = format!("https://{}/filter", s.addr);

    let ok = client(&ca, Some((&scheduler_crt, &scheduler_key)))
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.text().await.unwrap(), "decided");
    assert!(
        client(&ca, None).get(&url).send().await.is_err(),
        "no client certificate"
    );
    assert!(
        client(&ca, Some((&stranger_crt, &stranger_key)))
            .get(&url)
            .send()
            .await
            .is_err(),
        "another CA's client certificate"
    );

    // A client CA file that is missing, or holds no certificate, is named.
    for (bad, why) in [
        (dir.path().join("missing.pem"), "--tls-client-ca"),
        (dir.path().join("ext"), "no certificate in it"),
    ] {
        let tls = Tls {
            client_ca: Some(bad),
            ..tls.clone()
        };
        let e = serve(
            Router::new(),
            "127.0.0.1:0".parse().unwrap(),
            Some(&tls),
            &Http::default(),
        )
        .await
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains(why), "{e}");
    }
}
