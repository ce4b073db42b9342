//! What the decisions need, kept in plain maps that the watchers (reflectors on Nodes and
//! Locations, a poller of NetHouse's zones) fill and tests fill directly. Handlers read it
//! through [`View`].

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::sync::{Arc, RwLock};

use crate::decide::LocationInfo;
use crate::protocol::Name;

#[derive(Default)]
pub struct Index {
    /// node name -> its `nethouse.io/network-zone` label (shared: few distinct zones).
    /// Fx-hashed: a filter call looks up every candidate (thousands), and node names are not
    /// attacker-chosen keys.
    nodes: FxHashMap<String, Option<Arc<str>>>,
    /// `namespace/name` -> Location.
    locations: HashMap<String, LocationInfo>,
    /// zone -> whether a new lease can be allocated there (from NetHouse `/v1/zones`).
    zones: HashMap<String, bool>,
    /// One shared copy of each zone name.
    zone_names: std::collections::HashSet<Arc<str>>,
    synced: bool,
}

impl Index {
    fn intern(&mut self, zone: &str) -> Arc<str> {
        match self.zone_names.get(zone) {
            Some(known) => known.clone(),
            None => {
                let new: Arc<str> = Arc::from(zone);
                self.zone_names.insert(new.clone());
                new
            }
        }
    }

    pub fn apply_node(&mut self, name: &str, zone: Option<&str>) {
        let zone = zone.map(|z| self.intern(z));
        self.nodes.insert(name.to_string(), zone);
    }

    /// Every node, from a complete list: nodes not in it are gone.
    pub fn reset_nodes(&mut self, nodes: Vec<(String, Option<String>)>) {
        self.nodes.clear();
        // Zone names of deleted nodes go too: the set only ever holds zones in use.
        self.zone_names.clear();
        for (name, zone) in nodes {
            let zone = zone.as_deref().map(|z| self.intern(z));
            self.nodes.insert(name, zone);
        }
    }

    pub fn delete_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// `key`: `namespace/name`.
    pub fn apply_location(&mut self, key: String, info: LocationInfo) {
        self.locations.insert(key, info);
    }

    pub fn delete_location(&mut self, key: &str) {
        self.locations.remove(key);
    }

    /// Every Location, from a complete list: Locations not in it are gone.
    pub fn reset_locations(&mut self, locations: Vec<(String, LocationInfo)>) {
        self.locations = locations.into_iter().collect();
    }

    pub fn set_zones(&mut self, zones: impl IntoIterator<Item = (String, bool)>) {
        self.zones = zones.into_iter().collect();
    }

    pub fn set_synced(&mut self, synced: bool) {
        self.synced = synced;
    }
}

/// The zones of many nodes, compactly: each distinct zone once, and per node a code.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NodeZones {
    pub zones: Vec<Arc<str>>,
    /// Per node, in order: [`NODE_UNKNOWN`], [`NO_ZONE`], or 2 + an index into `zones`.
    pub of: Vec<u32>,
}

pub const NODE_UNKNOWN: u32 = 0;
pub const NO_ZONE: u32 = 1;

impl NodeZones {
    fn push(&mut self, zone: Option<Option<&Arc<str>>>) {
        let code = match zone {
            None => NODE_UNKNOWN,
            Some(None) => NO_ZONE,
            Some(Some(z)) => {
                // Zone names are interned: a handful, compared by pointer first.
                let i = match self
                    .zones
                    .iter()
                    .position(|x| Arc::ptr_eq(x, z) || **x == **z)
                {
                    Some(i) => i,
                    None => {
                        self.zones.push(z.clone());
                        self.zones.len() - 1
                    }
                };
                2 + i as u32
            }
        };
        self.of.push(code);
    }
}

/// Read access for the handlers.
pub trait View: Send + Sync + 'static {
    /// `None`: node unknown; `Some(None)`: known, without a zone label.
    fn node_zone(&self, node: &str) -> Option<Option<Arc<str>>>;
    /// The zones of many nodes under one lock, in order.
    fn node_zones(&self, nodes: &[Name<'_>]) -> NodeZones {
        let mut out = NodeZones::default();
        for n in nodes {
            let z = self.node_zone(n);
            out.push(z.as_ref().map(|z| z.as_ref()));
        }
        out
    }
    fn location(&self, pod_key: &str) -> Option<LocationInfo>;
    fn zone_has_room(&self, zone: &str) -> Option<bool>;
    fn ready(&self) -> bool;
}

impl View for RwLock<Index> {
    fn node_zone(&self, node: &str) -> Option<Option<Arc<str>>> {
        self.read().ok()?.nodes.get(node).cloned()
    }

    fn node_zones(&self, nodes: &[Name<'_>]) -> NodeZones {
        let mut out = NodeZones {
            zones: Vec::new(),
            of: Vec::with_capacity(nodes.len()),
        };
        match self.read() {
            Ok(i) => {
                for n in nodes {
                    out.push(i.nodes.get(&**n).map(|z| z.as_ref()));
                }
            }
            Err(_) => out.of.resize(nodes.len(), NODE_UNKNOWN),
        }
        out
    }

    fn location(&self, pod_key: &str) -> Option<LocationInfo> {
        self.read().ok()?.locations.get(pod_key).cloned()
    }

    fn zone_has_room(&self, zone: &str) -> Option<bool> {
        self.read().ok()?.zones.get(zone).copied()
    }

    fn ready(&self) -> bool {
        self.read().is_ok_and(|i| i.synced)
    }
}

/// Shared between the watchers (writers) and the handlers (readers).
impl<T: View> View for std::sync::Arc<T> {
    fn node_zone(&self, node: &str) -> Option<Option<Arc<str>>> {
        (**self).node_zone(node)
    }

    fn node_zones(&self, nodes: &[Name<'_>]) -> NodeZones {
        (**self).node_zones(nodes)
    }

    fn location(&self, pod_key: &str) -> Option<LocationInfo> {
        (**self).location(pod_key)
    }

    fn zone_has_room(&self, zone: &str) -> Option<bool> {
        (**self).zone_has_room(zone)
    }

    fn ready(&self) -> bool {
        (**self).ready()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_zones_are_coded_by_distinct_zone() {
        let mut index = Index::default();
        index.apply_node("a", Some("z1"));
        index.apply_node("b", Some("z2"));
        index.apply_node("c", Some("z1"));
        index.apply_node("d", None);
        let view = RwLock::new(index);
        let names: Vec<Name<'_>> = ["a", "b", "c", "d", "e"].map(Name::from).to_vec();
        let got = view.node_zones(&names);
        assert_eq!(got.of, vec![2, 3, 2, NO_ZONE, NODE_UNKNOWN]);
        assert_eq!(
            got.zones.iter().map(|z| &**z).collect::<Vec<_>>(),
            vec!["z1", "z2"]
        );
        // The trait's default (one lookup per node) says the same.
        struct One(RwLock<Index>);
        impl View for One {
            fn node_zone(&self, node: &str) -> Option<Option<Arc<str>>> {
                self.0.node_zone(node)
            }
            fn location(&self, _: &str) -> Option<LocationInfo> {
                None
            }
            fn zone_has_room(&self, _: &str) -> Option<bool> {
                None
            }
            fn ready(&self) -> bool {
                true
            }
        }
        assert_eq!(One(view).node_zones(&names), got);
    }
}
