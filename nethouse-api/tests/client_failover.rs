//! The async client's server order against scripted servers on loopback: a replica's 503 sends
//! the call to the next server; any other error answer is final.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nethouse_api::{Client, ClientConfig};

/// A server answering every connection with `answer`, counting the connections.
fn scripted(answer: &'static [u8]) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                // The request head and its (empty) body: enough to answer.
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(answer);
            });
        }
    });
    (url, accepted)
}

fn client(urls: &[&str]) -> Client {
    let mut cfg = ClientConfig::new(String::new());
    cfg.urls = urls.iter().map(|u| u.to_string()).collect();
    Client::new(cfg).unwrap()
}

const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 58\r\nConnection: close\r\n\r\n{\"error\":{\"code\":\"unavailable\",\"message\":\"store stalled\"}}";
const CONFLICT: &[u8] = b"HTTP/1.1 409 Conflict\r\nContent-Length: 49\r\nConnection: close\r\n\r\n{\"error\":{\"code\":\"zone_exhausted\",\"message\":\"x\"}}";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";

#[tokio::test]
async fn a_replica_that_cannot_serve_is_skipped_and_other_answers_are_final() {
    let (down, down_asked) = scripted(UNAVAILABLE);
    let (up, up_asked) = scripted(OK);
    client(&[&down, &up]).ready().await.unwrap();
    assert_eq!(down_asked.load(Ordering::SeqCst), 1);
    assert_eq!(up_asked.load(Ordering::SeqCst), 1);

    let e = client(&[&down, &down]).ready().await.unwrap_err();
    assert_eq!(e.api_code(), Some("unavailable"), "{e}");
    assert!(e.is_transient(), "{e}");

    let (refusing, _) = scripted(CONFLICT);
    let e = client(&[&refusing, &up]).ready().await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(409), "{e}");
    assert_eq!(
        up_asked.load(Ordering::SeqCst),
        1,
        "the next server was asked"
    );
}
