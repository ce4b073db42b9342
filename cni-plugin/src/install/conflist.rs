//! The conflist: the template filled with this node's name and zone, then checked with the
//! plugin's own config parser, so that a config the plugin would refuse fails the install once
//! instead of every pod start on the node. `--resolve-servers` pins the servers' addresses into
//! it, because the plugin runs on the host, whose resolver rarely knows a Service name.

use std::net::IpAddr;

use serde_json::Value;

use super::InstallError;

/// Fills the template and checks the result is a conflist whose nethouse-cni entries this
/// plugin would accept.
pub fn render(template: &str, node: &str, zone: &str) -> Result<String, InstallError> {
    let text = template
        .replace("${NODE_NAME}", node)
        .replace("${NETWORK_ZONE}", zone);
    check_conflist(&text)?;
    Ok(text)
}

/// Whether `text` is a conflist whose nethouse-cni entries this plugin would accept.
pub(super) fn check_conflist(text: &str) -> Result<(), InstallError> {
    let root: Value =
        serde_json::from_str(text).map_err(|source| InstallError::ConflistJson { source })?;
    let version = root.get("cniVersion").cloned().unwrap_or(Value::Null);
    let plugins = root
        .get("plugins")
        .and_then(Value::as_array)
        .ok_or(InstallError::ConflistPlugins)?;
    let mut ours = 0;
    for (index, p) in plugins.iter().enumerate() {
        let Some(ipam) = p
            .get("ipam")
            .filter(|ipam| ipam.get("type").and_then(Value::as_str) == Some("nethouse-cni"))
        else {
            continue;
        };
        ours += 1;
        let probe =
            serde_json::json!({"cniVersion": version, "name": root.get("name"), "ipam": ipam});
        crate::conf::parse(probe.to_string().as_bytes()).map_err(|e| {
            InstallError::ConflistIpam {
                index,
                message: e.msg,
            }
        })?;
    }
    if ours == 0 {
        return Err(InstallError::ConflistNotOurs);
    }
    Ok(())
}

/// Adds to every nethouse-cni `ipam` of a rendered conflist the address of each server host
/// name that the template does not already map (`ipam.hosts`), found with `resolve`. Address
/// URLs need nothing. Returns the conflist and the names it pinned.
pub fn pin_hosts(
    conflist: &str,
    resolve: &dyn Fn(&str) -> Result<IpAddr, String>,
) -> Result<(String, Vec<String>), InstallError> {
    let mut root: Value =
        serde_json::from_str(conflist).map_err(|source| InstallError::ConflistJson { source })?;
    let mut pinned = Vec::new();
    let plugins = root
        .get_mut("plugins")
        .and_then(Value::as_array_mut)
        .ok_or(InstallError::ConflistPlugins)?;
    for (index, p) in plugins.iter_mut().enumerate() {
        let Some(ipam) = p
            .get_mut("ipam")
            .filter(|ipam| ipam.get("type").and_then(Value::as_str) == Some("nethouse-cni"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let servers: Vec<String> = ipam
            .get("servers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let hosts = ipam
            .entry("hosts")
            .or_insert_with(|| Value::Object(Default::default()))
            .as_object_mut()
            .ok_or(InstallError::ConflistHosts { index })?;
        for url in servers {
            let parsed = url::Url::parse(&url).map_err(|source| InstallError::ServerUrl {
                index,
                url: url.clone(),
                source,
            })?;
            let Some(name) = parsed.host_str() else {
                continue;
            };
            let bare = name.trim_start_matches('[').trim_end_matches(']');
            if bare.parse::<IpAddr>().is_ok() || hosts.contains_key(name) {
                continue;
            }
            let ip =
                resolve(name).map_err(|message| InstallError::ResolveServer { url, message })?;
            hosts.insert(name.to_string(), Value::String(ip.to_string()));
            pinned.push(format!("{name}={ip}"));
        }
    }
    let text = serde_json::to_string_pretty(&root)
        .map_err(|source| InstallError::ConflistEncode { source })?;
    Ok((text + "\n", pinned))
}

/// How the install finds a server's address: a Service of the pod's own `namespace` from the
/// environment the kubelet gives the pod ([`service_env`]), else the system resolver. Cluster
/// DNS cannot be relied on here: its pods need the pod network this install is setting up (on a
/// cluster whose only pod network is this one, the DNS query would wait for itself forever).
pub(super) fn resolve(
    name: &str,
    namespace: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<IpAddr, String> {
    match service_env(name, namespace, env) {
        Some(ip) => Ok(ip),
        None => system_resolve(name),
    }
}

/// `<service>.<namespace>.svc[.<cluster domain>]` of the pod's own namespace: the kubelet puts
/// `<SERVICE>_SERVICE_HOST` (the ClusterIP) into the environment of a pod for every Service of
/// its namespace that existed when the container started.
fn service_env(
    name: &str,
    namespace: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<IpAddr> {
    let mut labels = name.trim_end_matches('.').split('.');
    let (service, ns, svc) = (labels.next()?, labels.next()?, labels.next()?);
    if svc != "svc" || Some(ns) != namespace {
        return None;
    }
    let key = format!("{}_SERVICE_HOST", service.to_uppercase().replace('-', "_"));
    env(&key)?.parse().ok()
}

/// The first address this process's resolver gives for `name`.
fn system_resolve(name: &str) -> Result<IpAddr, String> {
    use std::net::ToSocketAddrs;
    (name, 0)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {name}: {e}"))?
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| format!("resolving {name}: no address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::tests::TEMPLATE;

    #[test]
    fn renders_and_validates() {
        let out = render(TEMPLATE, "n1", "rack-a").unwrap();
        assert!(out.contains(r#""zone":"rack-a""#) && out.contains(r#""node":"n1""#));
        let e = render("{}", "n", "z").unwrap_err();
        assert!(matches!(e, InstallError::ConflistPlugins), "{e}");
        assert!(e.to_string().contains("plugins"), "{e}");
        let bad = TEMPLATE.replace("\"servers\":[\"http://10.0.0.1:7420\"],", "");
        let e = render(&bad, "n", "z").unwrap_err();
        assert!(
            matches!(e, InstallError::ConflistIpam { index: 0, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("servers"), "{e}");
        let other = r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"bridge","ipam":{"type":"host-local"}}]}"#;
        let e = render(other, "n", "z").unwrap_err();
        assert!(e.to_string().contains("nethouse-cni"), "{e}");
        let e = render("{", "n", "z").unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
    }

    #[test]
    fn shipped_templates_render() {
        for t in [
            include_str!("../../conflist/bridge.conflist.tmpl"),
            include_str!("../../conflist/macvlan.conflist.tmpl"),
        ] {
            let out = render(t, "node-1", "rack-a").unwrap();
            assert!(out.contains(r#""zone": "rack-a""#), "{out}");
        }
    }

    #[test]
    fn a_service_of_the_pods_namespace_comes_from_its_environment() {
        let env = |k: &str| match k {
            "NETHOUSE_SERVICE_HOST" => Some("10.96.0.50".to_string()),
            "NETHOUSE_API_SERVICE_HOST" => Some("10.96.0.51".to_string()),
            "BROKEN_SERVICE_HOST" => Some("not an address".to_string()),
            _ => None,
        };
        let ns = Some("nethouse-system");
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("nethouse.nethouse-system.svc", ns, Some("10.96.0.50")),
            (
                "nethouse.nethouse-system.svc.cluster.local",
                ns,
                Some("10.96.0.50"),
            ),
            (
                "nethouse.nethouse-system.svc.cluster.local.",
                ns,
                Some("10.96.0.50"),
            ),
            ("nethouse-api.nethouse-system.svc", ns, Some("10.96.0.51")),
            // Another namespace's Service is not in the environment, whatever its name.
            ("nethouse.other.svc", ns, None),
            ("nethouse.nethouse-system.svc", None, None),
            ("nethouse.nethouse-system", ns, None),
            ("nethouse.nethouse-system.example.com", ns, None),
            ("missing.nethouse-system.svc", ns, None),
            ("broken.nethouse-system.svc", ns, None),
        ];
        for (name, namespace, want) in cases {
            let got = service_env(name, *namespace, &env);
            assert_eq!(
                got,
                want.map(|w| w.parse().unwrap()),
                "{name} in {namespace:?}"
            );
        }
        assert_eq!(
            resolve("nethouse.nethouse-system.svc", ns, &env),
            Ok("10.96.0.50".parse().unwrap())
        );
    }

    #[test]
    fn server_host_names_are_pinned_once() {
        let conflist = r#"{"cniVersion":"1.0.0","name":"podnet","plugins":[
            {"type":"bridge","ipam":{"type":"nethouse-cni","zone":"z","servers":[
                "https://nethouse.nethouse-system.svc:7420","http://10.0.0.1:7420",
                "http://[fd00::1]:7420","https://kept.example:1"],
             "hosts":{"kept.example":"10.9.9.9"}}},
            {"type":"portmap"}]}"#;
        let resolve = |name: &str| match name {
            "nethouse.nethouse-system.svc" => Ok("10.96.0.50".parse().unwrap()),
            other => panic!("{other} needs no resolution"),
        };
        let (out, pinned) = pin_hosts(conflist, &resolve).unwrap();
        assert_eq!(pinned, ["nethouse.nethouse-system.svc=10.96.0.50"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["plugins"][0]["ipam"]["hosts"],
            serde_json::json!({"nethouse.nethouse-system.svc": "10.96.0.50", "kept.example": "10.9.9.9"})
        );
        assert!(
            v["plugins"][1].get("ipam").is_none(),
            "other plugins untouched"
        );
        // Again on its own output: nothing to do, the same text.
        let (again, pinned) = pin_hosts(&out, &resolve).unwrap();
        assert!(pinned.is_empty());
        assert_eq!(again, out);
        // A name that does not resolve fails the install, naming the URL.
        let e = pin_hosts(
            conflist
                .replace(",\"kept.example\":\"10.9.9.9\"", "")
                .as_str(),
            &|n: &str| Err(format!("{n}: no such host")),
        );
        let e = e.unwrap_err().to_string();
        assert!(
            e.contains("--resolve-servers: https://nethouse.nethouse-system.svc:7420"),
            "{e}"
        );
        // A server that is not a URL names its entry.
        let bad = conflist.replace("http://10.0.0.1:7420", "not a url");
        let e = pin_hosts(&bad, &resolve).unwrap_err().to_string();
        assert!(
            e.starts_with("plugins[0].ipam.servers: \"not a url\""),
            "{e}"
        );
    }
}
