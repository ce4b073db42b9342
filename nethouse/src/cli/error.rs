//! What a `nethouse` command can fail with, one variant per step or flag, so `main` prints one
//! line that says which flag or which call to fix.

use nethouse_api::ClientError;

use crate::server::running::StartError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("--token-file: {0}")]
    TokenFile(#[source] ClientError),
    #[error("--ca-file: {0}")]
    CaFile(#[source] ClientError),
    #[error("--server: {0}")]
    Server(#[source] ClientError),
    /// The server refused the request or could not be reached.
    #[error(transparent)]
    Request(#[from] ClientError),
    #[error("printing JSON: {0}")]
    Print(#[from] serde_json::Error),
    #[error("--route {text:?}: expected DST or DST,GW")]
    Route { text: String },
    #[error("{target:?}: expected an IP, NAMESPACE/POD or CLUSTER/NAMESPACE/POD")]
    Target { target: String },
    #[error("--auth-file: {0}")]
    AuthFile(String),
    /// A flag, or flags that do not go together; the text starts with the flag.
    #[error("{0}")]
    Flag(String),
    /// `store migrate`: what failed, and that the target is as it was or incomplete.
    #[error("store migrate: {0}")]
    Migrate(String),
    /// The etcd flags (the text names which).
    #[error(transparent)]
    Etcd(crate::store::etcd::ConnectError),
    /// The Kubernetes client of `--node-token-review` (the text names `--kubeconfig` or the
    /// in-cluster configuration).
    #[error("--node-token-review: {0}")]
    NodeTokenReview(#[source] nethouse_runtime::Error),
    #[error("writing --ready-file: {0}")]
    ReadyFile(#[source] std::io::Error),
    #[error(
        "store file {} is empty (0 bytes): starting on it would forget every lease. Restore it \
         from a backup, or, for a new store, delete it",
        path.display()
    )]
    EmptyStore { path: std::path::PathBuf },
    #[error(transparent)]
    Start(#[from] StartError),
}
