//! `nethouse-cni install`: what the node DaemonSet runs. Copies this binary into the host's CNI
//! bin dir and renders the conflist from a template with this node's name and zone. Both files
//! are replaced atomically (write beside, then rename) so a runtime never reads half a file, and
//! only when their content changes, so running it again is a no-op.
//!
//! `--zone-from-node` reads the zone from the node's `nethouse.io/network-zone` label through
//! the Kubernetes API with the pod's ServiceAccount (it needs `get` on nodes, nothing else).
//! `--copy-credentials DIR` copies the files of a mounted Secret (the NetHouse node token and CA
//! the conflist names in `tokenFile`/`caFile`) to the host, the same atomic way, mode 0600.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// The node label naming the node's network zone (see DESIGN.md, contracts).
pub const ZONE_LABEL: &str = "nethouse.io/network-zone";
/// Where Kubernetes mounts a pod's ServiceAccount token and the cluster CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

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

pub const USAGE: &str = "usage: nethouse-cni install --template FILE (--zone ZONE | --zone-from-node) \
[--node NAME] [--bin-dir /opt/cni/bin] [--conf-dir /etc/cni/net.d] [--conf-name 10-nethouse.conflist] \
[--copy-credentials DIR [--credentials-dir /etc/nethouse-cni]] [--resolve-servers]
  --zone defaults to $NETHOUSE_ZONE, --node to $NODE_NAME (then the host name).
  --zone-from-node reads the zone from the node's nethouse.io/network-zone label through the
    Kubernetes API, with the pod's ServiceAccount (which needs get on nodes).
  --copy-credentials copies every file of DIR (e.g. a mounted Secret with node.token and ca.crt)
    into --credentials-dir, mode 0600, where the conflist's tokenFile/caFile point.
  --resolve-servers resolves the host names of the conflist's NetHouse URLs here (in the pod,
    where cluster DNS answers) and writes the addresses as ipam.hosts: the plugin runs on the
    host, whose resolver rarely knows a Service name. TLS still verifies the name.
  The template may use ${NODE_NAME} and ${NETWORK_ZONE}.";

pub fn parse_args(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<InstallArgs, String> {
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
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
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
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown flag {other:?}\n{USAGE}")),
        }
    }
    let node = match node.filter(|n| !n.is_empty()) {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .map_err(|e| format!("--node not given and the host name is unreadable: {e}"))?,
    };
    let zone = match (zone_flag, zone_from_node) {
        (Some(_), true) => {
            return Err(format!(
                "--zone and --zone-from-node exclude each other\n{USAGE}"
            ));
        }
        (_, true) => ZoneSource::FromNode,
        (given, false) => ZoneSource::Given(
            given
                .or_else(|| env("NETHOUSE_ZONE"))
                .filter(|z| !z.is_empty())
                .ok_or_else(|| {
                    format!("--zone (or $NETHOUSE_ZONE, or --zone-from-node) is required\n{USAGE}")
                })?,
        ),
    };
    Ok(InstallArgs {
        bin_dir,
        conf_dir,
        template: template.ok_or_else(|| format!("--template is required\n{USAGE}"))?,
        conf_name,
        node,
        zone,
        credentials: copy_from.map(|from| (from, credentials_dir)),
        resolve_servers,
    })
}

/// The zone label of a Node, from the JSON the API server answers to `GET /api/v1/nodes/NAME`.
pub fn zone_from_node_json(node: &str, body: &[u8]) -> Result<String, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        format!("--zone-from-node: the API's answer for node {node} is not JSON: {e}")
    })?;
    if v.get("kind").and_then(Value::as_str) != Some("Node") {
        return Err(format!(
            "--zone-from-node: the API's answer for node {node} is not a Node"
        ));
    }
    match v
        .pointer("/metadata/labels")
        .and_then(|l| l.get(ZONE_LABEL))
    {
        Some(Value::String(z)) if !z.is_empty() => Ok(z.clone()),
        _ => Err(format!(
            "--zone-from-node: node {node} has no {ZONE_LABEL} label; label it \
             (kubectl label node {node} {ZONE_LABEL}=ZONE) or pass --zone"
        )),
    }
}

/// The Kubernetes API as a pod sees it: base URL, ServiceAccount token, cluster CA.
#[derive(Debug, Clone)]
pub struct ApiServer {
    pub base: String,
    pub token: String,
    /// PEM; the only roots trusted (`None` only for plain-http test servers).
    pub ca_pem: Option<Vec<u8>>,
}

impl ApiServer {
    /// `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` with the token and CA that
    /// Kubernetes mounts under [`SERVICE_ACCOUNT_DIR`].
    pub fn in_cluster(env: &dyn Fn(&str) -> Option<String>, sa_dir: &Path) -> Result<Self, String> {
        let var = |k: &str| {
            env(k).filter(|v| !v.is_empty()).ok_or_else(|| {
                format!("--zone-from-node: ${k} is not set (not running in a Kubernetes pod?)")
            })
        };
        let host = var("KUBERNETES_SERVICE_HOST")?;
        let port = var("KUBERNETES_SERVICE_PORT")?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let read = |name: &str| {
            let path = sa_dir.join(name);
            std::fs::read(&path).map_err(|e| {
                format!(
                    "--zone-from-node: reading {}: {e} (is the ServiceAccount token mounted?)",
                    path.display()
                )
            })
        };
        let token = String::from_utf8_lossy(&read("token")?).trim().to_string();
        Ok(ApiServer {
            base: format!("https://{host}:{port}"),
            token,
            ca_pem: Some(read("ca.crt")?),
        })
    }
}

/// Reads `node`'s zone label from the API server (one GET, 10 s deadline). An unreachable API
/// fails the install; the DaemonSet's init container is then restarted with back-off.
pub fn node_zone(api: &ApiServer, node: &str) -> Result<String, String> {
    let valid = !node.is_empty()
        && node.len() <= 253
        && node
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid {
        return Err(format!(
            "--zone-from-node: {node:?} is not a Kubernetes node name (set --node or $NODE_NAME)"
        ));
    }
    nethouse_api::init_crypto();
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .no_proxy();
    if let Some(pem) = &api.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("--zone-from-node: the cluster CA: {e}"))?;
        builder = builder.tls_certs_only(certs);
    }
    let http = builder
        .build()
        .map_err(|e| format!("--zone-from-node: HTTP client: {e}"))?;
    let url = format!("{}/api/v1/nodes/{node}", api.base);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("--zone-from-node: starting the runtime: {e}"))?;
    let (status, body) = runtime
        .block_on(async {
            let resp = http
                .get(&url)
                .bearer_auth(&api.token)
                .header("Accept", "application/json")
                .send()
                .await?;
            let status = resp.status();
            Ok::<_, reqwest::Error>((status, resp.bytes().await?))
        })
        .map_err(|e| {
            format!(
                "--zone-from-node: cannot reach the Kubernetes API at {} (or it is not trusted): {}",
                api.base,
                error_chain(&e)
            )
        })?;
    match status.as_u16() {
        200 => zone_from_node_json(node, &body),
        401 | 403 => Err(format!(
            "--zone-from-node: the Kubernetes API refused to get node {node} ({status}); the \
             pod's ServiceAccount needs get on nodes (ClusterRole nethouse-cni)"
        )),
        404 => Err(format!(
            "--zone-from-node: node {node} does not exist (set --node or $NODE_NAME to this node's name)"
        )),
        _ => Err(format!(
            "--zone-from-node: GET {url}: {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Fills the template and checks the result is a conflist whose nethouse-cni entries this
/// plugin would accept — a bad config fails the install, not every pod start.
pub fn render(template: &str, node: &str, zone: &str) -> Result<String, String> {
    let text = template
        .replace("${NODE_NAME}", node)
        .replace("${NETWORK_ZONE}", zone);
    check_conflist(&text)?;
    Ok(text)
}

/// Whether `text` is a conflist whose nethouse-cni entries this plugin would accept.
fn check_conflist(text: &str) -> Result<(), String> {
    let root: Value =
        serde_json::from_str(text).map_err(|e| format!("rendered conflist is not JSON: {e}"))?;
    let version = root.get("cniVersion").cloned().unwrap_or(Value::Null);
    let plugins = root
        .get("plugins")
        .and_then(Value::as_array)
        .ok_or("rendered conflist has no \"plugins\" array")?;
    let mut ours = 0;
    for (i, p) in plugins.iter().enumerate() {
        let Some(ipam) = p
            .get("ipam")
            .filter(|ipam| ipam.get("type").and_then(Value::as_str) == Some("nethouse-cni"))
        else {
            continue;
        };
        ours += 1;
        let probe =
            serde_json::json!({"cniVersion": version, "name": root.get("name"), "ipam": ipam});
        crate::conf::parse(probe.to_string().as_bytes())
            .map_err(|e| format!("plugins[{i}]: {}", e.msg))?;
    }
    if ours == 0 {
        return Err(
            "rendered conflist has no plugin with \"ipam\": {\"type\": \"nethouse-cni\"}".into(),
        );
    }
    Ok(())
}

/// Adds to every nethouse-cni `ipam` of a rendered conflist the address of each server host
/// name that the template does not already map (`ipam.hosts`), found with `resolve`. Address
/// URLs need nothing. Returns the conflist and the names it pinned.
pub fn pin_hosts(
    conflist: &str,
    resolve: &dyn Fn(&str) -> Result<std::net::IpAddr, String>,
) -> Result<(String, Vec<String>), String> {
    let mut root: Value =
        serde_json::from_str(conflist).map_err(|e| format!("conflist is not JSON: {e}"))?;
    let mut pinned = Vec::new();
    let plugins = root
        .get_mut("plugins")
        .and_then(Value::as_array_mut)
        .ok_or("conflist has no \"plugins\" array")?;
    for (i, p) in plugins.iter_mut().enumerate() {
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
            .ok_or_else(|| format!("plugins[{i}].ipam.hosts is not an object"))?;
        for url in servers {
            let parsed = reqwest::Url::parse(&url)
                .map_err(|e| format!("plugins[{i}].ipam.servers: {url:?}: {e}"))?;
            let Some(name) = parsed.host_str() else {
                continue;
            };
            let bare = name.trim_start_matches('[').trim_end_matches(']');
            if bare.parse::<std::net::IpAddr>().is_ok() {
                continue;
            }
            if hosts.contains_key(name) {
                continue;
            }
            let ip = resolve(name).map_err(|e| format!("--resolve-servers: {url}: {e}"))?;
            hosts.insert(name.to_string(), Value::String(ip.to_string()));
            pinned.push(format!("{name}={ip}"));
        }
    }
    let text =
        serde_json::to_string_pretty(&root).map_err(|e| format!("writing the conflist: {e}"))?;
    Ok((text + "\n", pinned))
}

/// The first address this process's resolver gives for `name`.
fn system_resolve(name: &str) -> Result<std::net::IpAddr, String> {
    use std::net::ToSocketAddrs;
    (name, 0)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {name}: {e}"))?
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| format!("resolving {name}: no address"))
}

/// Writes `content` to `path` atomically; `Ok(false)` when it was already there.
fn replace(path: &Path, content: &[u8], mode: u32) -> Result<bool, String> {
    if std::fs::read(path).is_ok_and(|old| old == content) {
        return Ok(false);
    }
    let dir = path
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", path.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(content)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("writing {}: {e}", path.display())
    })?;
    Ok(true)
}

/// Copies every file of `from` (dot entries skipped: a mounted Secret's `..data` links) into
/// `to`, mode 0600; returns (files, changed).
fn copy_credentials(from: &Path, to: &Path) -> Result<(usize, usize), String> {
    let entries = std::fs::read_dir(from)
        .map_err(|e| format!("--copy-credentials {}: {e}", from.display()))?;
    let (mut files, mut changed) = (0, 0);
    for entry in entries {
        let entry = entry.map_err(|e| format!("--copy-credentials {}: {e}", from.display()))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks, as a Secret volume's files are.
        if !path.is_file() {
            continue;
        }
        let content =
            std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        files += 1;
        if replace(&to.join(&name), &content, 0o600)? {
            changed += 1;
        }
    }
    if files == 0 {
        return Err(format!(
            "--copy-credentials {}: no files to copy (is the Secret mounted?)",
            from.display()
        ));
    }
    Ok((files, changed))
}

/// Runs the install; returns a one-line summary.
pub fn install(args: &InstallArgs, self_exe: &Path) -> Result<String, String> {
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
    let template = std::fs::read_to_string(&args.template)
        .map_err(|e| format!("reading --template {}: {e}", args.template.display()))?;
    let conflist = render(&template, &args.node, &zone)?;
    let (conflist, pinned) = if args.resolve_servers {
        let (text, pinned) = pin_hosts(&conflist, &system_resolve)?;
        // What the plugin will read, checked as the template was.
        check_conflist(&text)?;
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
            let (files, changed) = copy_credentials(from, to)?;
            format!(
                ", {files} credential file(s) in {} ({changed} updated)",
                to.display()
            )
        }
        None => String::new(),
    };
    let binary =
        std::fs::read(self_exe).map_err(|e| format!("reading {}: {e}", self_exe.display()))?;
    let bin_changed = replace(&args.bin_dir.join("nethouse-cni"), &binary, 0o755)?;
    let conf_changed = replace(
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
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"{"cniVersion":"1.0.0","name":"podnet","plugins":[
        {"type":"bridge","bridge":"nh0","isGateway":true,
         "ipam":{"type":"nethouse-cni","servers":["http://10.0.0.1:7420"],"zone":"${NETWORK_ZONE}","node":"${NODE_NAME}"},
         "capabilities":{"io.kubernetes.cri.pod-annotations":true}}]}"#;

    #[test]
    fn renders_and_validates() {
        let out = render(TEMPLATE, "n1", "rack-a").unwrap();
        assert!(out.contains(r#""zone":"rack-a""#) && out.contains(r#""node":"n1""#));
        assert!(render("{}", "n", "z").unwrap_err().contains("plugins"));
        let bad = TEMPLATE.replace("\"servers\":[\"http://10.0.0.1:7420\"],", "");
        assert!(render(&bad, "n", "z").unwrap_err().contains("servers"));
        let other = r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"bridge","ipam":{"type":"host-local"}}]}"#;
        assert!(
            render(other, "n", "z")
                .unwrap_err()
                .contains("nethouse-cni")
        );
    }

    #[test]
    fn shipped_templates_render() {
        for t in [
            include_str!("../conflist/bridge.conflist.tmpl"),
            include_str!("../conflist/macvlan.conflist.tmpl"),
        ] {
            let out = render(t, "node-1", "rack-a").unwrap();
            assert!(out.contains(r#""zone": "rack-a""#), "{out}");
        }
    }

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
        let e = e.unwrap_err();
        assert!(
            e.contains("--resolve-servers: https://nethouse.nethouse-system.svc:7420"),
            "{e}"
        );
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

    #[test]
    fn flags() {
        let none = |_: &str| None;
        let args: Vec<String> = ["--template", "t", "--zone", "z", "--node", "n"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let a = parse_args(&args, &none).unwrap();
        assert_eq!(a.zone, ZoneSource::Given("z".into()));
        assert_eq!(a.node, "n");
        assert_eq!(a.credentials, None);
        assert!(!a.resolve_servers);
        let with = [&args[..], &["--resolve-servers".to_string()]].concat();
        assert!(parse_args(&with, &none).unwrap().resolve_servers);
        assert!(
            parse_args(&["--template".to_string()], &none)
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            parse_args(&["--bogus".to_string()], &none)
                .unwrap_err()
                .contains("unknown flag")
        );
        let env = |k: &str| (k == "NETHOUSE_ZONE").then(|| "from-env".to_string());
        let a = parse_args(
            &["--template".into(), "t".into(), "--node".into(), "n".into()],
            &env,
        )
        .unwrap();
        assert_eq!(a.zone, ZoneSource::Given("from-env".into()));

        // --zone-from-node wins over $NETHOUSE_ZONE, and excludes --zone.
        let a = parse_args(
            &[
                "--template".into(),
                "t".into(),
                "--node".into(),
                "n".into(),
                "--zone-from-node".into(),
                "--copy-credentials".into(),
                "/secret".into(),
            ],
            &env,
        )
        .unwrap();
        assert_eq!(a.zone, ZoneSource::FromNode);
        assert_eq!(
            a.credentials,
            Some((PathBuf::from("/secret"), PathBuf::from("/etc/nethouse-cni")))
        );
        let both: Vec<String> = ["--template", "t", "--zone", "z", "--zone-from-node"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(
            parse_args(&both, &none)
                .unwrap_err()
                .contains("exclude each other")
        );
        assert!(
            parse_args(&["--template".into(), "t".into()], &none)
                .unwrap_err()
                .contains("--zone-from-node")
        );
    }

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
        let e = zone_from_node_json("n1", unlabelled.as_bytes()).unwrap_err();
        assert!(
            e.contains("--zone-from-node")
                && e.contains("node n1 has no nethouse.io/network-zone label"),
            "{e}"
        );
        let no_labels = r#"{"kind":"Node","metadata":{"name":"n1"}}"#;
        assert!(
            zone_from_node_json("n1", no_labels.as_bytes())
                .unwrap_err()
                .contains(ZONE_LABEL)
        );
        let empty = r#"{"kind":"Node","metadata":{"labels":{"nethouse.io/network-zone":""}}}"#;
        assert!(zone_from_node_json("n1", empty.as_bytes()).is_err());
        let status = r#"{"kind":"Status","status":"Failure","code":404}"#;
        assert!(
            zone_from_node_json("n1", status.as_bytes())
                .unwrap_err()
                .contains("not a Node")
        );
        assert!(
            zone_from_node_json("n1", b"<html>")
                .unwrap_err()
                .contains("not JSON")
        );
    }

    /// One canned HTTP answer per connection, from a thread; returns the base URL and the
    /// request heads it saw.
    fn fake_api(answers: Vec<(u16, String)>) -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for (code, body) in answers {
                let (mut conn, _) = listener.accept().unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = conn.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                let _ = write!(
                    conn,
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (base, rx)
    }

    #[test]
    fn node_zone_over_http() {
        let node = r#"{"kind":"Node","metadata":{"name":"n1","labels":{"nethouse.io/network-zone":"z9"}}}"#;
        let (base, heads) = fake_api(vec![
            (200, node.to_string()),
            (403, "{}".into()),
            (404, "{}".into()),
        ]);
        let api = ApiServer {
            base,
            token: "sa-token".into(),
            ca_pem: None,
        };
        assert_eq!(node_zone(&api, "n1").unwrap(), "z9");
        let head = heads.recv().unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /api/v1/nodes/n1 "), "{head}");
        assert!(head.contains("authorization: bearer sa-token"), "{head}");
        assert!(
            node_zone(&api, "n1")
                .unwrap_err()
                .contains("needs get on nodes")
        );
        assert!(
            node_zone(&api, "n1")
                .unwrap_err()
                .contains("node n1 does not exist")
        );
        assert!(
            node_zone(&api, "../secrets")
                .unwrap_err()
                .contains("not a Kubernetes node name")
        );
        // Nothing listens there any more.
        let gone = ApiServer {
            base: "http://127.0.0.1:1".into(),
            ..api
        };
        assert!(
            node_zone(&gone, "n1")
                .unwrap_err()
                .contains("cannot reach the Kubernetes API")
        );
    }

    #[test]
    fn in_cluster_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "tok\n").unwrap();
        std::fs::write(dir.path().join("ca.crt"), "pem").unwrap();
        let env = |k: &str| match k {
            "KUBERNETES_SERVICE_HOST" => Some("fd00::1".to_string()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_string()),
            _ => None,
        };
        let api = ApiServer::in_cluster(&env, dir.path()).unwrap();
        assert_eq!(api.base, "https://[fd00::1]:443");
        assert_eq!(api.token, "tok");
        assert_eq!(api.ca_pem.as_deref(), Some(&b"pem"[..]));
        let e = ApiServer::in_cluster(&|_: &str| None, dir.path()).unwrap_err();
        assert!(e.contains("KUBERNETES_SERVICE_HOST"), "{e}");
        std::fs::remove_file(dir.path().join("token")).unwrap();
        assert!(
            ApiServer::in_cluster(&env, dir.path())
                .unwrap_err()
                .contains("token")
        );
    }

    #[test]
    fn copies_credentials_like_a_secret_volume() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // A Secret volume: files are links into a hidden, timestamped directory.
        let secret = dir.path().join("secret");
        let data = secret.join("..2024_01_01");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("node.token"), "t0ken").unwrap();
        std::fs::write(data.join("ca.crt"), "pem").unwrap();
        std::os::unix::fs::symlink("..2024_01_01", secret.join("..data")).unwrap();
        for f in ["node.token", "ca.crt"] {
            std::os::unix::fs::symlink(format!("..data/{f}"), secret.join(f)).unwrap();
        }
        let host = dir.path().join("host");
        assert_eq!(copy_credentials(&secret, &host).unwrap(), (2, 2));
        assert_eq!(copy_credentials(&secret, &host).unwrap(), (2, 0));
        assert_eq!(std::fs::read(host.join("node.token")).unwrap(), b"t0ken");
        let mode = std::fs::metadata(host.join("node.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(&host).unwrap().collect();
        assert_eq!(names.len(), 2, "only the two files, no dot entries");
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert!(
            copy_credentials(&empty, &host)
                .unwrap_err()
                .contains("no files")
        );
    }
}
