//! The CNI environment of one call, validated: which variables each verb needs, the container
//! ID and ifname rules, and `CNI_ARGS`. libcni exports all six variables, possibly empty, so an
//! empty value counts as absent.

use std::collections::BTreeMap;

use crate::error::{CniError, INVALID_ENV};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }
}

/// Pod identity from `CNI_ARGS` (containerd and CRI-O set these).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct K8sArgs {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub infra_container_id: Option<String>,
    pub uid: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    pub command: Command,
    pub container_id: String,
    pub netns: Option<String>,
    pub ifname: String,
    pub args: K8sArgs,
}

fn get<'a>(env: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    env.get(key).map(|v| v.as_str()).filter(|v| !v.is_empty())
}

/// The command alone, so VERSION and errors can be answered before anything else is valid.
pub fn command(env: &BTreeMap<String, String>) -> Result<Command, CniError> {
    match get(env, "CNI_COMMAND") {
        Some("ADD") => Ok(Command::Add),
        Some("DEL") => Ok(Command::Del),
        Some("CHECK") => Ok(Command::Check),
        Some("STATUS") => Ok(Command::Status),
        Some("GC") => Ok(Command::Gc),
        Some("VERSION") => Ok(Command::Version),
        Some(other) => Err(CniError::new(
            INVALID_ENV,
            format!("CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, STATUS, GC, VERSION"),
        )),
        None => Err(CniError::new(INVALID_ENV, "CNI_COMMAND is missing")),
    }
}

pub fn parse(env: &BTreeMap<String, String>) -> Result<Invocation, CniError> {
    let command = command(env)?;
    let per_container = matches!(command, Command::Add | Command::Del | Command::Check);
    let mut missing = Vec::new();
    let mut need = |key: &'static str, required: bool| -> String {
        match get(env, key) {
            Some(v) => v.to_string(),
            None => {
                if required {
                    missing.push(key);
                }
                String::new()
            }
        }
    };
    let container_id = need("CNI_CONTAINERID", per_container);
    let ifname = need("CNI_IFNAME", per_container);
    let netns = need(
        "CNI_NETNS",
        matches!(command, Command::Add | Command::Check),
    );
    if !missing.is_empty() {
        return Err(CniError::new(
            INVALID_ENV,
            format!(
                "required environment variables missing for {}: {}",
                command.as_str(),
                missing.join(", ")
            ),
        ));
    }
    if per_container {
        validate_container_id(&container_id)?;
        validate_ifname(&ifname)?;
    }
    Ok(Invocation {
        command,
        container_id,
        netns: (!netns.is_empty()).then_some(netns),
        ifname,
        args: parse_args(get(env, "CNI_ARGS").unwrap_or(""))?,
    })
}

pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    if nethouse_api::cni_names::valid_container_id(id) {
        Ok(())
    } else {
        Err(CniError::new(
            INVALID_ENV,
            format!("CNI_CONTAINERID {id:?} must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"),
        ))
    }
}

pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    if nethouse_api::cni_names::valid_ifname(name) {
        Ok(())
    } else {
        Err(CniError::new(
            INVALID_ENV,
            format!(
                "CNI_IFNAME {name:?} must be 1-15 bytes, not '.' or '..', without '/', ':' or whitespace"
            ),
        ))
    }
}

/// `K1=V1;K2=V2`. Unknown keys are an error unless `IgnoreUnknown` is `1` or `true`.
pub fn parse_args(text: &str) -> Result<K8sArgs, CniError> {
    let mut out = K8sArgs::default();
    let mut unknown = Vec::new();
    let mut ignore_unknown = false;
    for pair in text.split(';').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(CniError::new(
                INVALID_ENV,
                format!("CNI_ARGS: {pair:?} is not KEY=VALUE"),
            ));
        };
        let v = Some(v.to_string()).filter(|v| !v.is_empty());
        match k {
            "K8S_POD_NAMESPACE" => out.namespace = v,
            "K8S_POD_NAME" => out.name = v,
            "K8S_POD_INFRA_CONTAINER_ID" => out.infra_container_id = v,
            "K8S_POD_UID" => out.uid = v,
            "IgnoreUnknown" => {
                ignore_unknown = match v.as_deref().unwrap_or("").to_ascii_lowercase().as_str() {
                    "1" | "true" => true,
                    "0" | "false" | "" => false,
                    other => {
                        return Err(CniError::new(
                            INVALID_ENV,
                            format!("CNI_ARGS: IgnoreUnknown={other:?} is not a boolean"),
                        ));
                    }
                }
            }
            other => unknown.push(other.to_string()),
        }
    }
    if !unknown.is_empty() && !ignore_unknown {
        return Err(CniError::new(
            INVALID_ENV,
            format!(
                "CNI_ARGS: unknown keys {} (set IgnoreUnknown=1 to allow them)",
                unknown.join(", ")
            ),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn add_needs_container_netns_ifname() {
        let e = parse(&env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", ""),
            ("CNI_IFNAME", "eth0"),
        ]))
        .unwrap_err();
        assert_eq!(e.code, INVALID_ENV);
        assert!(e.msg.contains("CNI_CONTAINERID, CNI_NETNS"), "{e}");
        let ok = parse(&env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=db;K8S_POD_NAME=redis-0;K8S_POD_UID=u;FOO=bar",
            ),
        ]))
        .unwrap();
        assert_eq!(ok.args.name.as_deref(), Some("redis-0"));
        assert_eq!(ok.args.namespace.as_deref(), Some("db"));
    }

    #[test]
    fn del_works_without_netns() {
        let ok = parse(&env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", ""),
            ("CNI_IFNAME", "eth0"),
        ]))
        .unwrap();
        assert_eq!(ok.netns, None);
    }

    #[test]
    fn status_and_gc_need_no_container() {
        for c in ["STATUS", "GC", "VERSION"] {
            assert!(parse(&env(&[("CNI_COMMAND", c)])).is_ok(), "{c}");
        }
    }

    #[test]
    fn bad_values() {
        assert_eq!(
            command(&env(&[("CNI_COMMAND", "ATTACH")]))
                .unwrap_err()
                .code,
            INVALID_ENV
        );
        assert_eq!(command(&env(&[])).unwrap_err().code, INVALID_ENV);
        assert!(validate_container_id("-x").is_err());
        assert!(validate_container_id("a/b").is_err());
        assert!(validate_ifname("..").is_err());
        assert!(validate_ifname("0123456789abcdef").is_err());
        assert!(validate_ifname("eth 0").is_err());
        let e = parse_args("K8S_POD_NAME=a;FOO=1").unwrap_err();
        assert!(e.msg.contains("FOO"), "{e}");
        assert!(parse_args("K8S_POD_NAME").is_err());
        assert!(parse_args("IgnoreUnknown=maybe").is_err());
        assert!(parse_args("IgnoreUnknown=true;X=1").is_ok());
    }
}
