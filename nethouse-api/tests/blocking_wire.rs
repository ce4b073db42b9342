//! The blocking client against scripted servers on loopback: what a real NetHouse never sends
//! but a proxy, a broken peer or a slow network can — interim answers, heads split across
//! packets, chunked bodies, answers cut short, bytes trickling in — and the rules that hold
//! through them: a whole answer is final, one that broke off is not, and no call outlives its deadline.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nethouse_api::{BlockingClient, ClientConfig, ClientError};

/// A server that answers every connection with `script`: (bytes, pause after them). Counts the
/// connections it accepted.
fn scripted(script: Vec<(&'static [u8], u64)>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let script = script.clone();
            std::thread::spawn(move || {
                read_request(&mut conn);
                for (bytes, pause_ms) in script {
                    if conn.write_all(bytes).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(pause_ms));
                }
            });
        }
    });
    (url, accepted)
}

fn read_request(conn: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut b) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
}

fn client(urls: &[&str]) -> BlockingClient {
    let mut cfg = ClientConfig::new(String::new());
    cfg.urls = urls.iter().map(|u| u.to_string()).collect();
    cfg.timeout = Duration::from_secs(5);
    BlockingClient::new(cfg).unwrap()
}

#[test]
fn interim_answers_split_heads_and_chunked_bodies_are_read_whole() {
    let (url, _) = scripted(vec![
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-En",
            20,
        ),
        (b"coding: chunked\r\n\r\n4\r\n{\"st", 20),
        (b"\r\n9\r\natus\":\"ok\r\n2\r\n\"}\r\n0\r\n", 20),
        (b"\r\n", 0),
    ]);
    client(&[&url]).ready().unwrap();
}

#[test]
fn a_server_error_is_final_and_the_next_server_is_not_asked() {
    let (first, _) = scripted(vec![(
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 50\r\n\r\n{\"error\":{\"code\":\"internal\",\"message\":\"it broke\"}}",
        0,
    )]);
    let (second, asked) = scripted(vec![(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 0)]);
    let e = client(&[&first, &second]).ready().unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(500), "{e}");
    assert_eq!(e.api_code(), Some("internal"), "{e}");
    assert!(e.is_transient(), "a 5xx is worth retrying later");
    assert_eq!(
        asked.load(Ordering::SeqCst),
        0,
        "the second server was asked"
    );
}

const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 58\r\n\r\n{\"error\":{\"code\":\"unavailable\",\"message\":\"store stalled\"}}";

#[test]
fn a_replica_that_cannot_serve_is_skipped_for_the_next() {
    // A 503 is one replica (not ready, its store out of reach): another may serve.
    let (first, first_asked) = scripted(vec![(UNAVAILABLE, 0)]);
    let (second, asked) = scripted(vec![(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 0)]);
    client(&[&first, &second]).ready().unwrap();
    assert_eq!(first_asked.load(Ordering::SeqCst), 1);
    assert_eq!(asked.load(Ordering::SeqCst), 1);

    // None can: the last 503 is the answer (it says why), transient; nothing is asked twice.
    let (third, third_asked) = scripted(vec![(UNAVAILABLE, 0)]);
    let e = client(&[&first, &third]).ready().unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(503), "{e}");
    assert_eq!(e.api_code(), Some("unavailable"), "{e}");
    assert!(e.is_transient(), "{e}");
    assert_eq!(first_asked.load(Ordering::SeqCst), 2);
    assert_eq!(third_asked.load(Ordering::SeqCst), 1);

    // A 503, then a server that is gone: the 503 says more than "unreachable".
    let gone = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let e = client(&[&first, &gone]).ready().unwrap_err();
    assert_eq!(e.api_code(), Some("unavailable"), "{e}");
    assert!(e.is_transient(), "{e}");
}

#[test]
fn an_answer_cut_short_is_no_answer_the_next_server_is_asked() {
    let cut = || {
        scripted(vec![(
            b"HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{\"lease\":",
            0,
        )])
    };
    let (first, _) = cut();
    let (second, asked) = scripted(vec![(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 0)]);
    client(&[&first, &second]).ready().unwrap();
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "the second server was asked"
    );

    // Alone, it is a transient failure (CNI error 11: the runtime tries again), not a refusal.
    let (only, _) = cut();
    let e = client(&[&only]).ready().unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert!(matches!(e, ClientError::Unreachable { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("the answer broke off after status 201")
            && text.contains("closed after 9 of 100 body bytes"),
        "{text}"
    );
}

#[test]
fn a_status_line_then_silence_is_transient_and_the_next_server_is_asked() {
    let stalled = || {
        scripted(vec![
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", 5_000),
            (b"{}", 0),
        ])
    };
    let (first, _) = stalled();
    let (second, asked) = scripted(vec![(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 0)]);
    let start = Instant::now();
    let mut c = ClientConfig::new(String::new());
    c.urls = vec![first, second];
    c.timeout = Duration::from_millis(400);
    BlockingClient::new(c).unwrap().ready().unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    assert!(start.elapsed() < Duration::from_secs(3));

    let (only, _) = stalled();
    let e = client(&[&only])
        .with_deadline(Instant::now() + Duration::from_millis(400))
        .ready()
        .unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert!(e.to_string().contains("broke off after status 200"), "{e}");
}

#[test]
fn a_server_that_is_never_heard_from_is_skipped_for_the_next() {
    // Closes without a byte: nothing was answered, so the next server may answer.
    let (silent, _) = scripted(vec![]);
    let (second, asked) = scripted(vec![(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 0)]);
    client(&[&silent, &second]).ready().unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}

#[test]
fn a_trickling_server_cannot_hold_the_call_past_its_deadline() {
    // A byte every 100 ms: each read succeeds well within any per-read timeout.
    let mut script = vec![(
        &b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"[..],
        100,
    )];
    script.extend(std::iter::repeat_n((&b"x"[..], 100), 200));
    let (url, _) = scripted(script);
    let start = Instant::now();
    let e = client(&[&url])
        .with_deadline(start + Duration::from_millis(700))
        .ready()
        .unwrap_err();
    let took = start.elapsed();
    assert!(e.to_string().contains("timed out"), "{e}");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
}

#[test]
fn a_stalled_tls_handshake_ends_at_the_deadline_and_says_where() {
    // Reads the ClientHello, never answers it.
    let (url, _) = scripted(vec![(b"", 10_000)]);
    let url = url.replace("http://", "https://");
    let mut cfg = ClientConfig::new(url);
    cfg.ca_pem = None;
    let start = Instant::now();
    let e = BlockingClient::new(cfg)
        .unwrap()
        .with_deadline(start + Duration::from_millis(500))
        .ready()
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().contains("TLS handshake: timed out"), "{e}");
    assert!(start.elapsed() < Duration::from_millis(1500));
}

#[test]
fn configuration_is_refused_before_any_request() {
    let mut cfg = ClientConfig::new("http://127.0.0.1:1");
    cfg.token = Some("abc\r\nX-Injected: 1".into());
    assert!(matches!(
        BlockingClient::new(cfg),
        Err(ClientError::Config { .. })
    ));
    let mut cfg = ClientConfig::new("https://127.0.0.1:1");
    cfg.ca_pem =
        Some(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".to_vec());
    let e = BlockingClient::new(cfg).unwrap_err();
    assert!(e.to_string().contains("CA bundle"), "{e}");
    for bad in ["ftp://h:1", "http://", "not a url"] {
        assert!(
            matches!(
                BlockingClient::new(ClientConfig::new(bad)),
                Err(ClientError::Config { .. })
            ),
            "{bad}"
        );
    }
    // The token never shows in debug output.
    let mut cfg = ClientConfig::new("http://127.0.0.1:1");
    cfg.token = Some("s3cret".into());
    let shown = format!("{:?}", BlockingClient::new(cfg).unwrap());
    assert!(!shown.contains("s3cret"), "{shown}");
}

#[test]
fn a_raw_get_returns_any_answer_as_it_came() {
    // Not NetHouse: a refusal whose body is not NetHouse's error JSON is an answer, not an error.
    let (url, _) = scripted(vec![(
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden",
        0,
    )]);
    let (status, body) = client(&[&url]).get("/api/v1/nodes/n1").unwrap();
    assert_eq!((status.as_u16(), &body[..]), (403, &b"forbidden"[..]));
    let e = client(&["http://127.0.0.1:1"]).get("/").unwrap_err();
    assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
}
