//! What the decisions need, kept in plain maps that the watchers (reflectors on Nodes and
//! Locations, a poller of NetHouse's zones) fill and tests fill directly. Handlers read it
//! through [`View`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::decide::LocationInfo;

#[derive(Default)]
pub struct Index {
    /// node name -> its `nethouse.io/network-zone` label (shared: few distinct zones).
    nodes: HashMap<String, Option<Arc<str>>>,
    /// `namespace/name` -> Location.
    locations: HashMap<String, LocationInfo>,
    /// zone -> whether a new lease can be allocated there (from NetHouse `/v1/zones`).
    zones: HashMap<String, bool>,
    /// One shared copy of each zone name.
    zone_names: std::collections::HashSet<Arc<str>>,
    synced: bool,
}

impl Index {
    pub fn apply_node(&mut self, name: &str, zone: Option<&str>) {
        let zone = zone.map(|z| match self.zone_names.get(z) {
            Some(known) => known.clone(),
            None => {
                let new: Arc<str> = Arc::from(z);
                self.zone_names.insert(new.clone());
                new
            }
        });
        self.nodes.insert(name.to_string(), zone);
    }

    pub fn delete_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    pub fn apply_location(&mut self, namespace: &str, name: &str, info: LocationInfo) {
        self.locations.insert(format!("{namespace}/{name}"), info);
    }

    pub fn delete_location(&mut self, namespace: &str, name: &str) {
        self.locations.remove(&format!("{namespace}/{name}"));
    }

    pub fn set_zones(&mut self, zones: impl IntoIterator<Item = (String, bool)>) {
        self.zones = zones.into_iter().collect();
    }

    pub fn set_synced(&mut self, synced: bool) {
        self.synced = synced;
    }
}

/// Read access for the handlers.
pub trait View: Send + Sync + 'static {
    /// `None`: node unknown; `Some(None)`: known, without a zone label.
    fn node_zone(&self, node: &str) -> Option<Option<Arc<str>>>;
    /// The zones of many nodes under one lock, in order.
    fn node_zones(&self, nodes: &[String]) -> Vec<Option<Option<Arc<str>>>> {
        nodes.iter().map(|n| self.node_zone(n)).collect()
    }
    fn location(&self, pod_key: &str) -> Option<LocationInfo>;
    fn zone_has_room(&self, zone: &str) -> Option<bool>;
    fn ready(&self) -> bool;
}

impl View for RwLock<Index> {
    fn node_zone(&self, node: &str) -> Option<Option<Arc<str>>> {
        self.read().ok()?.nodes.get(node).cloned()
    }

    fn node_zones(&self, nodes: &[String]) -> Vec<Option<Option<Arc<str>>>> {
        match self.read() {
            Ok(i) => nodes.iter().map(|n| i.nodes.get(n).cloned()).collect(),
            Err(_) => vec![None; nodes.len()],
        }
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

    fn node_zones(&self, nodes: &[String]) -> Vec<Option<Option<Arc<str>>>> {
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
