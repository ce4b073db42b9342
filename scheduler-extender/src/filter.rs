//! The two verbs of the extender protocol, pure over the extender's view: `filter` keeps the
//! nodes a pod may go to and says why the others may not, `prioritize` scores the node a fixed
//! pod ran on last. The HTTP surface (`server`) only times and answers them.

use std::sync::Arc;

use nethouse_api::contract::ZONE_LABEL;

use crate::decide::{Verdict, filter_zone, score};
use crate::index::{NO_ZONE, NODE_UNKNOWN, View};
use crate::protocol::{
    Candidates, HostPriority, Kept, Name, ProtocolError, Reasons, filter_result,
    node_name_and_zone, parse_args, priority_result,
};

/// The filter decision for one request body; `Err` is a 400.
pub fn filter<'a, V: View>(view: &V, body: &'a [u8]) -> Result<(String, bool), ProtocolError> {
    let args = parse_args(body)?;
    let pod = &args.pod;
    let none = Reasons::new();
    if !pod.fixed {
        // Not ours: hand the candidates back untouched.
        let kept = match args.candidates {
            Candidates::Names(n) => Kept::Names(n),
            Candidates::Nodes(n) => Kept::Nodes(n),
            Candidates::None => Kept::None,
        };
        return Ok((filter_result(kept, &none, &none, ""), false));
    }
    let location = view.location(&pod.key());
    // One verdict per distinct zone: thousands of nodes share a handful of zones. Zone names
    // are interned by the index, so a pointer comparison finds the zone without hashing it.
    let mut by_zone: Vec<(Option<Arc<str>>, Verdict)> = Vec::new();
    let mut verdict_for = |zone: Option<Arc<str>>| -> Verdict {
        let same = |z: &Option<Arc<str>>| match (z, &zone) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || **a == **b,
            (None, None) => true,
            _ => false,
        };
        if let Some((_, v)) = by_zone.iter().find(|(z, _)| same(z)) {
            return v.clone();
        }
        let v = filter_zone(pod, location.as_ref(), zone.as_deref(), |z| {
            view.zone_has_room(z)
        });
        by_zone.push((zone, v.clone()));
        v
    };
    let mut failed = Reasons::new();
    let mut unresolvable = Reasons::new();
    // The refused names move into the answer; only the kept ones come back to the caller.
    let mut sort = |node: Name<'a>, verdict: Verdict| -> Option<Name<'a>> {
        match verdict {
            Verdict::Keep => Some(node),
            Verdict::Failed(r) => {
                failed.push((node, r));
                None
            }
            Verdict::Unresolvable(r) => {
                unresolvable.push((node, r));
                None
            }
        }
    };
    let not_cached: Arc<str> = Arc::from("the node is not in the extender's cache yet");
    let kept = match args.candidates {
        Candidates::Names(names) => {
            let zones = view.node_zones(&names);
            // One verdict per code (unknown, no zone, each zone), decided on first use.
            let mut verdicts: Vec<Option<Verdict>> = vec![None; zones.zones.len() + 2];
            let mut keep = Vec::with_capacity(names.len());
            for (n, code) in names.into_iter().zip(zones.of.iter().copied()) {
                let slot = &mut verdicts[code as usize];
                let verdict = match slot {
                    Some(v) => v.clone(),
                    None => {
                        let v = match code {
                            NODE_UNKNOWN => Verdict::Failed(not_cached.clone()),
                            NO_ZONE => verdict_for(None),
                            c => verdict_for(Some(zones.zones[c as usize - 2].clone())),
                        };
                        *slot = Some(v.clone());
                        v
                    }
                };
                if let Some(n) = sort(n, verdict) {
                    keep.push(n);
                }
            }
            Kept::Names(keep)
        }
        Candidates::Nodes(items) => {
            let mut keep = Vec::with_capacity(items.len());
            for raw in items {
                let (n, zone) = node_name_and_zone(raw, ZONE_LABEL)?;
                if sort(Name::Owned(n), verdict_for(zone.map(Arc::from))).is_some() {
                    keep.push(raw);
                }
            }
            Kept::Nodes(keep)
        }
        Candidates::None => Kept::None,
    };
    Ok((filter_result(kept, &failed, &unresolvable, ""), true))
}

/// Scores for one request body; `Err` is a 400.
pub fn prioritize<V: View>(view: &V, body: &[u8]) -> Result<String, ProtocolError> {
    let args = parse_args(body)?;
    let location = if args.pod.fixed {
        view.location(&args.pod.key())
    } else {
        None
    };
    let names: Vec<Name<'_>> = match args.candidates {
        Candidates::Names(n) => n,
        Candidates::Nodes(items) => items
            .into_iter()
            .map(|raw| node_name_and_zone(raw, ZONE_LABEL).map(|(n, _)| Name::Owned(n)))
            .collect::<Result<_, _>>()?,
        Candidates::None => Vec::new(),
    };
    let list: Vec<HostPriority> = names
        .into_iter()
        .map(|n| HostPriority {
            score: score(location.as_ref(), &n),
            host: n.into_owned(),
        })
        .collect();
    Ok(priority_result(&list))
}
