//! A blocking client of the NetHouse API for short-lived processes — the CNI plugin, which a
//! container runtime starts for every pod sandbox. It needs no async runtime and no connection
//! pool, and sets TLS up only when an `https` server is actually used, so a call costs one
//! connection and one exchange on top of the process start.
//!
//! Same rules as the async `Client` (feature `client`): servers are tried in order, a whole
//! HTTP answer is final (the servers share one store) unless it is a 503 and another server is
//! left (that replica cannot serve now; the next may), an answer that broke off is not one
//! (the next server is asked; if none answers, the failure is transient), and the same
//! [`ClientError`]s come back. Every
//! request made through one client ends by its deadline, name resolution and TLS handshake
//! included.

mod http1;
mod transport;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{another_server_may_serve, decode_body};
use crate::types::*;
use crate::{ClientConfig, ClientError, Setting};
use transport::{ExchangeError, Server};

pub struct BlockingClient {
    servers: Vec<Server>,
    token: Option<String>,
    request_timeout: Duration,
    connect_timeout: Duration,
    deadline: Option<Instant>,
    /// Built only when a server is `https`.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for BlockingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token: clients end up in logs.
        f.debug_struct("BlockingClient")
            .field("servers", &self.servers)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("deadline", &self.deadline)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl BlockingClient {
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        if config.urls.is_empty() {
            return Err(ClientError::config(Setting::Servers, "no server URL given"));
        }
        let mut servers = config
            .urls
            .iter()
            .map(|u| Server::parse(u).map_err(|e| ClientError::config(Setting::Servers, e)))
            .collect::<Result<Vec<_>, _>>()?;
        for server in &mut servers {
            if let Some((_, ip)) = config
                .hosts
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&server.host))
            {
                server.address = Some(*ip);
            }
        }
        // The token goes into a header line as it is: a line break would add headers.
        if let Some(t) = &config.token
            && (t.is_empty() || t.bytes().any(|b| b.is_ascii_control() || b == b' '))
        {
            return Err(ClientError::config(
                Setting::Token,
                "token: empty, or has spaces or control characters",
            ));
        }
        // Built now, so that a bad CA bundle is a configuration error before any request.
        let tls = if servers.iter().any(|s| s.tls) {
            Some(Arc::new(tls_config(config.ca_pem.as_deref())?))
        } else {
            None
        };
        Ok(BlockingClient {
            servers,
            token: config.token,
            request_timeout: config.timeout,
            connect_timeout: config.connect_timeout,
            deadline: None,
            tls,
        })
    }

    /// Every request made through this client ends by `deadline`, whatever its own timeout.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    pub fn allocate(&self, req: &AllocateRequest) -> Result<AllocateResponse, ClientError> {
        self.call("POST", "/v1/leases", Some(req))
    }

    pub fn detach(&self, req: &DetachRequest) -> Result<DetachResponse, ClientError> {
        self.call("POST", "/v1/leases/detach", Some(req))
    }

    pub fn gc(&self, req: &GcRequest) -> Result<GcResponse, ClientError> {
        self.call("POST", "/v1/gc", Some(req))
    }

    /// Reports a CNI ADD the plugin refused (see [`RefusalReport`]).
    pub fn report_refusal(&self, req: &RefusalReport) -> Result<RefusalRecorded, ClientError> {
        self.call("POST", "/v1/refusals", Some(req))
    }

    pub fn lease_by_ip(&self, ip: std::net::IpAddr) -> Result<Lease, ClientError> {
        self.call::<(), _>("GET", &format!("/v1/leases/by-ip/{ip}"), None)
    }

    /// `Ok` when a server answers `/readyz` with success.
    pub fn ready(&self) -> Result<(), ClientError> {
        let _: serde_json::Value = self.call::<(), _>("GET", "/readyz", None)?;
        Ok(())
    }

    /// The answer to `GET path` as it came, whatever its status, for a server that is not
    /// NetHouse and whose errors are not NetHouse's JSON: the CNI plugin's install reads its
    /// Node from the Kubernetes API this way, so that the plugin needs no second HTTP client.
    /// Servers, token, CA bundle and deadline work as for every other call.
    pub fn get(&self, path: &str) -> Result<(StatusCode, Vec<u8>), ClientError> {
        self.exchange("GET", path, None)
    }

    fn call<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, ClientError> {
        let body = body.map(serde_json::to_vec).transpose().map_err(|e| {
            ClientError::config(Setting::Other, format!("encoding the request: {e}"))
        })?;
        let (status, bytes) = self.exchange(method, path, body.as_deref())?;
        decode_body(status, &bytes)
    }

    fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let mut failures = Vec::new();
        // A replica's 503, kept in case no later server answers at all: it says more than
        // "unreachable", and it is transient all the same.
        let mut unavailable = None;
        for (i, server) in self.servers.iter().enumerate() {
            let tls = self.tls.clone().filter(|_| server.tls);
            let request = http1::encode_request(
                method,
                &server.authority,
                &format!("{}{path}", server.base_path),
                self.token.as_deref(),
                body,
            );
            let until = Instant::now() + self.request_timeout;
            let until = self.deadline.map_or(until, |d| d.min(until));
            let status = |code: u16| {
                StatusCode::from_u16(code).map_err(|_| ClientError::Decode {
                    status: StatusCode::BAD_GATEWAY,
                    body: format!("{}: status {code}", server.url),
                })
            };
            let target = transport::Target {
                server,
                connect_timeout: self.connect_timeout,
                until,
            };
            // With several servers, say which failed how; with one, the URL is said once.
            let prefix = if self.servers.len() > 1 {
                format!("{}: ", server.url)
            } else {
                String::new()
            };
            match transport::exchange(&target, tls, &request) {
                Ok((code, bytes)) => {
                    let status = status(code)?;
                    if !another_server_may_serve(status) || i + 1 == self.servers.len() {
                        return Ok((status, bytes));
                    }
                    failures.push(format!("{prefix}{status}"));
                    unavailable = Some((status, bytes));
                }
                // An answer that broke off (closed or stalled after its status line) is no
                // answer: whether the call took effect is unknown. Every call is idempotent, so
                // the next server may be asked, and if none answers the failure is transient
                // (the runtime tries again) — never a refusal.
                Err(ExchangeError::Answer(code, why)) => failures.push(format!(
                    "{prefix}the answer broke off after status {code}: {why}"
                )),
                Err(ExchangeError::Transport(e)) => failures.push(format!("{prefix}{e}")),
            }
        }
        if let Some(answer) = unavailable {
            return Ok(answer);
        }
        Err(ClientError::Unreachable {
            urls: self
                .servers
                .iter()
                .map(|s| s.url.as_str())
                .collect::<Vec<_>>()
                .join(","),
            source: failures.join("; ").into(),
        })
    }
}

/// The CA bundle when one is given (an in-cluster service needs no public roots), else the
/// platform's verifier; aws-lc-rs, the workspace's one crypto provider.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, ClientError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use rustls_platform_verifier::BuilderVerifierExt;

    crate::init_crypto();
    let tls_err = |e: rustls::Error| ClientError::config(Setting::Other, format!("TLS: {e}"));
    let ca_err = |e: &dyn std::fmt::Display| {
        ClientError::config(Setting::CaBundle, format!("CA bundle: {e}"))
    };
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(tls_err)?;
    let config = match ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ca_err(&e))?;
                roots.add(cert).map_err(|e| ca_err(&e))?;
            }
            if roots.is_empty() {
                return Err(ca_err(&"no certificate in it"));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .with_platform_verifier()
            .map_err(tls_err)?
            .with_no_client_auth(),
    };
    Ok(config)
}
