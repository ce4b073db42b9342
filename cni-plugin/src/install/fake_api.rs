//! Test support: a fake Kubernetes API server on loopback, plain or HTTPS with the test PKI's
//! certificate (the one NetHouse's tests use), so `--zone-from-node` is tested over a real TLS
//! handshake, its CA check included.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

#[path = "../../../nethouse/tests/common/pki.rs"]
mod pki;
pub use pki::tls_files;

/// A TLS server set-up with `cert` and `key` (PEM files).
pub fn tls_server(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certs = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, PrivateKeyDer::from_pem_file(key).unwrap())
        .unwrap();
    Arc::new(config)
}

/// A fake API server on loopback, plain or (with `tls`) HTTPS, for `connections` connections:
/// `answer` gets each request head and gives the status and body. The heads it saw, or why
/// a TLS handshake failed, come back on the channel.
pub fn fake_api(
    tls: Option<Arc<rustls::ServerConfig>>,
    connections: usize,
    mut answer: impl FnMut(&str) -> (u16, String) + Send + 'static,
) -> (String, Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://{}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..connections {
            let (tcp, _) = listener.accept().unwrap();
            let seen = match &tls {
                Some(config) => {
                    let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                    let mut s = rustls::StreamOwned::new(conn, tcp);
                    let seen = exchange(&mut s, &mut answer);
                    s.conn.send_close_notify();
                    let _ = s.flush();
                    seen
                }
                None => exchange(&mut { tcp }, &mut answer),
            };
            let _ = tx.send(seen.unwrap_or_else(|e| format!("failed: {e}")));
        }
    });
    (base, rx)
}

/// Reads one request head and writes `answer`'s reply; returns the head, lowercased.
fn exchange(
    conn: &mut (impl Read + Write),
    answer: &mut impl FnMut(&str) -> (u16, String),
) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let (code, body) = answer(&head);
    write!(
        conn,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()?;
    Ok(head)
}
