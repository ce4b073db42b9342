//! The three Secrets the base expects, made the way `manifests/secrets-example.yaml` shows: a
//! CA, NetHouse's certificate for its Service name, the extender's and the controller's tokens
//! (nodes present their own ServiceAccount tokens), then `kubectl create secret generic`. The certificate also names the address the test reaches
//! NetHouse at from outside the cluster (the example's "add an IP SAN" note).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::super::netns::run;
use crate::cluster::Cluster;

pub const NAMESPACE: &str = "nethouse-system";

pub struct Credentials {
    pub dir: PathBuf,
    /// `ca.crt`: what clients of NetHouse trust.
    pub ca: PathBuf,
    /// A file holding the controller token (the `controller` role: subnets).
    pub controller_token: PathBuf,
}

/// Writes the files into `dir` (openssl, as the example) and creates the Secrets.
/// `nethouse_ips`: the addresses NetHouse is reached at from outside the cluster (its nodes',
/// with hostNetwork), named in its certificate next to the Service's name.
pub fn create(
    cluster: &Cluster,
    dir: &Path,
    nethouse_ips: &[Ipv4Addr],
) -> anyhow::Result<Credentials> {
    std::fs::create_dir_all(dir)?;
    let sh = |script: &str| run(Command::new("sh").current_dir(dir).args(["-ec", script]));
    sh(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3 \
        -subj /CN=nethouse-ca -keyout ca.key -out ca.crt 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=nethouse \
        -keyout tls.key -out tls.csr 2>/dev/null",
    )?;
    std::fs::write(
        dir.join("san.ext"),
        format!(
            "subjectAltName=DNS:nethouse.nethouse-system.svc,DNS:nethouse.nethouse-system.svc.cluster.local,{}\n",
            nethouse_ips
                .iter()
                .map(|ip| format!("IP:{ip}"))
                .collect::<Vec<_>>()
                .join(",")
        ),
    )?;
    sh("openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3 \
        -extfile san.ext -out tls.crt 2>/dev/null
        EXTENDER=$(openssl rand -hex 32); CONTROLLER=$(openssl rand -hex 32)
        printf 'node:nethouse-scheduler-extender %s\\ncontroller %s\\n' \"$EXTENDER\" \"$CONTROLLER\" > auth
        printf '%s' \"$EXTENDER\" > node.token
        printf '%s' \"$CONTROLLER\" > controller.token")?;
    let file = |name: &str| format!("--from-file={}", dir.join(name).display());
    let secret = |name: &str, sources: &[String]| -> anyhow::Result<()> {
        let mut args = vec![
            "-n".to_string(),
            NAMESPACE.into(),
            "create".into(),
            "secret".into(),
            "generic".into(),
            name.into(),
        ];
        args.extend_from_slice(sources);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cluster.kubectl(&args).map(|_| ())
    };
    secret(
        "nethouse-auth",
        &[file("auth"), file("tls.crt"), file("tls.key")],
    )?;
    secret(
        "nethouse-cni-credentials",
        &[file("node.token"), file("ca.crt")],
    )?;
    secret(
        "nethouse-controller-credentials",
        &[file("controller.token"), file("ca.crt")],
    )?;
    Ok(Credentials {
        dir: dir.to_path_buf(),
        ca: dir.join("ca.crt"),
        controller_token: dir.join("controller.token"),
    })
}

/// What NetHouse presents to etcd and trusts of it (`manifests/ha/etcd-secret-example.yaml`).
pub struct EtcdClientFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The Secret `nethouse-etcd-client` of the HA overlay, as its example says to create it.
pub fn create_etcd_client(cluster: &Cluster, f: &EtcdClientFiles) -> anyhow::Result<()> {
    let from = |name: &str, path: &Path| format!("--from-file={name}={}", path.display());
    cluster
        .kubectl(&[
            "-n",
            NAMESPACE,
            "create",
            "secret",
            "generic",
            "nethouse-etcd-client",
            &from("ca.crt", &f.ca),
            &from("tls.crt", &f.cert),
            &from("tls.key", &f.key),
        ])
        .map(|_| ())
}
