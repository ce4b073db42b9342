//! The extender's decisions, pure and table-tested: which nodes a pod may go to, and which it
//! should prefer.

use std::sync::Arc;

use crate::protocol::PodRef;

/// What the extender knows about a fixed pod's Location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocationInfo {
    pub ips: Vec<String>,
    pub zone: String,
    /// Where the pod ran last.
    pub node: Option<String>,
    /// Being deleted: counts as absent (its IP is about to be released).
    pub deleting: bool,
    /// Its phase is `Running`, the one the Location writer sets: the writer compares what it
    /// would write with what the cache holds.
    pub running: bool,
}

/// Reasons are shared: the verdict depends only on the pod and the node's zone (the node is
/// the key it is reported under), so one text serves every node of a zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Another attempt may succeed (e.g. the node is not in the cache yet).
    Failed(Arc<str>),
    /// Preemption cannot help: the IP cannot live there.
    Unresolvable(Arc<str>),
}

/// May `pod` run on a node whose zone label is `node_zone`?
/// `zone_has_room(zone)`: `Some(true/false)` from NetHouse's capacity view, `None` when unknown.
pub fn filter_zone(
    pod: &PodRef,
    location: Option<&LocationInfo>,
    node_zone: Option<&str>,
    zone_has_room: impl Fn(&str) -> Option<bool>,
) -> Verdict {
    if !pod.fixed {
        return Verdict::Keep;
    }
    let location = location.filter(|l| !l.deleting);
    let Some(zone) = node_zone else {
        return Verdict::Unresolvable(
            format!(
                "the node has no nethouse.io/network-zone label, so no fixed IP can live there (pod {})",
                pod.key()
            )
            .into(),
        );
    };
    match location {
        Some(loc) if loc.zone == zone => Verdict::Keep,
        Some(loc) => Verdict::Unresolvable(
            format!(
                "pod {} holds IP {} in zone {}; the node is in zone {zone}",
                pod.key(),
                loc.ips.join(","),
                loc.zone
            )
            .into(),
        ),
        None => match zone_has_room(zone) {
            Some(true) => Verdict::Keep,
            Some(false) => Verdict::Unresolvable(
                format!(
                    "zone {zone} of the node has no free address for pod {}",
                    pod.key()
                )
                .into(),
            ),
            // Capacity unknown (NetHouse not answering yet): let the node through; the CNI
            // plugin is the last word on whether an address can be had.
            None => Verdict::Keep,
        },
    }
}

/// 10 for the node the pod ran on last (its IP and often its data are there), else 0.
pub fn score(location: Option<&LocationInfo>, node: &str) -> i64 {
    match location {
        Some(l) if !l.deleting && l.node.as_deref() == Some(node) => 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(fixed: bool) -> PodRef {
        PodRef {
            namespace: "db".into(),
            name: "redis-0".into(),
            fixed,
        }
    }

    fn loc(zone: &str, deleting: bool) -> LocationInfo {
        LocationInfo {
            ips: vec!["10.9.0.7".into()],
            zone: zone.into(),
            node: Some("n1".into()),
            deleting,
            running: true,
        }
    }

    #[test]
    fn table() {
        let room = |z: &str| match z {
            "z1" => Some(true),
            "full" => Some(false),
            _ => None,
        };
        let z1 = loc("z1", false);
        let deleting = loc("z2", true);
        type Case<'a> = (
            &'a str,
            PodRef,
            Option<&'a LocationInfo>,
            Option<&'a str>,
            Verdict,
        );
        let cases: Vec<Case> = vec![
            ("ordinary pod anywhere", pod(false), None, None, Verdict::Keep),
            ("fixed, own zone", pod(true), Some(&z1), Some("z1"), Verdict::Keep),
            (
                "fixed, other zone",
                pod(true),
                Some(&z1),
                Some("z2"),
                Verdict::Unresolvable("pod db/redis-0 holds IP 10.9.0.7 in zone z1; the node is in zone z2".into()),
            ),
            (
                "fixed, unlabelled node",
                pod(true),
                Some(&z1),
                None,
                Verdict::Unresolvable("the node has no nethouse.io/network-zone label, so no fixed IP can live there (pod db/redis-0)".into()),
            ),
            ("no Location, zone with room", pod(true), None, Some("z1"), Verdict::Keep),
            (
                "no Location, full zone",
                pod(true),
                None,
                Some("full"),
                Verdict::Unresolvable("zone full of the node has no free address for pod db/redis-0".into()),
            ),
            ("no Location, capacity unknown", pod(true), None, Some("z9"), Verdict::Keep),
            ("Location being deleted counts as absent", pod(true), Some(&deleting), Some("z1"), Verdict::Keep),
        ];
        for (name, p, l, zone, want) in cases {
            assert_eq!(filter_zone(&p, l, zone, room), want, "{name}");
        }
    }

    #[test]
    fn scores() {
        let l = loc("z1", false);
        assert_eq!(score(Some(&l), "n1"), 10);
        assert_eq!(score(Some(&l), "n2"), 0);
        assert_eq!(score(None, "n1"), 0);
        assert_eq!(score(Some(&loc("z1", true)), "n1"), 0);
    }
}
