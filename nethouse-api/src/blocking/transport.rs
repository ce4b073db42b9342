//! One request on one fresh connection, plain or TLS, bounded by a deadline at every step —
//! name resolution included, which the OS offers no timeout for.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http1;

/// Where one server URL points.
#[derive(Debug, Clone)]
pub struct Server {
    pub url: String,
    pub tls: bool,
    /// Without brackets for IPv6 (it is also the TLS server name).
    pub host: String,
    pub port: u16,
    /// Where to connect without asking the resolver: the host itself when it is an address,
    /// or the address configured for its name (`ClientConfig::hosts`).
    pub address: Option<IpAddr>,
    /// The `Host` header: `host[:port]`, brackets for IPv6.
    pub authority: String,
    /// The URL's path without its trailing `/`, prefixed to every request path.
    pub base_path: String,
}

impl Server {
    pub fn parse(url: &str) -> Result<Server, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("server URL {url:?}: {e}"))?;
        let tls = match parsed.scheme() {
            "http" => false,
            "https" => true,
            _ => return Err(format!("server URL {url:?}: scheme must be http or https")),
        };
        // `host_str` keeps IPv6 brackets: the authority wants them, the socket and TLS do not.
        let host_part = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("server URL {url:?}: no host"))?
            .to_string();
        let host = host_part
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&host_part)
            .to_string();
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| format!("server URL {url:?}: no port"))?;
        // Refused here, as configuration, rather than as an unreachable server on every call.
        if tls {
            rustls::pki_types::ServerName::try_from(host.as_str())
                .map_err(|e| format!("server URL {url:?}: not a TLS server name: {e}"))?;
        }
        let authority = match parsed.port() {
            Some(p) => format!("{host_part}:{p}"),
            None => host_part,
        };
        Ok(Server {
            url: url.trim_end_matches('/').to_string(),
            tls,
            address: host.parse().ok(),
            host,
            port,
            authority,
            base_path: parsed.path().trim_end_matches('/').to_string(),
        })
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what}: timed out"))
}

fn remaining(until: Instant, what: &str) -> io::Result<Duration> {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(timed_out(what))
    } else {
        Ok(left)
    }
}

/// getaddrinfo has no timeout; it runs on its own thread and is abandoned at the deadline
/// (the process is short-lived, the thread ends with it).
fn resolve(host: &str, port: u16, until: Instant) -> io::Result<Vec<SocketAddr>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_string();
    std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Vec::from_iter));
        })?;
    let what = format!("resolving {host}");
    match rx.recv_timeout(remaining(until, &what)?) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{what}: no address"),
        )),
        Ok(Err(e)) => Err(io::Error::new(e.kind(), format!("{what}: {e}"))),
        Err(_) => Err(timed_out(&what)),
    }
}

/// Where and until when one exchange goes.
pub struct Target<'a> {
    pub server: &'a Server,
    pub connect_timeout: Duration,
    pub until: Instant,
}

fn connect(t: &Target) -> io::Result<TcpStream> {
    let mut last = None;
    let addrs = match t.server.address {
        Some(ip) => vec![SocketAddr::new(ip, t.server.port)],
        None => resolve(&t.server.host, t.server.port, t.until)?,
    };
    for addr in addrs {
        let what = format!("connecting to {addr}");
        let limit = remaining(t.until, &what)?.min(t.connect_timeout);
        match TcpStream::connect_timeout(&addr, limit) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = Some(io::Error::new(e.kind(), format!("{what}: {e}"))),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no address to connect to")))
}

/// The socket, with the time left until the deadline re-armed before every read and write: a
/// peer that trickles a byte just before each timeout (in the TLS handshake or in a record)
/// still cannot hold the call past its deadline.
struct DeadlineSocket {
    tcp: TcpStream,
    until: Instant,
}

impl DeadlineSocket {
    fn arm(&self) -> io::Result<()> {
        let left = remaining(self.until, "the exchange")?;
        self.tcp.set_read_timeout(Some(left))?;
        self.tcp.set_write_timeout(Some(left))
    }
}

impl Read for DeadlineSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        self.tcp.read(buf)
    }
}

impl Write for DeadlineSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

enum Stream {
    Plain(DeadlineSocket),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, DeadlineSocket>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

fn with_context(e: io::Error, what: &str) -> io::Error {
    // A socket timeout surfaces as WouldBlock on Linux; say what it was.
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        return timed_out(what);
    }
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// Nothing was answered: the next server may be tried.
    Transport(io::Error),
    /// The server began its answer (this status) and it could not be read whole. The answer
    /// is final all the same — the servers share one store — so no other server is asked.
    Answer(u16, String),
}

/// Sends `request` to `server` and reads the whole answer: (status, body).
pub fn exchange(
    target: &Target,
    tls: Option<Arc<rustls::ClientConfig>>,
    request: &[u8],
) -> Result<(u16, Vec<u8>), ExchangeError> {
    let transport = ExchangeError::Transport;
    let server = target.server;
    let tcp = connect(target).map_err(transport)?;
    let socket = DeadlineSocket {
        tcp,
        until: target.until,
    };
    let mut stream = match tls {
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(server.host.clone())
                .map_err(|e| transport(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
            let conn = rustls::ClientConnection::new(config, name)
                .map_err(|e| transport(io::Error::other(e)))?;
            let mut tls = rustls::StreamOwned::new(conn, socket);
            // Its own step, so that a certificate the client refuses is named as such.
            while tls.conn.is_handshaking() {
                tls.conn
                    .complete_io(&mut tls.sock)
                    .map_err(|e| transport(with_context(e, "TLS handshake")))?;
            }
            Stream::Tls(Box::new(tls))
        }
        None => Stream::Plain(socket),
    };
    stream
        .write_all(request)
        .and_then(|()| stream.flush())
        .map_err(|e| transport(with_context(e, "sending the request")))?;
    let answer = read_answer(&mut stream);
    if let Stream::Tls(tls) = &mut stream {
        // Connection: close — say so at the TLS layer too; the server may not wait for it.
        tls.conn.send_close_notify();
        let _ = tls.conn.complete_io(&mut tls.sock);
    }
    answer
}

fn read_answer(stream: &mut Stream) -> Result<(u16, Vec<u8>), ExchangeError> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    let mut head: Option<http1::Head> = None;
    // Once a status line is in, a failure is the answer's, not the connection's.
    let fail = |head: Option<http1::Head>, e: String| match head {
        Some(h) => ExchangeError::Answer(h.status, e),
        None => ExchangeError::Transport(io::Error::new(io::ErrorKind::InvalidData, e)),
    };
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let e = with_context(e, "reading the answer");
                return Err(match head {
                    Some(h) => ExchangeError::Answer(h.status, e.to_string()),
                    None => ExchangeError::Transport(e),
                });
            }
        };
        let closed = n == 0;
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > http1::MAX_HEAD + http1::MAX_BODY + 64 * 1024 {
            return Err(fail(head, "answer too large".into()));
        }
        // Interim answers (100 Continue and the like) carry no result: skip them.
        while head.is_none() {
            match http1::parse_head(&buf).map_err(|e| fail(None, e))? {
                Some(h) if (100..200).contains(&h.status) => {
                    buf.drain(..h.len);
                }
                Some(h) => head = Some(h),
                None => break,
            }
        }
        if let Some(h) = head
            && let Some(body) =
                http1::body(h.framing, &buf[h.len..], closed).map_err(|e| fail(head, e))?
        {
            return Ok((h.status, body));
        }
        if closed {
            let what = if head.is_some() {
                "connection closed before the whole answer"
            } else {
                "connection closed before an answer"
            };
            return Err(fail(head, what.into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        let s = Server::parse("http://10.0.0.1:7420/").unwrap();
        assert_eq!((s.tls, s.host.as_str(), s.port), (false, "10.0.0.1", 7420));
        assert_eq!(
            (s.authority.as_str(), s.base_path.as_str()),
            ("10.0.0.1:7420", "")
        );
        let s = Server::parse("https://[fd00::1]/nethouse/").unwrap();
        assert_eq!((s.tls, s.host.as_str(), s.port), (true, "fd00::1", 443));
        assert_eq!(
            (s.authority.as_str(), s.base_path.as_str()),
            ("[fd00::1]", "/nethouse")
        );
        let s = Server::parse("http://nethouse.example:80").unwrap();
        assert_eq!(
            (s.host.as_str(), s.authority.as_str()),
            ("nethouse.example", "nethouse.example")
        );
        assert!(Server::parse("ftp://x").unwrap_err().contains("scheme"));
        assert!(
            Server::parse("not a url")
                .unwrap_err()
                .contains("server URL")
        );
    }

    #[test]
    fn an_expired_deadline_fails_before_any_io() {
        let s = Server::parse("http://192.0.2.1:7420").unwrap();
        let target = Target {
            server: &s,
            connect_timeout: Duration::from_secs(1),
            until: Instant::now(),
        };
        let e = exchange(&target, None, b"").unwrap_err();
        assert!(
            matches!(&e, ExchangeError::Transport(io) if io.kind() == io::ErrorKind::TimedOut),
            "{e:?}"
        );
    }
}
