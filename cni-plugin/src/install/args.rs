//! The install's command line, read into [`InstallArgs`] before anything touches the host: a
//! DaemonSet with a wrong flag fails at once with the usage, not after half an install.

use std::path::PathBuf;

use super::InstallError;

/// Where the conflist's zone comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneSource {
    /// `--zone` or `$NETHOUSE_ZONE`.
    Given(String),
    /// `--zone-from-node`: the node's `nethouse.io/network-zone` label.
    FromNode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallArgs {
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
    pub template: PathBuf,
    pub conf_name: String,
    pub node: String,
    pub zone: ZoneSource,
    /// `--copy-credentials FROM` with `--credentials-dir TO`.
    pub credentials: Option<(PathBuf, PathBuf)>,
    /// `--resolve-servers`: write the addresses of the servers' host names into the conflist.
    pub resolve_servers: bool,
}

/// A literal because `concat!` takes no constants; a test keeps its label the contract's.
pub const USAGE: &str = "usage: nethouse-cni install --template FILE (--zone ZONE | --zone-from-node) \
[--node NAME] [--bin-dir /opt/cni/bin] [--conf-dir /etc/cni/net.d] [--conf-name 10-nethouse.conflist] \
[--copy-credentials DIR [--credentials-dir /etc/nethouse-cni]] [--resolve-servers]
  --zone defaults to $NETHOUSE_ZONE, --node to $NODE_NAME (then the host name).
  --zone-from-node reads the zone from the node's nethouse.io/network-zone label through the
    Kubernetes API, with the pod's ServiceAccount (which needs get on nodes).
  --copy-credentials copies every file of DIR (e.g. a mounted Secret with node.token and ca.crt)
    into --credentials-dir, mode 0600, where the conflist's tokenFile/caFile point.
  --resolve-servers resolves the host names of the conflist's NetHouse URLs here, in the pod (a
    Service of the pod's namespace from its environment, <SERVICE>_SERVICE_HOST, as cluster DNS
    may itself wait for this pod network; other names with the pod's resolver) and writes the
    addresses as ipam.hosts: the plugin runs on the host, whose resolver rarely knows a Service
    name. TLS still verifies the name.
  The template may use ${NODE_NAME} and ${NETWORK_ZONE}.
nethouse-cni install --keep-token SRC DST [--every SECONDS]
  keeps DST (the host's token file, mode 0600) equal to SRC (the pod's projected ServiceAccount
    token, which the kubelet renews): checked every SECONDS (30), written atomically when it
    changed; exits 0 on SIGTERM.";

/// Where the node name comes from when neither `--node` nor `$NODE_NAME` gives it.
const HOST_NAME_FILE: &str = "/proc/sys/kernel/hostname";

pub fn parse_args(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<InstallArgs, InstallError> {
    let mut bin_dir = PathBuf::from("/opt/cni/bin");
    let mut conf_dir = PathBuf::from("/etc/cni/net.d");
    let mut conf_name = "10-nethouse.conflist".to_string();
    let mut template = None;
    let mut node = env("NODE_NAME");
    let mut zone_flag = None;
    let mut zone_from_node = false;
    let mut copy_from = None;
    let mut credentials_dir = PathBuf::from("/etc/nethouse-cni");
    let mut resolve_servers = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        // `--flag=value` as well as `--flag value`: the shipped DaemonSet writes the first.
        let (flag, mut inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || match inline.take() {
            Some(v) => Ok(v),
            None => it.next().cloned().ok_or_else(|| InstallError::FlagValue {
                flag: flag.to_string(),
            }),
        };
        match flag {
            "--bin-dir" => bin_dir = value()?.into(),
            "--conf-dir" => conf_dir = value()?.into(),
            "--conf-name" => conf_name = value()?,
            "--template" => template = Some(PathBuf::from(value()?)),
            "--node" => node = Some(value()?),
            "--zone" => zone_flag = Some(value()?),
            "--zone-from-node" => zone_from_node = true,
            "--copy-credentials" => copy_from = Some(PathBuf::from(value()?)),
            "--credentials-dir" => credentials_dir = value()?.into(),
            "--resolve-servers" => resolve_servers = true,
            "-h" | "--help" => return Err(InstallError::Help),
            _ => {
                return Err(InstallError::UnknownFlag { flag: arg.clone() });
            }
        }
        // A switch given a value.
        if inline.is_some() {
            return Err(InstallError::UnknownFlag { flag: arg.clone() });
        }
    }
    let node = match node.filter(|n| !n.is_empty()) {
        Some(n) => n,
        None => std::fs::read_to_string(HOST_NAME_FILE)
            .map(|h| h.trim().to_string())
            .map_err(|source| InstallError::HostName {
                path: HOST_NAME_FILE,
                source,
            })?,
    };
    let zone = match (zone_flag, zone_from_node) {
        (Some(_), true) => return Err(InstallError::ZoneFlags),
        (_, true) => ZoneSource::FromNode,
        (given, false) => ZoneSource::Given(
            given
                .or_else(|| env("NETHOUSE_ZONE"))
                .filter(|z| !z.is_empty())
                .ok_or(InstallError::RequiredFlag {
                    flag: "--zone (or $NETHOUSE_ZONE, or --zone-from-node)",
                })?,
        ),
    };
    Ok(InstallArgs {
        bin_dir,
        conf_dir,
        template: template.ok_or(InstallError::RequiredFlag { flag: "--template" })?,
        conf_name,
        node,
        zone,
        credentials: copy_from.map(|from| (from, credentials_dir)),
        resolve_servers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags() {
        let none = |_: &str| None;
        let args = strings(&["--template", "t", "--zone", "z", "--node", "n"]);
        let a = parse_args(&args, &none).unwrap();
        assert_eq!(a.zone, ZoneSource::Given("z".into()));
        assert_eq!(a.node, "n");
        assert_eq!(a.credentials, None);
        assert!(!a.resolve_servers);
        let with = [&args[..], &["--resolve-servers".to_string()]].concat();
        assert!(parse_args(&with, &none).unwrap().resolve_servers);
        let e = parse_args(&strings(&["--template"]), &none).unwrap_err();
        assert!(matches!(&e, InstallError::FlagValue { flag } if flag == "--template"));
        assert!(e.to_string().contains("--template needs a value"), "{e}");
        // `--flag=value`, as the shipped DaemonSet writes its flags.
        let inline = strings(&["--template=t", "--zone=z", "--node=n", "--bin-dir=/b=c"]);
        let a = parse_args(&inline, &none).unwrap();
        assert_eq!(
            (a.template.clone(), a.node.clone()),
            ("t".into(), "n".into())
        );
        assert_eq!(a.bin_dir, PathBuf::from("/b=c"));
        let e = parse_args(&strings(&["--template=t", "--resolve-servers=yes"]), &none);
        assert!(
            e.unwrap_err()
                .to_string()
                .starts_with("unknown flag \"--resolve-servers=yes\""),
        );
        let e = parse_args(&strings(&["--bogus"]), &none).unwrap_err();
        assert!(e.to_string().starts_with("unknown flag \"--bogus\""), "{e}");
        let env = |k: &str| (k == "NETHOUSE_ZONE").then(|| "from-env".to_string());
        let a = parse_args(&strings(&["--template", "t", "--node", "n"]), &env).unwrap();
        assert_eq!(a.zone, ZoneSource::Given("from-env".into()));

        // --zone-from-node wins over $NETHOUSE_ZONE, and excludes --zone.
        let a = parse_args(
            &strings(&[
                "--template",
                "t",
                "--node",
                "n",
                "--zone-from-node",
                "--copy-credentials",
                "/secret",
            ]),
            &env,
        )
        .unwrap();
        assert_eq!(a.zone, ZoneSource::FromNode);
        assert_eq!(
            a.credentials,
            Some((PathBuf::from("/secret"), PathBuf::from("/etc/nethouse-cni")))
        );
        let both = strings(&["--template", "t", "--zone", "z", "--zone-from-node"]);
        let e = parse_args(&both, &none).unwrap_err();
        assert!(e.to_string().contains("exclude each other"), "{e}");
        let e = parse_args(&strings(&["--template", "t"]), &none).unwrap_err();
        assert!(e.to_string().contains("--zone-from-node"), "{e}");
        let e = parse_args(&strings(&["--zone", "z", "--node", "n"]), &none).unwrap_err();
        assert!(e.to_string().starts_with("--template is required"), "{e}");
    }

    #[test]
    fn usage_names_the_contract_zone_label() {
        let label = nethouse_api::contract::ZONE_LABEL;
        assert!(USAGE.contains(&format!("node's {label} label")), "{USAGE}");
    }
}
