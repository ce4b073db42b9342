//! Keeps the index's Nodes and Locations current from kube-runtime watchers. A watcher that
//! lost its watch (expired, 410 Gone, an apiserver restart) lists everything again; objects
//! deleted meanwhile are absent from that list and must be forgotten, so a re-list is buffered
//! from `Init` to `InitDone` and then replaces the whole kind at once (readers keep the old view
//! until then, never a half-filled one). The index reports ready once both kinds have listed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use nethouse_api::location::{Location, LocationPhase, ZONE_LABEL};

use crate::decide::LocationInfo;
use crate::index::Index;

/// What one watcher event does to one kind of the index.
#[derive(Debug, PartialEq, Eq)]
pub enum Change<T> {
    Apply(String, T),
    Delete(String),
    /// A complete list: everything else of this kind is gone.
    Reset(Vec<(String, T)>),
    /// Nothing yet (an event inside a re-list, which is buffered).
    None,
}

/// Turns watcher events into index changes, buffering a re-list. Pure, so re-list handling is
/// tested from sequences of events.
pub struct Relist<T> {
    listing: Option<Vec<(String, T)>>,
}

impl<T> Default for Relist<T> {
    fn default() -> Self {
        Relist { listing: None }
    }
}

impl<T> Relist<T> {
    pub fn step<K>(&mut self, event: Event<K>, view: impl Fn(&K) -> (String, T)) -> Change<T> {
        match event {
            Event::Init => {
                self.listing = Some(Vec::new());
                Change::None
            }
            Event::InitApply(k) => {
                let (key, v) = view(&k);
                match &mut self.listing {
                    Some(list) => {
                        list.push((key, v));
                        Change::None
                    }
                    // Not announced by Init: apply as is rather than lose it.
                    None => Change::Apply(key, v),
                }
            }
            Event::InitDone => Change::Reset(self.listing.take().unwrap_or_default()),
            Event::Apply(k) => {
                let (key, v) = view(&k);
                Change::Apply(key, v)
            }
            Event::Delete(k) => Change::Delete(view(&k).0),
        }
    }
}

fn node_view(n: &Node) -> (String, Option<String>) {
    (n.name_any(), n.labels().get(ZONE_LABEL).cloned())
}

fn location_view(l: &Location) -> (String, LocationInfo) {
    let phase = l.status.as_ref().and_then(|s| s.phase);
    let info = LocationInfo {
        ips: l.spec.ips.clone(),
        zone: l.spec.zone.clone(),
        node: l.status.as_ref().and_then(|s| s.node.clone()),
        // A deleted Location no longer pins its pod, except while it is retained (its
        // StatefulSet was deleted): a StatefulSet recreated under the same name in the
        // retention window gets its pods back in the zone of their IPs.
        deleting: l.metadata.deletion_timestamp.is_some() && phase != Some(LocationPhase::Retained),
        running: phase == Some(LocationPhase::Running),
    };
    (
        format!("{}/{}", l.namespace().unwrap_or_default(), l.name_any()),
        info,
    )
}

struct Synced {
    nodes: AtomicBool,
    locations: AtomicBool,
}

impl Synced {
    fn update(&self, index: &RwLock<Index>) {
        let all = self.nodes.load(Ordering::SeqCst) && self.locations.load(Ordering::SeqCst);
        if let Ok(mut i) = index.write() {
            i.set_synced(all);
        }
    }
}

/// Runs one watcher into the index until its stream ends; `apply` writes a change under the
/// index's lock, `listed` is set after the first complete list.
async fn watch<K, T>(
    api: Api<K>,
    what: &'static str,
    index: Arc<RwLock<Index>>,
    view: fn(&K) -> (String, T),
    apply: fn(&mut Index, Change<T>),
    listed: impl Fn(),
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    let mut relist = Relist::default();
    loop {
        match stream.try_next().await {
            Ok(Some(event)) => {
                let done = matches!(event, Event::InitDone);
                let change = relist.step(event, view);
                if let Change::Reset(list) = &change {
                    tracing::info!(kind = what, objects = list.len(), "listed");
                }
                if !matches!(change, Change::None)
                    && let Ok(mut i) = index.write()
                {
                    apply(&mut i, change);
                }
                if done {
                    listed();
                }
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(kind = what, error = %e, "watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn apply_node(i: &mut Index, c: Change<Option<String>>) {
    match c {
        Change::Apply(name, zone) => i.apply_node(&name, zone.as_deref()),
        Change::Delete(name) => i.delete_node(&name),
        Change::Reset(all) => i.reset_nodes(all),
        Change::None => {}
    }
}

fn apply_location(i: &mut Index, c: Change<LocationInfo>) {
    match c {
        Change::Apply(key, info) => i.apply_location(key, info),
        Change::Delete(key) => i.delete_location(&key),
        Change::Reset(all) => i.reset_locations(all),
        Change::None => {}
    }
}

/// Starts both watchers; they run until the returned handles are aborted.
pub fn start(client: kube::Client, index: Arc<RwLock<Index>>) -> Vec<tokio::task::JoinHandle<()>> {
    let synced = Arc::new(Synced {
        nodes: AtomicBool::new(false),
        locations: AtomicBool::new(false),
    });
    let (s1, s2, i1, i2) = (synced.clone(), synced, index.clone(), index.clone());
    vec![
        tokio::spawn(watch(
            Api::<Node>::all(client.clone()),
            "Node",
            index.clone(),
            node_view,
            apply_node,
            move || {
                s1.nodes.store(true, Ordering::SeqCst);
                s1.update(&i1);
            },
        )),
        tokio::spawn(watch(
            Api::<Location>::all(client),
            "Location",
            index,
            location_view,
            apply_location,
            move || {
                s2.locations.store(true, Ordering::SeqCst);
                s2.update(&i2);
            },
        )),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(e: &str, name: &str) -> Event<(String, u8)> {
        let k = (name.to_string(), 0);
        match e {
            "init" => Event::Init,
            "initapply" => Event::InitApply(k),
            "done" => Event::InitDone,
            "apply" => Event::Apply(k),
            _ => Event::Delete(k),
        }
    }

    #[test]
    fn a_relist_replaces_the_kind_and_forgets_what_is_gone() {
        let view = |k: &(String, u8)| (k.0.clone(), k.1);
        let mut r = Relist::default();
        let mut out = Vec::new();
        for (e, n) in [
            ("init", ""),
            ("initapply", "a"),
            ("initapply", "b"),
            ("done", ""),
            ("apply", "c"),
            ("delete", "a"),
            // The watch was lost: the list again, without b and c.
            ("init", ""),
            ("initapply", "d"),
            ("done", ""),
            // An empty list is a complete list too: everything is gone.
            ("init", ""),
            ("done", ""),
        ] {
            out.push(r.step(ev(e, n), view));
        }
        let key = |n: &str| (n.to_string(), 0u8);
        assert_eq!(
            out,
            vec![
                Change::None,
                Change::None,
                Change::None,
                Change::Reset(vec![key("a"), key("b")]),
                Change::Apply("c".into(), 0),
                Change::Delete("a".into()),
                Change::None,
                Change::None,
                Change::Reset(vec![key("d")]),
                Change::None,
                Change::Reset(vec![]),
            ]
        );
    }

    #[test]
    fn a_reset_index_forgets_deleted_nodes_and_locations() {
        let mut i = Index::default();
        apply_node(&mut i, Change::Apply("n1".into(), Some("z1".into())));
        apply_node(&mut i, Change::Apply("n2".into(), Some("z2".into())));
        let loc = |zone: &str| LocationInfo {
            ips: vec!["10.0.0.1".into()],
            zone: zone.into(),
            node: None,
            deleting: false,
            running: true,
        };
        apply_location(&mut i, Change::Apply("ns/a".into(), loc("z1")));
        apply_location(&mut i, Change::Apply("ns/b".into(), loc("z2")));
        apply_node(
            &mut i,
            Change::Reset(vec![("n2".into(), Some("z3".into()))]),
        );
        apply_location(&mut i, Change::Reset(vec![("ns/b".into(), loc("z2"))]));
        let view = RwLock::new(i);
        use crate::index::View;
        assert_eq!(view.node_zone("n1"), None);
        assert_eq!(view.node_zone("n2").flatten().as_deref(), Some("z3"));
        assert_eq!(view.location("ns/a"), None);
        assert_eq!(view.location("ns/b"), Some(loc("z2")));
    }
}
