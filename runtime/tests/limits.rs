//! Slow and idle clients against a server of `nethouse_runtime::serve`: a head trickling in, a
//! keep-alive connection left idle and a body trickling in are each cut off at their limit, and
//! connections past the limit are closed at once while the ones already open are served.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use nethouse_runtime::limits::HttpLimits;
use nethouse_runtime::serve::{Http, Serving, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn server(limits: HttpLimits) -> (Serving, Http) {
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/echo", post(|b: String| async move { b }));
    let http = Http {
        limits,
        metrics: Default::default(),
    };
    let s = serve(app, "127.0.0.1:0".parse().unwrap(), None, &http)
        .await
        .unwrap();
    (s, http)
}

/// Reads until the peer closes (or 5 s pass); returns what came and when it closed.
async fn read_to_close(c: &mut TcpStream) -> (String, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await;
    (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
}

fn short() -> HttpLimits {
    HttpLimits {
        http_header_timeout: Duration::from_millis(400),
        http_request_timeout: Duration::from_millis(400),
        http_max_connections: 100,
    }
}

#[tokio::test]
async fn a_head_trickling_in_is_cut_off() {
    let (s, _) = server(short()).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let start = Instant::now();
    c.write_all(b"GET /ok HTTP/1.1\r\n").await.unwrap();
    // A header line every 100 ms: each arrives well within any per-read timeout.
    for i in 0..30 {
        if c.write_all(format!("x-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if start.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    let (_, _) = read_to_close(&mut c).await;
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_connection_that_never_speaks_is_closed() {
    let (s, _) = server(short()).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let (got, after) = read_to_close(&mut c).await;
    assert!(got.is_empty(), "{got}");
    assert!(after < Duration::from_secs(2), "closed after {after:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let (s, _) = server(short()).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = c.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let (rest, after) = read_to_close(&mut c).await;
    assert!(rest.is_empty(), "{rest}");
    assert!(after < Duration::from_secs(2), "closed after {after:?}");
}

#[tokio::test]
async fn a_body_trickling_in_gets_408() {
    let (s, http) = server(short()).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nhello")
        .await
        .unwrap();
    let (answer, after) = read_to_close(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--http-request-timeout"), "{answer}");
    assert!(after < Duration::from_secs(2), "{after:?}");
    assert_eq!(http.metrics.request_timeouts.get(), 1);
}

#[tokio::test]
async fn past_the_connection_limit_new_connections_close_and_open_ones_are_served() {
    let (s, http) = server(HttpLimits {
        http_header_timeout: Duration::from_secs(10),
        http_request_timeout: Duration::from_secs(10),
        http_max_connections: 4,
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(s.addr).await.unwrap());
    }
    // Let the server accept them.
    while http.metrics.connections.get() < 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut extra = TcpStream::connect(s.addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let (answer, after) = read_to_close(&mut extra).await;
    assert!(answer.is_empty(), "{answer}");
    assert!(after < Duration::from_secs(1), "{after:?}");
    assert_eq!(http.metrics.connections_refused.get(), 1);

    // The ones already open are served.
    let c = &mut held[0];
    c.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_to_close(c).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A closed one frees its place.
    held.clear();
    let start = Instant::now();
    while http.metrics.connections.get() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "connections not released"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut again = TcpStream::connect(s.addr).await.unwrap();
    again
        .write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_to_close(&mut again).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
