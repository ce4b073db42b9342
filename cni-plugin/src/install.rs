//! `nethouse-cni install`: what the node DaemonSet runs. Copies this binary into the host's CNI
//! bin dir and renders the conflist from a template with this node's name and zone. Both files
//! are replaced atomically (write beside, then rename) so a runtime never reads half a file, and
//! only when their content changes, so running it again is a no-op.

use std::path::{Path, PathBuf};

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallArgs {
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
    pub template: PathBuf,
    pub conf_name: String,
    pub node: String,
    pub zone: String,
}

pub const USAGE: &str = "usage: nethouse-cni install --template FILE --zone ZONE [--node NAME] \
[--bin-dir /opt/cni/bin] [--conf-dir /etc/cni/net.d] [--conf-name 10-nethouse.conflist]
  --zone defaults to $NETHOUSE_ZONE, --node to $NODE_NAME (then the host name).
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
    let mut zone = env("NETHOUSE_ZONE");
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
            "--zone" => zone = Some(value()?),
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
    Ok(InstallArgs {
        bin_dir,
        conf_dir,
        template: template.ok_or_else(|| format!("--template is required\n{USAGE}"))?,
        conf_name,
        node,
        zone: zone
            .filter(|z| !z.is_empty())
            .ok_or_else(|| format!("--zone (or $NETHOUSE_ZONE) is required\n{USAGE}"))?,
    })
}

/// Fills the template and checks the result is a conflist whose nethouse-cni entries this
/// plugin would accept — a bad config fails the install, not every pod start.
pub fn render(template: &str, node: &str, zone: &str) -> Result<String, String> {
    let text = template
        .replace("${NODE_NAME}", node)
        .replace("${NETWORK_ZONE}", zone);
    let root: Value =
        serde_json::from_str(&text).map_err(|e| format!("rendered conflist is not JSON: {e}"))?;
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
    Ok(text)
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

/// Runs the install; returns a one-line summary.
pub fn install(args: &InstallArgs, self_exe: &Path) -> Result<String, String> {
    let template = std::fs::read_to_string(&args.template)
        .map_err(|e| format!("reading --template {}: {e}", args.template.display()))?;
    let conflist = render(&template, &args.node, &args.zone)?;
    let binary =
        std::fs::read(self_exe).map_err(|e| format!("reading {}: {e}", self_exe.display()))?;
    let bin_changed = replace(&args.bin_dir.join("nethouse-cni"), &binary, 0o755)?;
    let conf_changed = replace(
        &args.conf_dir.join(&args.conf_name),
        conflist.as_bytes(),
        0o644,
    )?;
    Ok(format!(
        "nethouse-cni install: binary {}, {} {} (node {}, zone {})",
        if bin_changed { "updated" } else { "unchanged" },
        args.conf_name,
        if conf_changed { "written" } else { "unchanged" },
        args.node,
        args.zone
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

    #[test]
    fn installs_atomically_and_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("t.conflist");
        std::fs::write(&template, TEMPLATE).unwrap();
        let exe = dir.path().join("fake-exe");
        std::fs::write(&exe, b"binary").unwrap();
        let args = InstallArgs {
            bin_dir: dir.path().join("bin"),
            conf_dir: dir.path().join("net.d"),
            template,
            conf_name: "10-nethouse.conflist".into(),
            node: "n1".into(),
            zone: "z1".into(),
        };
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
    fn flags() {
        let none = |_: &str| None;
        let args: Vec<String> = ["--template", "t", "--zone", "z", "--node", "n"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let a = parse_args(&args, &none).unwrap();
        assert_eq!((a.zone.as_str(), a.node.as_str()), ("z", "n"));
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
        assert_eq!(a.zone, "from-env");
    }
}
