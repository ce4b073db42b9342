//! `nethouse-cni install`: what the node DaemonSet runs. Copies this binary into the host's CNI
//! bin dir and renders the conflist from a template with this node's name and zone.
//!
//! One file per step, so each can be read and tested alone, and each failing with its own
//! [`InstallError`] variants: `args.rs` (the command line), `node_zone.rs` (`--zone-from-node`:
//! the node's label, from the Kubernetes API), `conflist.rs` (render, check, pin server
//! addresses), `files.rs` (the atomic writes onto the host). This file only orders them.
//! `keep_token.rs` is the DaemonSet's main container (`install --keep-token`): the node's
//! ServiceAccount token, renewed by the kubelet in the pod, kept current on the host.

mod args;
mod conflist;
mod error;
#[cfg(test)]
mod fake_api;
mod files;
mod keep_token;
mod node_zone;

use std::path::Path;

pub use args::{InstallArgs, USAGE, ZoneSource, parse_args};
pub use conflist::{pin_hosts, render};
pub use error::InstallError;
pub use keep_token::{KeepToken, run_until_signalled as keep_token};
pub use node_zone::{ApiServer, SERVICE_ACCOUNT_DIR, node_zone, zone_from_node_json};

/// Runs the install; returns a one-line summary.
pub fn install(args: &InstallArgs, self_exe: &Path) -> Result<String, InstallError> {
    let (zone, zone_how) = match &args.zone {
        ZoneSource::Given(z) => (z.clone(), ""),
        ZoneSource::FromNode => {
            let api = ApiServer::in_cluster(
                &|k: &str| std::env::var(k).ok(),
                Path::new(SERVICE_ACCOUNT_DIR),
            )?;
            (node_zone(&api, &args.node)?, " from the node label")
        }
    };
    let template =
        std::fs::read_to_string(&args.template).map_err(|source| InstallError::ReadTemplate {
            path: args.template.clone(),
            source,
        })?;
    let conflist = render(&template, &args.node, &zone)?;
    let (conflist, pinned) = if args.resolve_servers {
        // The pod's namespace, for Services named in the environment; no token, no namespace.
        let namespace = std::fs::read_to_string(Path::new(SERVICE_ACCOUNT_DIR).join("namespace"))
            .ok()
            .map(|n| n.trim().to_string());
        let env = |k: &str| std::env::var(k).ok();
        let resolve = |name: &str| conflist::resolve(name, namespace.as_deref(), &env);
        let (text, pinned) = pin_hosts(&conflist, &resolve)?;
        // What the plugin will read, checked as the template was.
        conflist::check_conflist(&text)?;
        (text, pinned)
    } else {
        (conflist, Vec::new())
    };
    let pinned = if pinned.is_empty() {
        String::new()
    } else {
        format!(", servers pinned {}", pinned.join(" "))
    };
    // The conflist goes last: once it is there the runtime calls the plugin, which then finds
    // its binary and the credentials the conflist names.
    let credentials = match &args.credentials {
        Some((from, to)) => {
            let (files, changed) = files::copy_credentials(from, to)?;
            format!(
                ", {files} credential file(s) in {} ({changed} updated)",
                to.display()
            )
        }
        None => String::new(),
    };
    let bin_changed = files::install_binary(self_exe, &args.bin_dir)?;
    let conf_changed = files::replace(
        &args.conf_dir.join(&args.conf_name),
        conflist.as_bytes(),
        0o644,
    )?;
    Ok(format!(
        "nethouse-cni install: binary {}, {} {} (node {}, zone {zone}{zone_how}){pinned}{credentials}",
        if bin_changed { "updated" } else { "unchanged" },
        args.conf_name,
        if conf_changed { "written" } else { "unchanged" },
        args.node,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use serde_json::Value;

    use super::*;

    pub const TEMPLATE: &str = r#"{"cniVersion":"1.0.0","name":"podnet","plugins":[
        {"type":"bridge","bridge":"nh0","isGateway":true,
         "ipam":{"type":"nethouse-cni","servers":["http://10.0.0.1:7420"],"zone":"${NETWORK_ZONE}","node":"${NODE_NAME}"},
         "capabilities":{"io.kubernetes.cri.pod-annotations":true}}]}"#;

    /// Install arguments for node n1, zone z1, into `dir`, with `template` and a fake binary.
    fn install_in(dir: &Path, template: &str, resolve_servers: bool) -> (InstallArgs, PathBuf) {
        let path = dir.join("t.conflist");
        std::fs::write(&path, template).unwrap();
        let exe = dir.join("fake-exe");
        std::fs::write(&exe, b"binary").unwrap();
        let args = InstallArgs {
            bin_dir: dir.join("bin"),
            conf_dir: dir.join("net.d"),
            template: path,
            conf_name: "10-nethouse.conflist".into(),
            node: "n1".into(),
            zone: ZoneSource::Given("z1".into()),
            credentials: None,
            resolve_servers,
        };
        (args, exe)
    }

    #[test]
    fn installs_atomically_and_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let (args, exe) = install_in(dir.path(), TEMPLATE, false);
        let first = install(&args, &exe).unwrap();
        assert!(
            first.contains("binary updated") && first.contains("written"),
            "{first}"
        );
        let again = install(&args, &exe).unwrap();
        assert!(
            again.contains("binary unchanged") && again.contains("conflist unchanged"),
            "{again}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(args.bin_dir.join("nethouse-cni"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let leftovers: Vec<_> = std::fs::read_dir(&args.bin_dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        // A template that is gone names the flag and the file.
        let missing = InstallArgs {
            template: dir.path().join("absent"),
            ..args
        };
        let e = install(&missing, &exe).unwrap_err();
        assert!(matches!(e, InstallError::ReadTemplate { .. }), "{e}");
        assert!(e.to_string().starts_with("reading --template "), "{e}");
    }

    #[test]
    fn install_with_resolve_servers_writes_the_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let template = TEMPLATE.replace("http://10.0.0.1:7420", "http://localhost:7420");
        let (args, exe) = install_in(dir.path(), &template, true);
        let first = install(&args, &exe).unwrap();
        assert!(first.contains("servers pinned localhost="), "{first}");
        let written = std::fs::read_to_string(args.conf_dir.join(&args.conf_name)).unwrap();
        let v: Value = serde_json::from_str(&written).unwrap();
        let ip = v["plugins"][0]["ipam"]["hosts"]["localhost"]
            .as_str()
            .unwrap();
        assert!(
            ip.parse::<std::net::IpAddr>().unwrap().is_loopback(),
            "{written}"
        );
        let again = install(&args, &exe).unwrap();
        assert!(again.contains("conflist unchanged"), "{again}");
    }
}
