//! Async client of the NetHouse API (feature `client`: reqwest on tokio, for every long-running
//! component). Several server URLs may be given: a request goes to the first one that answers at
//! the transport level. An HTTP error answer is final, not retried on the next server, because
//! the servers share one store and would answer the same — except a 503, one replica that cannot
//! serve now (see `config::another_server_may_serve`).

use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{ClientConfig, ClientError, Setting, another_server_may_serve, decode_body};
use crate::types::*;

#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    urls: Vec<String>,
    token: Option<String>,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        if config.urls.is_empty() {
            return Err(ClientError::config(Setting::Servers, "no server URL given"));
        }
        let mut urls = Vec::with_capacity(config.urls.len());
        for url in &config.urls {
            let parsed = reqwest::Url::parse(url).map_err(|e| {
                ClientError::config(Setting::Servers, format!("server URL {url:?}: {e}"))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ClientError::config(
                    Setting::Servers,
                    format!("server URL {url:?}: scheme must be http or https"),
                ));
            }
            urls.push(url.trim_end_matches('/').to_string());
        }
        crate::init_crypto();
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            // Below the servers' idle cut-off (--http-header-timeout, 30s): a pooled connection
            // is dropped here before the server closes it under a request.
            .pool_idle_timeout(Duration::from_secs(15))
            .tcp_nodelay(true)
            .no_proxy();
        for (name, ip) in &config.hosts {
            // The port is the URL's; reqwest ignores this one.
            builder = builder.resolve(name, std::net::SocketAddr::new(*ip, 0));
        }
        // Trust exactly the operator's CA when one is given (an in-cluster service needs no
        // public roots); with plain http skip TLS roots altogether — loading the platform's
        // roots costs milliseconds, and the CNI plugin pays them on every pod start.
        if let Some(pem) = &config.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::config(Setting::CaBundle, format!("CA bundle: {e}")))?;
            builder = builder.tls_certs_only(certs);
        } else if urls.iter().all(|u| u.starts_with("http://")) {
            builder = builder.tls_certs_only(Vec::new());
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::config(Setting::Other, format!("HTTP client: {e}")))?;
        Ok(Client {
            http,
            urls,
            token: config.token,
        })
    }

    async fn call<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: Option<&LeaseFilter>,
        body: Option<&B>,
    ) -> Result<R, ClientError> {
        let mut last_err = None;
        let mut unavailable = None;
        for (i, base) in self.urls.iter().enumerate() {
            let mut req = self.http.request(method.clone(), format!("{base}{path}"));
            if let Some(token) = &self.token {
                req = req.bearer_auth(token);
            }
            if let Some(q) = query {
                req = req.query(q);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(resp) if another_server_may_serve(resp.status()) && i + 1 < self.urls.len() => {
                    unavailable = Some(resp);
                }
                Ok(resp) => return decode(resp).await,
                Err(e) => last_err = Some(e),
            }
        }
        // A replica's 503 says more than "unreachable", and is transient all the same.
        if let Some(resp) = unavailable {
            return decode(resp).await;
        }
        match last_err {
            Some(source) => Err(ClientError::Unreachable {
                urls: self.urls.join(","),
                source: Box::new(source),
            }),
            None => Err(ClientError::config(Setting::Servers, "no server URL given")),
        }
    }

    pub async fn allocate(&self, req: &AllocateRequest) -> Result<AllocateResponse, ClientError> {
        self.call(Method::POST, "/v1/leases", None, Some(req)).await
    }

    pub async fn detach(&self, req: &DetachRequest) -> Result<DetachResponse, ClientError> {
        self.call(Method::POST, "/v1/leases/detach", None, Some(req))
            .await
    }

    pub async fn release(&self, owner: &Owner) -> Result<ReleaseResponse, ClientError> {
        let req = ReleaseRequest {
            owner: owner.clone(),
            ips: None,
        };
        self.call(Method::POST, "/v1/leases/release", None, Some(&req))
            .await
    }

    /// Releases `owner`'s lease only if it holds exactly `ips` (see [`ReleaseRequest::ips`]).
    pub async fn release_exact(
        &self,
        owner: &Owner,
        ips: &[std::net::IpAddr],
    ) -> Result<ReleaseResponse, ClientError> {
        let req = ReleaseRequest {
            owner: owner.clone(),
            ips: Some(ips.to_vec()),
        };
        self.call(Method::POST, "/v1/leases/release", None, Some(&req))
            .await
    }

    pub async fn gc(&self, req: &GcRequest) -> Result<GcResponse, ClientError> {
        self.call(Method::POST, "/v1/gc", None, Some(req)).await
    }

    /// Reports a CNI ADD the plugin refused (see [`RefusalReport`]).
    pub async fn report_refusal(
        &self,
        req: &RefusalReport,
    ) -> Result<RefusalRecorded, ClientError> {
        self.call(Method::POST, "/v1/refusals", None, Some(req))
            .await
    }

    pub async fn lease_by_ip(&self, ip: std::net::IpAddr) -> Result<Lease, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/v1/leases/by-ip/{ip}"), None, None)
            .await
    }

    pub async fn lease_by_owner(&self, owner: &Owner) -> Result<Lease, ClientError> {
        let path = format!(
            "/v1/leases/by-owner/{}/{}/{}",
            seg(&owner.cluster),
            seg(&owner.namespace),
            seg(&owner.pod)
        );
        self.call::<(), _>(Method::GET, &path, None, None).await
    }

    pub async fn list_leases(&self, filter: &LeaseFilter) -> Result<LeaseList, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/leases", Some(filter), None)
            .await
    }

    /// Every page of [`Client::list_leases`] joined.
    pub async fn list_all_leases(&self, filter: &LeaseFilter) -> Result<Vec<Lease>, ClientError> {
        let mut filter = filter.clone();
        let mut out = Vec::new();
        loop {
            let page = self.list_leases(&filter).await?;
            out.extend(page.items);
            match page.next {
                Some(next) => filter.continue_from = Some(next),
                None => return Ok(out),
            }
        }
    }

    pub async fn add_subnet(&self, spec: &SubnetSpec) -> Result<Subnet, ClientError> {
        self.call(Method::POST, "/v1/subnets", None, Some(spec))
            .await
    }

    pub async fn list_subnets(&self) -> Result<Vec<Subnet>, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/subnets", None, None)
            .await
    }

    pub async fn get_subnet(&self, name: &str) -> Result<Subnet, ClientError> {
        self.call::<(), _>(
            Method::GET,
            &format!("/v1/subnets/{}", seg(name)),
            None,
            None,
        )
        .await
    }

    pub async fn remove_subnet(&self, name: &str) -> Result<Subnet, ClientError> {
        self.call::<(), _>(
            Method::DELETE,
            &format!("/v1/subnets/{}", seg(name)),
            None,
            None,
        )
        .await
    }

    pub async fn zones(&self) -> Result<Vec<Zone>, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/zones", None, None)
            .await
    }

    /// `GET /readyz`: `Ok(())` when some server is ready to serve.
    pub async fn ready(&self) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .call::<(), _>(Method::GET, "/readyz", None, None)
            .await?;
        Ok(())
    }
}

/// Percent-encodes one path segment (names are DNS-like, but a wrong input must not change the route).
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn decode<R: DeserializeOwned>(resp: reqwest::Response) -> Result<R, ClientError> {
    let status = resp.status();
    let url = resp.url().to_string();
    match resp.bytes().await {
        Ok(bytes) => decode_body(status, &bytes),
        // Whether the call took effect is unknown: a transient failure, to be tried again
        // (every state-changing call is idempotent), never a refusal.
        Err(e) => Err(ClientError::Unreachable {
            urls: url,
            source: format!("the answer broke off after status {status}: {e}").into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_encoding_keeps_names_and_escapes_slashes() {
        assert_eq!(seg("redis-0"), "redis-0");
        assert_eq!(seg("10.0.0.0-24"), "10.0.0.0-24");
        assert_eq!(seg("a/b"), "a%2Fb");
        assert_eq!(seg("fd00::-64"), "fd00%3A%3A-64");
    }

    #[test]
    fn config_rejects_bad_urls() {
        let mut cfg = ClientConfig::new("ftp://x");
        assert!(matches!(
            Client::new(cfg.clone()),
            Err(ClientError::Config { .. })
        ));
        cfg.urls = vec![];
        assert!(matches!(Client::new(cfg), Err(ClientError::Config { .. })));
    }
}
