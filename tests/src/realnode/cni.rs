//! A node's CNI chain, from the shipped `cni-plugin/conflist/macvlan.conflist.tmpl`: Debian's
//! `macvlan` (mode bridge) on the node's uplink, with `nethouse-cni` as IPAM and the
//! pod-annotations capability on the macvlan entry (where containerd honours it), or, to show
//! what a node set up without it does, not.

use std::path::Path;

use anyhow::Context;
use nethouse_api::contract::POD_ANNOTATIONS_CAPABILITY;
use serde_json::{Value, json};

const TEMPLATE: &str = include_str!("../../../cni-plugin/conflist/macvlan.conflist.tmpl");
/// nethouse-cni's log in a node's work directory: one JSON line per call.
pub const LOG: &str = "nethouse-cni.log";
/// Debian's containernetworking-plugins.
const DEBIAN_PLUGINS: &str = "/usr/lib/cni";

pub struct ChainSettings<'a> {
    pub zone: &'a str,
    pub node: &'a str,
    /// The macvlan parent: the node's link to its zone.
    pub master: &'a str,
    pub nethouse_url: &'a str,
    pub cluster: &'a str,
    pub log_file: &'a Path,
    /// Whether the macvlan entry declares the pod-annotations capability (as shipped). Without
    /// it containerd passes the plugin no annotations, and a fixed pod cannot be told apart.
    pub pod_annotations: bool,
}

/// The conflist: the shipped template with the node's values; no token or CA, as the harness's
/// NetHouse serves plain HTTP without auth.
pub fn conflist(s: &ChainSettings) -> anyhow::Result<String> {
    let text = TEMPLATE
        .replace("${NETWORK_ZONE}", s.zone)
        .replace("${NODE_NAME}", s.node);
    let mut v: Value =
        serde_json::from_str(&text).context("parsing the shipped macvlan conflist")?;
    let main = v["plugins"]
        .get_mut(0)
        .context("the shipped conflist has no plugin")?;
    main["master"] = json!(s.master);
    if !s.pod_annotations {
        let capabilities = main
            .get_mut("capabilities")
            .and_then(Value::as_object_mut)
            .context("the shipped conflist's macvlan declares no capabilities")?;
        capabilities.remove(POD_ANNOTATIONS_CAPABILITY);
        if capabilities.is_empty()
            && let Some(m) = main.as_object_mut()
        {
            m.remove("capabilities");
        }
    }
    let ipam = main["ipam"]
        .as_object_mut()
        .context("the shipped conflist's macvlan has no ipam")?;
    ipam.remove("tokenFile");
    ipam.remove("caFile");
    ipam.insert("servers".into(), json!([s.nethouse_url]));
    ipam.insert("cluster".into(), json!(s.cluster));
    ipam.insert("logFile".into(), json!(s.log_file));
    Ok(serde_json::to_string_pretty(&v)?)
}

/// Copies the plugins the chain runs into `bin_dir`: macvlan, loopback (containerd sets up
/// every pod's `lo` with it) and `plugin` as `nethouse-cni`. Copies, not links, so a rebuild
/// of the workspace during a run changes nothing.
pub fn install(bin_dir: &Path, plugin: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(bin_dir)?;
    for name in ["macvlan", "loopback"] {
        let from = Path::new(DEBIAN_PLUGINS).join(name);
        std::fs::copy(&from, bin_dir.join(name)).with_context(|| {
            format!(
                "copying {} (Debian's containernetworking-plugins)",
                from.display()
            )
        })?;
    }
    std::fs::copy(plugin, bin_dir.join("nethouse-cni"))
        .with_context(|| format!("copying {}", plugin.display()))?;
    Ok(())
}

/// The lines of a nethouse-cni log that parse (a line being written may not yet).
pub fn calls(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capability_is_dropped_only_when_asked() {
        let settings = |pod_annotations| ChainSettings {
            zone: "z1",
            node: "z1-a",
            master: "up0",
            nethouse_url: "http://10.0.0.1:1",
            cluster: "e2e",
            log_file: Path::new("/tmp/cni.log"),
            pod_annotations,
        };
        let main = |pod_annotations| -> Value {
            let text = conflist(&settings(pod_annotations)).unwrap();
            serde_json::from_str::<Value>(&text).unwrap()["plugins"][0].clone()
        };
        assert_eq!(
            main(true)["capabilities"],
            json!({POD_ANNOTATIONS_CAPABILITY: true})
        );
        let without = main(false);
        assert!(without.get("capabilities").is_none(), "{without}");
        assert_eq!(without["ipam"]["zone"], "z1");
    }
}
