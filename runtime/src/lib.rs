//! The plumbing every long-running NetHouse binary shares, so that each `main.rs` only wires its
//! own parts (as linkerd's controllers flatten kubert's arguments):
//!
//! - [`args`]: the flags for the NetHouse connection and (feature `kube`) the Kubernetes API,
//!   flattened into each binary's clap arguments, and the clients they make;
//! - [`logs`]: one tracing set-up (`--log-format text|json`, `RUST_LOG`);
//! - [`shutdown`]: the signal Kubernetes sends (SIGTERM) or Ctrl-C;
//! - [`serve`]: HTTP(S) serving with readiness that turns 503 before the listener closes and
//!   in-flight requests that finish;
//! - [`limits`]: header and request timeouts and a connection limit, so slow or idle clients
//!   cannot hold a server;
//! - [`metrics`]: the `/metrics` response of a prometheus-client registry.
#![forbid(unsafe_code)]

pub mod args;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod serve;
pub mod shutdown;
pub mod tls;

/// What setting up a binary's plumbing can fail on; each variant names the flag or file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[cfg(feature = "kube")]
    #[error("--kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[cfg(feature = "kube")]
    #[error("no Kubernetes configuration (in-cluster or ~/.kube/config): {0}")]
    KubeInfer(#[source] kube::config::InferConfigError),
    #[cfg(feature = "kube")]
    #[error("building the Kubernetes client: {0}")]
    KubeClient(#[source] kube::Error),
    #[error("{flag}: {source}")]
    NetHouse {
        flag: &'static str,
        #[source]
        source: nethouse_api::ClientError,
    },
    #[error("--tls-cert {cert} / --tls-key {key}: {source}")]
    Tls {
        cert: String,
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{flag} {path}: {message}")]
    TlsFile {
        flag: &'static str,
        path: String,
        message: String,
    },
    #[error("could not listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
