//! Why an install failed. The DaemonSet's init container prints this and exits, and an operator
//! reads it in `kubectl logs`: every variant is named after the step that failed and says which
//! flag, file or setting to look at, so the fix is in the message.

use std::io;
use std::path::PathBuf;

use nethouse_api::contract::ZONE_LABEL;

use super::args::USAGE;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    // The command line.
    #[error("{flag} needs a value\n{USAGE}")]
    FlagValue { flag: String },
    #[error("unknown flag {flag:?}\n{USAGE}")]
    UnknownFlag { flag: String },
    #[error("{USAGE}")]
    Help,
    #[error("--zone and --zone-from-node exclude each other\n{USAGE}")]
    ZoneFlags,
    #[error("{flag} is required\n{USAGE}")]
    RequiredFlag { flag: &'static str },
    #[error("--node not given and the host name is unreadable ({path}): {source}")]
    HostName {
        path: &'static str,
        #[source]
        source: io::Error,
    },

    // `--zone-from-node`: the node's zone from the Kubernetes API.
    #[error("--zone-from-node: ${var} is not set (not running in a Kubernetes pod?)")]
    InClusterEnv { var: &'static str },
    #[error(
        "--zone-from-node: reading {}: {source} (is the ServiceAccount token mounted?)",
        path.display()
    )]
    ServiceAccountFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--zone-from-node: {node:?} is not a Kubernetes node name (set --node or $NODE_NAME)")]
    NodeName { node: String },
    /// The API client refused its settings: `what` names the setting (the cluster CA file, the
    /// ServiceAccount token, the API server's address).
    #[error("--zone-from-node: {what}: {message}")]
    ApiConfig { what: String, message: String },
    #[error(
        "--zone-from-node: cannot reach the Kubernetes API at {base} (or it is not trusted): {source}"
    )]
    ApiUnreachable {
        base: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "--zone-from-node: the Kubernetes API refused to get node {node} ({status}); the pod's \
         ServiceAccount needs get on nodes (ClusterRole nethouse-cni)"
    )]
    NodeForbidden { node: String, status: String },
    #[error(
        "--zone-from-node: node {node} does not exist (set --node or $NODE_NAME to this node's name)"
    )]
    NodeNotFound { node: String },
    #[error("--zone-from-node: GET {url}: {status}: {body}")]
    NodeAnswer {
        url: String,
        status: String,
        body: String,
    },
    #[error("--zone-from-node: the API's answer for node {node} is not JSON: {source}")]
    NodeNotJson {
        node: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("--zone-from-node: the API's answer for node {node} is not a Node")]
    NotANode { node: String },
    #[error(
        "--zone-from-node: node {node} has no {ZONE_LABEL} label; label it \
         (kubectl label node {node} {ZONE_LABEL}=ZONE) or pass --zone"
    )]
    NoZoneLabel { node: String },

    // The conflist: template, render, check, `--resolve-servers`.
    #[error("reading --template {}: {source}", path.display())]
    ReadTemplate {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("rendered conflist is not JSON: {source}")]
    ConflistJson {
        #[source]
        source: serde_json::Error,
    },
    #[error("rendered conflist has no \"plugins\" array")]
    ConflistPlugins,
    #[error("rendered conflist has no plugin with \"ipam\": {{\"type\": \"nethouse-cni\"}}")]
    ConflistNotOurs,
    /// The plugin's own config check refused an entry; `message` names the `ipam` key.
    #[error("plugins[{index}]: {message}")]
    ConflistIpam { index: usize, message: String },
    #[error("plugins[{index}].ipam.hosts is not an object")]
    ConflistHosts { index: usize },
    #[error("plugins[{index}].ipam.servers: {url:?}: {source}")]
    ServerUrl {
        index: usize,
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("--resolve-servers: {url}: {message}")]
    ResolveServer { url: String, message: String },
    #[error("writing the conflist: {source}")]
    ConflistEncode {
        #[source]
        source: serde_json::Error,
    },

    // The files: this binary, the credentials, the conflist.
    #[error("locating this binary: {source}")]
    LocateBinary {
        #[source]
        source: io::Error,
    },
    #[error("reading {}: {source}", path.display())]
    ReadBinary {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} has no parent directory", path.display())]
    NoParentDir { path: PathBuf },
    #[error("creating {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {}: {source}", path.display())]
    WriteFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--copy-credentials {}: {source}", path.display())]
    CredentialsDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--copy-credentials: reading {}: {source}", path.display())]
    ReadCredential {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--copy-credentials {}: no files to copy (is the Secret mounted?)", path.display())]
    NoCredentials { path: PathBuf },

    // `--keep-token`: the node's token kept current on the host.
    #[error("--keep-token SRC DST [--every SECONDS]: {problem}\n{USAGE}")]
    KeepTokenUsage { problem: String },
    #[error("--keep-token: reading {}: {source} (is the projected token mounted?)", path.display())]
    KeepTokenRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("--keep-token: {} is empty", path.display())]
    KeepTokenEmpty { path: PathBuf },
    #[error("--keep-token: installing the SIGTERM handler: {source}")]
    Signal {
        #[source]
        source: io::Error,
    },
}
