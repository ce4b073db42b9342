//! A node's link to its zone: a veth from the zone's bridge in the fabric into the node, the
//! node's address on a macvlan of it, a default route through the zone's gateway. No route
//! anywhere else knows the node.

use std::net::Ipv4Addr;

use anyhow::bail;

use super::fabric::{Fabric, Zone};
use super::netns::NetNs;

/// The node's link to its zone's bridge; pods' macvlans hang on it.
pub const UPLINK: &str = "uplink";
/// The node's own address lives on a macvlan of the uplink: a macvlan parent never talks to
/// its children, so with the address on the uplink the node could not reach its own pods
/// (kubelet's HTTP probes fail).
const NODE_LINK: &str = "node0";

/// Wires node `node` (namespace `netns`) into `zone` with address `ip`; its end of the link is
/// named `uplink` ([`UPLINK`], or `eth0` as the shipped macvlan template expects).
pub fn wire(
    fabric: &Fabric,
    zone: &Zone,
    netns: &NetNs,
    node: &str,
    ip: Ipv4Addr,
    uplink: &str,
) -> anyhow::Result<()> {
    let port = format!("up-{node}");
    if port.len() > 15 {
        bail!("node name {node:?}: at most 12 characters (its bridge port is up-<name>)");
    }
    let f = &fabric.netns;
    f.ip(&[
        "link",
        "add",
        &port,
        "type",
        "veth",
        "peer",
        "name",
        uplink,
        "netns",
        netns.name(),
    ])?;
    f.ip(&["link", "set", &port, "master", &zone.bridge(), "up"])?;
    netns.ip(&["link", "set", uplink, "up"])?;
    netns.ip(&[
        "link", "add", NODE_LINK, "link", uplink, "type", "macvlan", "mode", "bridge",
    ])?;
    netns.ip(&["addr", "add", &format!("{ip}/24"), "dev", NODE_LINK])?;
    netns.ip(&["link", "set", NODE_LINK, "up"])?;
    netns.ip(&[
        "route",
        "add",
        "default",
        "via",
        &zone.gateway().to_string(),
    ])?;
    Ok(())
}
