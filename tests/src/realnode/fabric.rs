//! The fabric: the data-center network the nodes attach to, as one network namespace. Each
//! zone is a bridge (its L2 segment) holding the zone's gateway; forwarding is on, so the
//! fabric is also the router between zones. It holds one more address, on its loopback, where
//! nodes reach the control plane and NetHouse, which run in it: the thread that starts them
//! enters the fabric first ([`Fabric::enter`]), and the host's network stays untouched.

use std::net::Ipv4Addr;

use anyhow::{Context, bail};

use super::netns::{Entered, NetNs};

/// Zone `index` (1-based) is `10.61.<index>.0/24`: gateway `.1`, nodes from `.10`, pods from
/// `.50` (NetHouse is told to leave `.1`–`.49` alone).
#[derive(Clone, Debug)]
pub struct Zone {
    pub name: String,
    pub index: u8,
}

/// Node addresses start here in every zone; pods start after `NODES_END`.
const NODES_START: u8 = 10;
const NODES_END: u8 = 49;

impl Zone {
    pub fn cidr(&self) -> String {
        format!("10.61.{}.0/24", self.index)
    }

    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 61, self.index, 1)
    }

    /// The address of the zone's `k`-th node (0-based).
    pub fn node_ip(&self, k: usize) -> anyhow::Result<Ipv4Addr> {
        let host = u8::try_from(k)
            .ok()
            .and_then(|k| NODES_START.checked_add(k))
            .filter(|h| *h <= NODES_END)
            .with_context(|| {
                format!(
                    "zone {} has room for {} nodes",
                    self.name,
                    NODES_END - NODES_START + 1
                )
            })?;
        Ok(Ipv4Addr::new(10, 61, self.index, host))
    }

    /// What NetHouse must never hand out: the gateway and the node addresses.
    pub fn reserved(&self) -> String {
        format!("10.61.{i}.1-10.61.{i}.{NODES_END}", i = self.index)
    }

    pub fn bridge(&self) -> String {
        format!("br-{}", self.name)
    }
}

pub struct Fabric {
    pub netns: NetNs,
    pub zones: Vec<Zone>,
    /// Where nodes reach the control plane and NetHouse.
    pub address: Ipv4Addr,
}

impl Fabric {
    /// `zones`: names of at most 12 characters (a bridge is `br-<zone>`, and interface names
    /// have 15).
    pub fn create(netns_name: &str, zones: &[&str]) -> anyhow::Result<Fabric> {
        let netns = NetNs::create(netns_name)?;
        let address = Ipv4Addr::new(10, 61, 0, 1);
        netns.ip(&["addr", "add", &format!("{address}/32"), "dev", "lo"])?;
        let mut fabric = Fabric {
            netns,
            zones: Vec::new(),
            address,
        };
        for (i, name) in zones.iter().enumerate() {
            if name.is_empty() || name.len() > 12 {
                bail!("zone name {name:?}: 1 to 12 characters");
            }
            let zone = Zone {
                name: name.to_string(),
                index: u8::try_from(i + 1).context("at most 254 zones")?,
            };
            let br = zone.bridge();
            let ns = &fabric.netns;
            ns.ip(&["link", "add", &br, "type", "bridge"])?;
            ns.ip(&["addr", "add", &format!("{}/24", zone.gateway()), "dev", &br])?;
            ns.ip(&["link", "set", &br, "up"])?;
            fabric.zones.push(zone);
        }
        fabric.netns.sysctl("net.ipv4.ip_forward", "1")?;
        Ok(fabric)
    }

    pub fn zone(&self, name: &str) -> anyhow::Result<&Zone> {
        self.zones
            .iter()
            .find(|z| z.name == name)
            .with_context(|| format!("no zone {name} in the fabric"))
    }

    /// Moves the calling thread into the fabric (see the module doc) until the guard drops.
    pub fn enter(&self) -> anyhow::Result<Entered> {
        self.netns.enter()
    }
}
