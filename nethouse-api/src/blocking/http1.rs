//! The HTTP/1.1 framing the blocking client needs, as pure functions over bytes: one request
//! with `Connection: close`, and a response delimited by `Content-Length`, chunked coding or the
//! end of the connection.

/// A response larger than this is refused: NetHouse's answers are small JSON documents.
pub const MAX_BODY: usize = 64 << 20;
pub const MAX_HEAD: usize = 64 << 10;

/// The whole request, head and body, so that it leaves in one write.
pub fn encode_request(
    method: &str,
    host: &str,
    target: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body.map_or(0, <[u8]>::len));
    let mut line = |s: &str| {
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    line(&format!("{method} {target} HTTP/1.1"));
    line(&format!("Host: {host}"));
    line(concat!(
        "User-Agent: nethouse-api/",
        env!("CARGO_PKG_VERSION")
    ));
    line("Accept: application/json");
    if let Some(token) = token {
        line(&format!("Authorization: Bearer {token}"));
    }
    if let Some(body) = body {
        line("Content-Type: application/json");
        line(&format!("Content-Length: {}", body.len()));
    }
    line("Connection: close");
    line("");
    if let Some(body) = body {
        out.extend_from_slice(body);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
    /// Neither header: the body ends with the connection.
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
    /// Bytes of the status line and headers, blank line included.
    pub len: usize,
}

/// The response head at the start of `buf`: `Ok(None)` while it is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(format!("response head longer than {MAX_HEAD} bytes"));
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next(), parts.next());
    if !version.is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(format!("not an HTTP/1.x response: {status_line:?}"));
    }
    let status = code
        .filter(|c| c.len() == 3)
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (100..600).contains(c))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut framing = Framing::UntilClose;
    for header in lines {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("bad header line {header:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only plain chunked: any other coding (gzip, ...) is bytes we could not read as
            // JSON. RFC 9112 6.3: chunked wins over any Content-Length.
            if !value.eq_ignore_ascii_case("chunked") {
                return Err(format!("unsupported Transfer-Encoding {value:?}"));
            }
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("bad Content-Length {value:?}"));
            }
            let n: usize = value
                .parse()
                .map_err(|_| format!("bad Content-Length {value:?}"))?;
            if n > MAX_BODY {
                return Err(format!("response body of {n} bytes is over {MAX_BODY}"));
            }
            match framing {
                Framing::Length(m) if m != n => {
                    return Err(format!("conflicting Content-Length {m} and {n}"));
                }
                Framing::Chunked => {}
                _ => framing = Framing::Length(n),
            }
        }
    }
    // RFC 9112 6.3: these never have a body, whatever the headers say.
    if status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    Ok(Some(Head {
        status,
        framing,
        len: end + 4,
    }))
}

/// Decodes a chunked body: `Ok(None)` while the last chunk has not arrived.
pub fn decode_chunked(mut buf: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&buf[..eol]).map_err(|_| "bad chunk size line")?;
        // Chunk extensions (";name=value") carry nothing we use.
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        if out.len().saturating_add(size) > MAX_BODY {
            return Err(format!("response body over {MAX_BODY} bytes"));
        }
        buf = &buf[eol + 2..];
        if size == 0 {
            // Trailer fields, if any, end with an empty line: the answer is whole only then
            // (the connection closes right after, so nothing is left unread on it).
            let whole = buf.starts_with(b"\r\n") || buf.windows(4).any(|w| w == b"\r\n\r\n");
            return Ok(whole.then_some(out));
        }
        if buf.len() < size + 2 {
            return Ok(None);
        }
        if &buf[size..size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        out.extend_from_slice(&buf[..size]);
        buf = &buf[size + 2..];
    }
}

/// The body once `buf` (what follows the head) holds all of it; `closed`: the peer has ended
/// the connection, so nothing more will come.
pub fn body(framing: Framing, buf: &[u8], closed: bool) -> Result<Option<Vec<u8>>, String> {
    match framing {
        Framing::Length(n) if buf.len() >= n => Ok(Some(buf[..n].to_vec())),
        Framing::Length(n) if closed => Err(format!(
            "connection closed after {} of {n} body bytes",
            buf.len()
        )),
        Framing::Length(_) => Ok(None),
        Framing::Chunked => match decode_chunked(buf)? {
            Some(b) => Ok(Some(b)),
            None if closed => Err("connection closed inside a chunked body".into()),
            None => Ok(None),
        },
        Framing::UntilClose if buf.len() > MAX_BODY => {
            Err(format!("response body over {MAX_BODY} bytes"))
        }
        Framing::UntilClose => Ok(closed.then(|| buf.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_one_buffer_with_length_and_token() {
        let r = encode_request(
            "POST",
            "10.0.0.1:7420",
            "/v1/leases",
            Some("t0k"),
            Some(b"{}"),
        );
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("POST /v1/leases HTTP/1.1\r\nHost: 10.0.0.1:7420\r\n"));
        assert!(text.contains("\r\nAuthorization: Bearer t0k\r\n"));
        assert!(text.contains("\r\nContent-Length: 2\r\n"));
        assert!(text.ends_with("\r\nConnection: close\r\n\r\n{}"));
        let get = String::from_utf8(encode_request("GET", "h", "/readyz", None, None)).unwrap();
        assert!(!get.contains("Content-Length") && !get.contains("Authorization"));
    }

    /// (status, framing) of a complete head, `None` for an incomplete one, or an error text.
    type Want = Result<Option<(u16, Framing)>, &'static str>;

    #[test]
    fn heads() {
        let cases: &[(&str, Want)] = &[
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                Ok(Some((200, Framing::Length(5)))),
            ),
            (
                "HTTP/1.1 404 Not Found\r\ncontent-length:0\r\n\r\n",
                Ok(Some((404, Framing::Length(0)))),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Ok(Some((200, Framing::Chunked))),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                Ok(Some((200, Framing::Chunked))),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Err("unsupported Transfer-Encoding"),
            ),
            (
                "HTTP/1.0 200 OK\r\n\r\n",
                Ok(Some((200, Framing::UntilClose))),
            ),
            (
                "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
                Ok(Some((204, Framing::Length(0)))),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
                Err("conflicting Content-Length"),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
                Ok(Some((200, Framing::Length(2)))),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
                Err("bad Content-Length"),
            ),
            ("HTTP/1.1 200 OK\r\nContent-Le", Ok(None)),
            ("SSH-2.0-OpenSSH\r\n\r\n", Err("not an HTTP/1.x response")),
            ("HTTP/1.1 2000 OK\r\n\r\n", Err("bad status line")),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                Err("bad Content-Length"),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
                Err("is over"),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                Err("unsupported Transfer-Encoding"),
            ),
            (
                "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                Err("bad header line"),
            ),
        ];
        for (input, want) in cases {
            let got = parse_head(input.as_bytes()).map(|h| h.map(|h| (h.status, h.framing)));
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(&g, w, "{input:?}"),
                (Err(g), Err(w)) => assert!(g.contains(w), "{input:?}: {g}"),
                (g, w) => panic!("{input:?}: got {g:?}, want {w:?}"),
            }
        }
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!(h.len, 38);
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            decode_chunked(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n").unwrap(),
            Some(b"hello world".to_vec())
        );
        assert_eq!(decode_chunked(b"5\r\nhello\r\n").unwrap(), None);
        assert_eq!(decode_chunked(b"5\r\nhel").unwrap(), None);
        assert_eq!(decode_chunked(b"0\r\n").unwrap(), None);
        assert_eq!(decode_chunked(b"0\r\n\r\n").unwrap(), Some(Vec::new()));
        assert_eq!(decode_chunked(b"0\r\nX-T: 1\r\n").unwrap(), None);
        assert_eq!(
            decode_chunked(b"0\r\nX-T: 1\r\n\r\n").unwrap(),
            Some(Vec::new())
        );
        assert!(
            decode_chunked(b"zz\r\n")
                .unwrap_err()
                .contains("bad chunk size")
        );
        assert!(decode_chunked(b"2\r\nabXY").unwrap_err().contains("CRLF"));
    }

    #[test]
    fn bodies_by_framing() {
        assert_eq!(
            body(Framing::Length(2), b"{}", false).unwrap(),
            Some(b"{}".to_vec())
        );
        assert_eq!(body(Framing::Length(3), b"{}", false).unwrap(), None);
        assert!(
            body(Framing::Length(3), b"{}", true)
                .unwrap_err()
                .contains("2 of 3")
        );
        assert_eq!(body(Framing::UntilClose, b"{}", false).unwrap(), None);
        assert_eq!(
            body(Framing::UntilClose, b"{}", true).unwrap(),
            Some(b"{}".to_vec())
        );
        assert!(
            body(Framing::Chunked, b"2\r\n{}", true)
                .unwrap_err()
                .contains("chunked")
        );
    }
}
