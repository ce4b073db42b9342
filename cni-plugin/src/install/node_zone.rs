//! `--zone-from-node`: the zone is the node's `nethouse.io/network-zone` label, read with one GET
//! of the Node from the Kubernetes API as the pod's ServiceAccount (which needs `get` on nodes,
//! nothing else). So one DaemonSet serves every zone, and a node's zone is stated once, on the
//! node.
//!
//! The GET goes through [`nethouse_api::BlockingClient`], the transport every CNI call already
//! uses, so the plugin binary carries one HTTP client and one TLS set-up, and no async runtime.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nethouse_api::contract::ZONE_LABEL;
use nethouse_api::{BlockingClient, ClientConfig, ClientError, Setting};
use serde_json::Value;

use super::InstallError;

/// Where Kubernetes mounts a pod's ServiceAccount token and the cluster CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The whole GET, connection and TLS included. An API that does not answer in time fails the
/// install; the DaemonSet's init container is then restarted with back-off.
const DEADLINE: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The Kubernetes API as a pod sees it: base URL, ServiceAccount token, cluster CA.
#[derive(Debug, Clone)]
pub struct ApiServer {
    pub base: String,
    pub token: String,
    /// PEM bundle, the only roots trusted (`None` only for plain-http test servers).
    pub ca_file: Option<PathBuf>,
}

impl ApiServer {
    /// `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` with the token and CA that
    /// Kubernetes mounts under [`SERVICE_ACCOUNT_DIR`].
    pub fn in_cluster(
        env: &dyn Fn(&str) -> Option<String>,
        sa_dir: &Path,
    ) -> Result<Self, InstallError> {
        let var = |var: &'static str| {
            env(var)
                .filter(|v| !v.is_empty())
                .ok_or(InstallError::InClusterEnv { var })
        };
        let host = var("KUBERNETES_SERVICE_HOST")?;
        let port = var("KUBERNETES_SERVICE_PORT")?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let token = read_mounted(&sa_dir.join("token"))?;
        Ok(ApiServer {
            base: format!("https://{host}:{port}"),
            token: String::from_utf8_lossy(&token).trim().to_string(),
            ca_file: Some(sa_dir.join("ca.crt")),
        })
    }
}

fn read_mounted(path: &Path) -> Result<Vec<u8>, InstallError> {
    std::fs::read(path).map_err(|source| InstallError::ServiceAccountFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads `node`'s zone label from the API server: one GET, [`DEADLINE`] for all of it.
pub fn node_zone(api: &ApiServer, node: &str) -> Result<String, InstallError> {
    // The name goes into the request path as it is.
    let valid = !node.is_empty()
        && node.len() <= 253
        && node
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid {
        return Err(InstallError::NodeName {
            node: node.to_string(),
        });
    }
    let mut config = ClientConfig::new(api.base.clone());
    config.token = Some(api.token.clone());
    config.timeout = DEADLINE;
    config.connect_timeout = CONNECT_TIMEOUT;
    if let Some(path) = &api.ca_file {
        config.ca_pem = Some(read_mounted(path)?);
    }
    let client = BlockingClient::new(config)
        .map_err(|e| client_error(api, e))?
        .with_deadline(Instant::now() + DEADLINE);
    let path = format!("/api/v1/nodes/{node}");
    let (status, body) = client.get(&path).map_err(|e| client_error(api, e))?;
    match status.as_u16() {
        200 => zone_from_node_json(node, &body),
        401 | 403 => Err(InstallError::NodeForbidden {
            node: node.to_string(),
            status: status.to_string(),
        }),
        404 => Err(InstallError::NodeNotFound {
            node: node.to_string(),
        }),
        _ => Err(InstallError::NodeAnswer {
            url: format!("{}{path}", api.base),
            status: status.to_string(),
            body: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
        }),
    }
}

/// The client's error in the API server's terms (its messages speak of NetHouse).
fn client_error(api: &ApiServer, e: ClientError) -> InstallError {
    match e {
        ClientError::Config { setting, message } => InstallError::ApiConfig {
            what: match (setting, &api.ca_file) {
                (Setting::CaBundle, Some(path)) => format!("the cluster CA {}", path.display()),
                (Setting::CaBundle, None) => "the cluster CA".into(),
                (Setting::Token, _) => "the ServiceAccount token".into(),
                (Setting::Servers, _) => format!(
                    "the API server URL {} ($KUBERNETES_SERVICE_HOST, $KUBERNETES_SERVICE_PORT)",
                    api.base
                ),
                (Setting::Other, _) => "the HTTP client".into(),
            },
            message,
        },
        ClientError::Unreachable { source, .. } => InstallError::ApiUnreachable {
            base: api.base.clone(),
            source,
        },
        // An answer that broke off, with the status it began with.
        ClientError::Decode { status, body } => InstallError::NodeAnswer {
            url: api.base.clone(),
            status: status.to_string(),
            body,
        },
        ClientError::Api { status, error } => InstallError::NodeAnswer {
            url: api.base.clone(),
            status: status.to_string(),
            body: error.to_string(),
        },
    }
}

/// The zone label of a Node, from the JSON the API server answers to `GET /api/v1/nodes/NAME`.
pub fn zone_from_node_json(node: &str, body: &[u8]) -> Result<String, InstallError> {
    let v: Value = serde_json::from_slice(body).map_err(|source| InstallError::NodeNotJson {
        node: node.to_string(),
        source,
    })?;
    if v.get("kind").and_then(Value::as_str) != Some("Node") {
        return Err(InstallError::NotANode {
            node: node.to_string(),
        });
    }
    match v
        .pointer("/metadata/labels")
        .and_then(|l| l.get(ZONE_LABEL))
    {
        Some(Value::String(z)) if !z.is_empty() => Ok(z.clone()),
        _ => Err(InstallError::NoZoneLabel {
            node: node.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::fake_api::{fake_api, tls_files, tls_server};

    const NODE: &str =
        r#"{"kind":"Node","metadata":{"name":"n1","labels":{"nethouse.io/network-zone":"z9"}}}"#;

    #[test]
    fn zone_label_from_node_json() {
        let node = r#"{"kind":"Node","apiVersion":"v1","metadata":{"name":"n1",
            "labels":{"kubernetes.io/hostname":"n1","nethouse.io/network-zone":"rack-a"}},
            "status":{}}"#;
        assert_eq!(
            zone_from_node_json("n1", node.as_bytes()).unwrap(),
            "rack-a"
        );

        let unlabelled = r#"{"kind":"Node","metadata":{"name":"n1","labels":{"a":"b"}}}"#;
        let e = zone_from_node_json("n1", unlabelled.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--zone-from-node")
                && e.contains("node n1 has no nethouse.io/network-zone label"),
            "{e}"
        );
        let no_labels = r#"{"kind":"Node","metadata":{"name":"n1"}}"#;
        let e = zone_from_node_json("n1", no_labels.as_bytes()).unwrap_err();
        assert!(matches!(e, InstallError::NoZoneLabel { .. }), "{e}");
        let empty = r#"{"kind":"Node","metadata":{"labels":{"nethouse.io/network-zone":""}}}"#;
        assert!(zone_from_node_json("n1", empty.as_bytes()).is_err());
        let status = r#"{"kind":"Status","status":"Failure","code":404}"#;
        let e = zone_from_node_json("n1", status.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("not a Node"), "{e}");
        let e = zone_from_node_json("n1", b"<html>").unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
    }

    #[test]
    fn node_zone_over_http() {
        let mut answers = vec![
            (200, NODE.to_string()),
            (403, "{}".into()),
            (404, "{}".into()),
        ]
        .into_iter();
        let (base, heads) = fake_api(None, 3, move |_| answers.next().unwrap());
        let api = ApiServer {
            base,
            token: "sa-token".into(),
            ca_file: None,
        };
        assert_eq!(node_zone(&api, "n1").unwrap(), "z9");
        let head = heads.recv().unwrap();
        assert!(head.starts_with("get /api/v1/nodes/n1 "), "{head}");
        assert!(head.contains("authorization: bearer sa-token"), "{head}");
        let e = node_zone(&api, "n1").unwrap_err().to_string();
        assert!(e.contains("needs get on nodes"), "{e}");
        let e = node_zone(&api, "n1").unwrap_err().to_string();
        assert!(e.contains("node n1 does not exist"), "{e}");
        let e = node_zone(&api, "../secrets").unwrap_err().to_string();
        assert!(e.contains("not a Kubernetes node name"), "{e}");
        // Nothing listens there any more.
        let gone = ApiServer {
            base: "http://127.0.0.1:1".into(),
            ..api
        };
        let e = node_zone(&gone, "n1").unwrap_err();
        assert!(matches!(e, InstallError::ApiUnreachable { .. }), "{e}");
        assert!(
            e.to_string().contains("cannot reach the Kubernetes API"),
            "{e}"
        );
    }

    /// The way it runs in a pod: in-cluster settings, the API over HTTPS with the cluster CA.
    #[test]
    fn node_zone_over_https_with_the_service_account() {
        let pki = tempfile::tempdir().unwrap();
        let (ca, cert, key) = tls_files(pki.path());
        // The Node for the ServiceAccount's token, 401 for any other.
        let (base, seen) = fake_api(Some(tls_server(&cert, &key)), 3, |head| {
            if head.contains("authorization: bearer sa-token\r\n") {
                (200, NODE.to_string())
            } else {
                (401, r#"{"kind":"Status","code":401}"#.into())
            }
        });
        let port = base.rsplit(':').next().unwrap().to_string();

        let sa = tempfile::tempdir().unwrap();
        std::fs::write(sa.path().join("token"), "sa-token\n").unwrap();
        std::fs::copy(&ca, sa.path().join("ca.crt")).unwrap();
        let env = move |k: &str| match k {
            "KUBERNETES_SERVICE_HOST" => Some("127.0.0.1".to_string()),
            "KUBERNETES_SERVICE_PORT" => Some(port.clone()),
            _ => None,
        };
        let api = ApiServer::in_cluster(&env, sa.path()).unwrap();
        assert_eq!(api.base, base);
        assert_eq!(node_zone(&api, "n1").unwrap(), "z9");
        let head = seen.recv().unwrap();
        assert!(head.starts_with("get /api/v1/nodes/n1 "), "{head}");

        let other_token = ApiServer {
            token: "someone-else".into(),
            ..api.clone()
        };
        let e = node_zone(&other_token, "n1").unwrap_err();
        assert!(matches!(e, InstallError::NodeForbidden { .. }), "{e}");
        seen.recv().unwrap();

        // Another CA's certificate is refused before the token is sent.
        let other = tempfile::tempdir().unwrap();
        let (other_ca, _, _) = tls_files(other.path());
        let untrusted = ApiServer {
            ca_file: Some(other_ca),
            ..api.clone()
        };
        let e = node_zone(&untrusted, "n1").unwrap_err();
        assert!(matches!(e, InstallError::ApiUnreachable { .. }), "{e}");
        assert!(e.to_string().contains("certificate"), "{e}");
        let server_saw = seen.recv().unwrap();
        assert!(server_saw.starts_with("failed:"), "{server_saw}");

        // A CA file that holds no certificate names the file.
        std::fs::write(sa.path().join("ca.crt"), "not pem").unwrap();
        let e = node_zone(&api, "n1").unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "the cluster CA {}",
                sa.path().join("ca.crt").display()
            )),
            "{e}"
        );
    }

    #[test]
    fn in_cluster_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "tok\n").unwrap();
        let env = |k: &str| match k {
            "KUBERNETES_SERVICE_HOST" => Some("fd00::1".to_string()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_string()),
            _ => None,
        };
        let api = ApiServer::in_cluster(&env, dir.path()).unwrap();
        assert_eq!(api.base, "https://[fd00::1]:443");
        assert_eq!(api.token, "tok");
        assert_eq!(api.ca_file, Some(dir.path().join("ca.crt")));
        let e = ApiServer::in_cluster(&|_: &str| None, dir.path()).unwrap_err();
        assert!(e.to_string().contains("KUBERNETES_SERVICE_HOST"), "{e}");
        std::fs::remove_file(dir.path().join("token")).unwrap();
        let e = ApiServer::in_cluster(&env, dir.path()).unwrap_err();
        assert!(matches!(e, InstallError::ServiceAccountFile { .. }), "{e}");
        assert!(e.to_string().contains("token"), "{e}");
        // A missing CA file fails before any connection, naming it.
        let api = ApiServer {
            ca_file: Some(dir.path().join("ca.crt")),
            ..api
        };
        let e = node_zone(&api, "n1").unwrap_err().to_string();
        assert!(e.contains("ca.crt") && e.contains("mounted"), "{e}");
    }
}
