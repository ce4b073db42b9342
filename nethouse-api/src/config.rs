//! What both NetHouse clients share: their configuration (servers, token, CA bundle, deadlines),
//! their error type, and how an answer's body becomes a value or an API error. The async client
//! (`client`, feature `client`) and the blocking one (`blocking`, the CNI plugin's) build on it.

use std::time::Duration;

use http::StatusCode;
use serde::de::DeserializeOwned;

use crate::types::*;

/// Which client setting a configuration error is about, so a caller can name its own key for it
/// (the CNI plugin: `ipam.caFile`, `ipam.tokenFile`, `ipam.servers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// The server URLs.
    Servers,
    /// The bearer token (or the file holding it).
    Token,
    /// The CA bundle (or the file holding it).
    CaBundle,
    /// Anything else: the TLS or HTTP machinery, encoding a request.
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid NetHouse client configuration: {message}")]
    Config { setting: Setting, message: String },
    #[error("NetHouse unreachable at {urls}: {source}")]
    Unreachable {
        urls: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("NetHouse answered {status}: {error}")]
    Api { status: StatusCode, error: ApiError },
    #[error("NetHouse answered {status} with an undecodable body: {body}")]
    Decode { status: StatusCode, body: String },
}

impl ClientError {
    pub fn config(setting: Setting, message: impl Into<String>) -> Self {
        ClientError::Config {
            setting,
            message: message.into(),
        }
    }

    /// Whether trying again later may succeed (the CNI plugin maps this to error 11).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Api { status, .. } | ClientError::Decode { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            ClientError::Config { .. } => false,
        }
    }

    /// The setting a configuration error is about.
    pub fn setting(&self) -> Option<Setting> {
        match self {
            ClientError::Config { setting, .. } => Some(*setting),
            _ => None,
        }
    }

    pub fn api_code(&self) -> Option<&str> {
        match self {
            ClientError::Api { error, .. } => Some(&error.code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } | ClientError::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Base URLs such as `http://127.0.0.1:7420`, tried in order.
    pub urls: Vec<String>,
    pub token: Option<String>,
    /// Deadline of one HTTP exchange with one server.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// PEM CA bundle: the only roots trusted for `https` servers (default: the platform's).
    pub ca_pem: Option<Vec<u8>>,
    /// Addresses for server host names, used instead of the resolver; TLS still verifies the
    /// name. For a process on a host whose resolver does not know the name (an in-cluster
    /// Service name seen from a node).
    pub hosts: Vec<(String, std::net::IpAddr)>,
}

impl ClientConfig {
    /// Several server URLs and, optionally, a file holding the bearer token (trimmed).
    pub fn with_token_file(
        urls: Vec<String>,
        token_file: Option<&std::path::Path>,
    ) -> Result<Self, ClientError> {
        let token = match token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        ClientError::config(
                            Setting::Token,
                            format!("token file {}: {e}", path.display()),
                        )
                    })?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        Ok(ClientConfig {
            urls,
            token,
            ..ClientConfig::new(String::new())
        })
    }

    /// Trusts only the PEM CA bundle in `ca_file` for `https` servers (when given).
    pub fn with_ca_file(mut self, ca_file: Option<&std::path::Path>) -> Result<Self, ClientError> {
        if let Some(path) = ca_file {
            self.ca_pem = Some(std::fs::read(path).map_err(|e| {
                ClientError::config(
                    Setting::CaBundle,
                    format!("CA file {}: {e}", path.display()),
                )
            })?);
        }
        Ok(self)
    }

    pub fn new(url: impl Into<String>) -> Self {
        ClientConfig {
            urls: vec![url.into()],
            token: None,
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            ca_pem: None,
            hosts: Vec::new(),
        }
    }
}

/// Whether another server may answer what this one answered `status` to. A 503 is one replica
/// that cannot serve now (not ready, its store unreachable, draining under load): the others
/// share the store and may. Any other answer is the shared store's and would be the same
/// elsewhere, so it is final.
pub(crate) fn another_server_may_serve(status: StatusCode) -> bool {
    status == StatusCode::SERVICE_UNAVAILABLE
}

/// A whole answer: the value on success, else the API error the body carries.
pub(crate) fn decode_body<R: DeserializeOwned>(
    status: StatusCode,
    bytes: &[u8],
) -> Result<R, ClientError> {
    if status.is_success() {
        serde_json::from_slice(bytes).map_err(|e| ClientError::Decode {
            status,
            body: format!("{e}: {}", String::from_utf8_lossy(bytes)),
        })
    } else {
        match serde_json::from_slice::<ErrorBody>(bytes) {
            Ok(body) => Err(ClientError::Api {
                status,
                error: body.error,
            }),
            Err(_) => Err(ClientError::Decode {
                status,
                body: String::from_utf8_lossy(bytes).into_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_is_read_and_trimmed() {
        let path = std::env::temp_dir().join(format!("nh-token-{}", std::process::id()));
        std::fs::write(&path, "secret-token\n").unwrap();
        let cfg = ClientConfig::with_token_file(vec!["http://h:1".into()], Some(&path)).unwrap();
        assert_eq!(cfg.token.as_deref(), Some("secret-token"));
        std::fs::remove_file(&path).unwrap();
        let e = ClientConfig::with_token_file(vec![], Some(&path)).unwrap_err();
        assert!(e.to_string().contains("token file"), "{e}");
    }
}
