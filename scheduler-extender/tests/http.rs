//! The HTTP surface: a malformed body is a 400 with a message (never a 5xx), `/readyz` waits
//! for synced caches, answers carry PascalCase keys, metrics count the calls.

use std::sync::{Arc, RwLock};

use nethouse_scheduler_extender::index::Index;
use nethouse_scheduler_extender::server::{Extender, router};

#[path = "../../nethouse/tests/common/pki.rs"]
mod pki;

#[tokio::test]
async fn http_surface() {
    let ext = Arc::new(Extender {
        view: RwLock::new(Index::default()),
        metrics: Default::default(),
        draining: Default::default(),
        limits: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(ext.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();

    assert_eq!(
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    ext.view.write().unwrap().set_synced(true);
    assert_eq!(
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let bad = http
        .post(format!("{url}/filter"))
        .body("{\"Pod\": 7}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("malformed request: Pod"));

    let ok = http
        .post(format!("{url}/filter"))
        .header("content-type", "application/json")
        .body(r#"{"Pod":{"metadata":{"name":"web-1","namespace":"web"}},"Nodes":null,"NodeNames":["n1"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let text = ok.text().await.unwrap();
    assert!(
        text.contains(r#""NodeNames":["n1"]"#)
            && text.contains(r#""FailedAndUnresolvableNodes":{}"#)
            && text.contains(r#""Error":"""#),
        "{text}"
    );

    let prio = http
        .post(format!("{url}/prioritize"))
        .body(r#"{"Pod":{"metadata":{"name":"w"}},"NodeNames":["n1"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(prio.text().await.unwrap(), r#"[{"Host":"n1","Score":0}]"#);

    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains(r#"nethouse_extender_requests_total{verb="filter",result="bad_request"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"nethouse_extender_requests_total{verb="filter",result="passthrough"} 1"#),
        "{metrics}"
    );

    // Stopping: /readyz turns 503 and says why, while the other endpoints still answer.
    ext.draining.start();
    let readyz = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 503);
    assert_eq!(readyz.text().await.unwrap(), "shutting down");
    assert_eq!(
        http.get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn serves_https_when_given_a_certificate() {
    let dir = std::env::temp_dir().join(format!("nh-ext-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = pki::tls_files(&dir);

    let ext = Arc::new(Extender {
        view: RwLock::new(Index::default()),
        metrics: Default::default(),
        draining: Default::default(),
        limits: Default::default(),
    });
    let serving = nethouse_runtime::serve::serve(
        router(ext),
        "127.0.0.1:0".parse().unwrap(),
        Some(&nethouse_runtime::tls::Tls::server(cert, key)),
        &Default::default(),
    )
    .await
    .unwrap();
    let addr = serving.addr;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let resp = https
        .get(format!("https://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await;
    assert!(
        plain.is_err() || plain.is_ok_and(|r| r.status() != 200),
        "plain HTTP must not be served on the TLS port"
    );
    drop(serving);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_naming_the_flag() {
    let ext = Arc::new(Extender {
        view: RwLock::new(Index::default()),
        metrics: Default::default(),
        draining: Default::default(),
        limits: nethouse_scheduler_extender::server::RequestLimits {
            max_body: 1000,
            ..Default::default()
        },
    });
    ext.view.write().unwrap().set_synced(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(ext.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let names: Vec<String> = (0..200).map(|i| format!("\"node-{i}\"")).collect();
    let body = format!(
        r#"{{"Pod":{{"metadata":{{"name":"w"}}}},"NodeNames":[{}]}}"#,
        names.join(",")
    );
    assert!(body.len() > 1000);
    let resp = reqwest::Client::new()
        .post(format!("{url}/filter"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("request body over --max-body-bytes (1000 bytes)")
    );
    // Within the limit it is decided as usual.
    let ok = reqwest::Client::new()
        .post(format!("{url}/filter"))
        .body(r#"{"Pod":{"metadata":{"name":"w"}},"NodeNames":["n1"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}
