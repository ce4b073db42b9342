//! The HTTP surface: a malformed body is a 400 with a message (never a 5xx), `/readyz` waits
//! for synced caches, answers carry PascalCase keys, metrics count the calls.

use std::sync::{Arc, RwLock};

use nethouse_scheduler_extender::index::Index;
use nethouse_scheduler_extender::server::{Extender, router};

#[tokio::test]
async fn http_surface() {
    let ext = Arc::new(Extender {
        view: RwLock::new(Index::default()),
        metrics: Default::default(),
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
}
