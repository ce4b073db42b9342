//! The network configuration on stdin. An IPAM plugin receives the WHOLE main-plugin config;
//! only `cniVersion`, `name`, `ipam`, `runtimeConfig`, `args`, `prevResult` and the GC keys
//! are read here — the main plugin's own keys are not our business.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{CniError, DECODE_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG};

/// Versions this plugin speaks, oldest first; VERSION lists them.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

pub const DEFAULT_CLUSTER: &str = "default";
pub const DEFAULT_TIMEOUT_SECONDS: f64 = 10.0;
pub const DEFAULT_REQUEST_TIMEOUT_SECONDS: f64 = 3.0;

/// The `ipam` section. Unknown keys are refused, so a typo never silently falls back to a
/// default.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpamConf {
    #[serde(rename = "type")]
    pub kind: String,
    /// NetHouse URLs, tried in order.
    pub servers: Vec<String>,
    /// Addresses for the servers' host names, used instead of the host's resolver (which
    /// rarely knows an in-cluster Service name); TLS still verifies the name.
    /// `nethouse-cni install --resolve-servers` writes them.
    #[serde(default)]
    pub hosts: BTreeMap<String, String>,
    /// File with the `node` role's bearer token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle for https servers.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// This node's network zone (the `nethouse.io/network-zone` label of the Node).
    pub zone: String,
    /// This node's name. Default: the host name.
    #[serde(default)]
    pub node: Option<String>,
    /// Cluster name, part of a fixed lease's owner. Default `default`.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Deadline of the whole call. Default 10.
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
    /// Deadline of one HTTP exchange with one server. Default 3.
    #[serde(default)]
    pub request_timeout_seconds: Option<f64>,
    /// Append one JSON line per call here instead of stderr.
    #[serde(default)]
    pub log_file: Option<PathBuf>,
}

impl IpamConf {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(
            self.request_timeout_seconds
                .unwrap_or(DEFAULT_REQUEST_TIMEOUT_SECONDS),
        )
    }

    pub fn cluster(&self) -> &str {
        self.cluster.as_deref().unwrap_or(DEFAULT_CLUSTER)
    }

    fn validate(&self) -> Result<(), CniError> {
        let bad = |key: &str, why: String| {
            Err(CniError::new(INVALID_CONFIG, format!("ipam.{key}: {why}")))
        };
        if self.servers.is_empty() {
            return bad("servers", "must list at least one NetHouse URL".into());
        }
        for (i, s) in self.servers.iter().enumerate() {
            if !(s.starts_with("http://") || s.starts_with("https://")) {
                return bad(
                    &format!("servers[{i}]"),
                    format!("{s:?} must start with http:// or https://"),
                );
            }
        }
        for (name, ip) in &self.hosts {
            if name.is_empty() || name.parse::<std::net::IpAddr>().is_ok() {
                return bad("hosts", format!("{name:?} must be a host name"));
            }
            if ip.parse::<std::net::IpAddr>().is_err() {
                return bad(
                    &format!("hosts.{name}"),
                    format!("{ip:?} is not an IP address"),
                );
            }
        }
        if self.zone.is_empty() {
            return bad("zone", "must not be empty".into());
        }
        for (key, v) in [
            ("timeoutSeconds", self.timeout_seconds),
            ("requestTimeoutSeconds", self.request_timeout_seconds),
        ] {
            if let Some(v) = v
                && !(v > 0.0 && v <= 300.0)
            {
                return bad(key, format!("{v} must be in (0, 300]"));
            }
        }
        if matches!(&self.node, Some(n) if n.is_empty()) {
            return bad("node", "must not be empty".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidAttachment {
    pub container_id: String,
    pub ifname: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub ipam: IpamConf,
    /// `runtimeConfig["io.kubernetes.cri.pod-annotations"]`.
    pub annotations: Option<BTreeMap<String, String>>,
    /// `args.cni.labels`.
    pub labels: Option<BTreeMap<String, String>>,
    pub prev_result: Option<Value>,
    /// GC: `cni.dev/valid-attachments` (or libcni's older `cni.dev/attachments`).
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(INVALID_CONFIG, msg)
}

/// The `cniVersion` alone: errors are reported in it, and VERSION needs nothing else.
pub fn version_of(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_string)
}

pub fn check_version(v: &str) -> Result<(), CniError> {
    if SUPPORTED_VERSIONS.contains(&v) {
        Ok(())
    } else {
        Err(CniError::new(
            INCOMPATIBLE_VERSION,
            format!(
                "incompatible CNI version {v:?}; nethouse-cni supports {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        ))
    }
}

pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
    let root: Value = serde_json::from_slice(stdin)
        .map_err(|e| CniError::new(DECODE_FAILURE, format!("network config is not JSON: {e}")))?;
    let Value::Object(root) = root else {
        return Err(CniError::new(
            DECODE_FAILURE,
            "network config is not a JSON object",
        ));
    };
    let cni_version = match root.get("cniVersion") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(invalid(format!("cniVersion: {other} is not a string"))),
        None => return Err(invalid("cniVersion: missing")),
    };
    check_version(&cni_version)?;
    let name = match root.get("name") {
        Some(Value::String(s)) => s.clone(),
        None => String::new(),
        Some(other) => return Err(invalid(format!("name: {other} is not a string"))),
    };
    let ipam_value = root.get("ipam").ok_or_else(|| invalid("ipam: missing"))?;
    let ipam: IpamConf = serde_path_to_error::deserialize(ipam_value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            invalid(format!("ipam: {inner}"))
        } else {
            invalid(format!("ipam.{path}: {inner}"))
        }
    })?;
    ipam.validate()?;

    let annotations = match root
        .get("runtimeConfig")
        .and_then(|r| r.get("io.kubernetes.cri.pod-annotations"))
    {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                let v = v.as_str().ok_or_else(|| {
                    invalid(format!(
                        "runtimeConfig.io.kubernetes.cri.pod-annotations.{k}: {v} is not a string"
                    ))
                })?;
                out.insert(k.clone(), v.to_string());
            }
            Some(out)
        }
        Some(other) => {
            return Err(invalid(format!(
                "runtimeConfig.io.kubernetes.cri.pod-annotations: {other} is not an object"
            )));
        }
    };

    let labels = match root
        .get("args")
        .and_then(|a| a.get("cni"))
        .and_then(|c| c.get("labels"))
    {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut out = BTreeMap::new();
            for (i, item) in items.iter().enumerate() {
                let (Some(k), Some(v)) = (
                    item.get("key").and_then(Value::as_str),
                    item.get("value").and_then(Value::as_str),
                ) else {
                    return Err(invalid(format!(
                        "args.cni.labels[{i}]: expected {{\"key\": string, \"value\": string}}"
                    )));
                };
                out.insert(k.to_string(), v.to_string());
            }
            Some(out)
        }
        Some(other) => return Err(invalid(format!("args.cni.labels: {other} is not an array"))),
    };

    let valid_attachments = match root
        .get("cni.dev/valid-attachments")
        .or_else(|| root.get("cni.dev/attachments"))
    {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let (Some(c), Some(n)) = (
                    item.get("containerID").and_then(Value::as_str),
                    item.get("ifname").and_then(Value::as_str),
                ) else {
                    return Err(invalid(format!(
                        "cni.dev/valid-attachments[{i}]: expected {{\"containerID\": string, \"ifname\": string}}"
                    )));
                };
                out.push(ValidAttachment {
                    container_id: c.to_string(),
                    ifname: n.to_string(),
                });
            }
            Some(out)
        }
        Some(other) => {
            return Err(invalid(format!(
                "cni.dev/valid-attachments: {other} is not an array"
            )));
        }
    };

    Ok(NetConf {
        cni_version,
        name,
        ipam,
        annotations,
        labels,
        prev_result: root.get("prevResult").filter(|v| !v.is_null()).cloned(),
        valid_attachments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"cniVersion":"1.0.0","name":"podnet","type":"bridge","bridge":"cni0",
        "ipam":{"type":"nethouse-cni","servers":["http://127.0.0.1:7420"],"zone":"z1"}}"#;

    fn with_ipam(ipam: &str) -> String {
        format!(r#"{{"cniVersion":"1.0.0","name":"n","ipam":{ipam}}}"#)
    }

    #[test]
    fn minimal_config_and_defaults() {
        let c = parse(BASE.as_bytes()).unwrap();
        assert_eq!(c.ipam.zone, "z1");
        assert_eq!(c.ipam.cluster(), "default");
        assert_eq!(c.ipam.timeout(), Duration::from_secs(10));
        assert_eq!(c.annotations, None);
    }

    #[test]
    fn annotations_labels_and_gc_list() {
        let text = r#"{"cniVersion":"1.1.0","name":"n",
            "ipam":{"type":"nethouse-cni","servers":["http://h:1"],"zone":"z"},
            "runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"nethouse.io/fixed-ip":"true"}},
            "args":{"cni":{"labels":[{"key":"app","value":"redis"}]}},
            "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#;
        let c = parse(text.as_bytes()).unwrap();
        assert_eq!(c.annotations.unwrap()["nethouse.io/fixed-ip"], "true");
        assert_eq!(c.labels.unwrap()["app"], "redis");
        assert_eq!(c.valid_attachments.unwrap()[0].container_id, "c1");
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&str, u32, &str)] = &[
            ("nope", DECODE_FAILURE, "not JSON"),
            ("[]", DECODE_FAILURE, "not a JSON object"),
            (r#"{"name":"n"}"#, INVALID_CONFIG, "cniVersion: missing"),
            (
                r#"{"cniVersion":"0.2.0","name":"n"}"#,
                INCOMPATIBLE_VERSION,
                "0.2.0",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n"}"#,
                INVALID_CONFIG,
                "ipam: missing",
            ),
        ];
        for (text, code, needle) in cases {
            let e = parse(text.as_bytes()).unwrap_err();
            assert_eq!(e.code, *code, "{text}: {e}");
            assert!(e.msg.contains(needle), "{text}: {e}");
        }
        let ipam_cases: &[(&str, &str)] = &[
            (
                r#"{"type":"nethouse-cni","servers":["http://h:1"],"zone":"z","zonee":"y"}"#,
                "unknown field `zonee`",
            ),
            (
                r#"{"type":"nethouse-cni","servers":["http://h:1"]}"#,
                "missing field `zone`",
            ),
            (
                r#"{"type":"nethouse-cni","servers":[],"zone":"z"}"#,
                "ipam.servers",
            ),
            (
                r#"{"type":"nethouse-cni","servers":["h:1"],"zone":"z"}"#,
                "ipam.servers[0]",
            ),
            (
                r#"{"type":"nethouse-cni","servers":["http://h:1"],"zone":"z","hosts":{"h":"ten"}}"#,
                "ipam.hosts.h: \"ten\" is not an IP address",
            ),
            (
                r#"{"type":"nethouse-cni","servers":["http://h:1"],"zone":"z","hosts":{"10.0.0.1":"10.0.0.2"}}"#,
                "ipam.hosts: \"10.0.0.1\" must be a host name",
            ),
            (
                r#"{"type":"nethouse-cni","servers":["http://h:1"],"zone":"z","hosts":["h"]}"#,
                "ipam.hosts",
            ),
            (
                r#"{"type":"nethouse-cni","servers":["http://h:1"],"zone":"z","timeoutSeconds":0}"#,
                "ipam.timeoutSeconds",
            ),
            (
                r#"{"type":"nethouse-cni","servers":["http://h:1"],"zone":5}"#,
                "ipam.zone",
            ),
        ];
        for (ipam, needle) in ipam_cases {
            let e = parse(with_ipam(ipam).as_bytes()).unwrap_err();
            assert_eq!(e.code, INVALID_CONFIG, "{ipam}: {e}");
            assert!(e.msg.contains(needle), "{ipam}: {e}");
        }
    }
}
