//! What a node-bound caller may change: its own node's attachments, nothing else. Decided from
//! the request and the attachments the leases it names have now, before the IPAM acts.
//!
//! Deciding on the view before the call (not under the IPAM's key lock) is enough: the one
//! change that could slip in between is another node attaching a lease under the same
//! container ID and interface, and container IDs are the runtimes' own random 64-hex names.

use std::sync::Arc;

use axum::http::StatusCode;
use nethouse_api::{Attachment, LeaseKind, codes};

use crate::server::errors::ApiErr;

/// Whose attachments a caller may change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// No authentication, a controller, or an unbound `node` token.
    AllNodes,
    /// A node credential bound to this node.
    Node(Arc<str>),
}

/// A bound caller asked to act on another node: 403 `forbidden`, naming both nodes and the
/// request field that asked. Nothing was changed.
#[derive(Debug, PartialEq, Eq)]
pub struct OtherNode {
    pub bound: Arc<str>,
    pub asked: String,
    pub field: &'static str,
    /// What it may not do, e.g. `allocate`.
    pub doing: String,
}

impl From<OtherNode> for ApiErr {
    fn from(o: OtherNode) -> Self {
        ApiErr::new(
            StatusCode::FORBIDDEN,
            codes::FORBIDDEN,
            format!(
                "this credential is bound to node {:?} and may not {} on node {:?}",
                o.bound, o.doing, o.asked
            ),
        )
        .with_field(o.field)
    }
}

fn refuse(bound: &Arc<str>, asked: &str, field: &'static str, doing: String) -> OtherNode {
    OtherNode {
        bound: bound.clone(),
        asked: asked.to_string(),
        field,
        doing,
    }
}

/// Allocation: only for the caller's node. An ephemeral lease already attached under the
/// same container ID and interface on another node is that node's, and not taken over. A fixed
/// lease attached elsewhere moves to the caller: that is the re-attach rule (a fixed pod comes
/// back on a new node after its old node died), and its addresses stay with the pod name.
pub fn allocate(
    scope: &Scope,
    kind: LeaseKind,
    node: &str,
    current: Option<&Attachment>,
) -> Result<(), OtherNode> {
    let Scope::Node(bound) = scope else {
        return Ok(());
    };
    if node != &**bound {
        return Err(refuse(bound, node, "attachment.node", "allocate".into()));
    }
    match current {
        Some(a) if kind == LeaseKind::Ephemeral && a.node != **bound => Err(refuse(
            bound,
            &a.node,
            "attachment.container_id",
            format!("take over attachment {}/{}", a.container_id, a.ifname),
        )),
        _ => Ok(()),
    }
}

/// Detach: not of an attachment on another node. `current` are the attachments of the leases
/// the request names; one of another attachment is left alone by the detach anyway.
pub fn detach(
    scope: &Scope,
    container_id: &str,
    ifname: &str,
    current: &[Attachment],
) -> Result<(), OtherNode> {
    let Scope::Node(bound) = scope else {
        return Ok(());
    };
    match current
        .iter()
        .find(|a| a.container_id == container_id && a.ifname == ifname && a.node != **bound)
    {
        Some(a) => Err(refuse(
            bound,
            &a.node,
            "container_id",
            format!("detach attachment {container_id}/{ifname}"),
        )),
        None => Ok(()),
    }
}

/// GC: only of the caller's node.
pub fn gc(scope: &Scope, node: &str) -> Result<(), OtherNode> {
    match scope {
        Scope::Node(bound) if node != &**bound => {
            Err(refuse(bound, node, "node", "garbage-collect".into()))
        }
        _ => Ok(()),
    }
}

/// A refused ADD is reported only by the node that refused it: one node's credential cannot
/// make another node's refusals count.
pub fn report(scope: &Scope, node: &str) -> Result<(), OtherNode> {
    match scope {
        Scope::Node(bound) if node != &**bound => Err(refuse(
            bound,
            node,
            "attachment.node",
            "report a refused ADD".into(),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(cid: &str, node: &str) -> Attachment {
        Attachment {
            container_id: cid.into(),
            ifname: "eth0".into(),
            node: node.into(),
        }
    }

    fn a() -> Scope {
        Scope::Node("a".into())
    }

    /// (asked node, field) of a refusal; `None`: allowed.
    type Verdict = Option<(String, &'static str)>;

    fn verdict(r: Result<(), OtherNode>) -> Verdict {
        r.err().map(|o| (o.asked, o.field))
    }

    #[test]
    fn allocate_table() {
        use LeaseKind::{Ephemeral, Fixed};
        let on_b = att("c1", "b");
        let on_a = att("c1", "a");
        let refused = |node: &str, field| Some((node.to_string(), field));
        #[rustfmt::skip]
        let cases: Vec<(Scope, LeaseKind, &str, Option<&Attachment>, Verdict)> = vec![
            // An unbound caller: as before, anything.
            (Scope::AllNodes, Fixed, "b", Some(&on_b), None),
            (Scope::AllNodes, Ephemeral, "a", Some(&on_b), None),
            // Its own node, new or its own attachment.
            (a(), Fixed, "a", None, None),
            (a(), Ephemeral, "a", None, None),
            (a(), Ephemeral, "a", Some(&on_a), None),
            (a(), Fixed, "a", Some(&on_a), None),
            // The re-attach rule: a fixed lease attached on another (dead) node moves here.
            (a(), Fixed, "a", Some(&on_b), None),
            // Another node's attachment asked for.
            (a(), Fixed, "b", None, refused("b", "attachment.node")),
            (a(), Ephemeral, "b", Some(&on_b), refused("b", "attachment.node")),
            // Another node's ephemeral lease, asked for as this node's: not taken over.
            (a(), Ephemeral, "a", Some(&on_b), refused("b", "attachment.container_id")),
        ];
        for (scope, kind, node, current, want) in cases {
            assert_eq!(
                verdict(allocate(&scope, kind, node, current)),
                want,
                "{scope:?} {kind:?} for {node} over {current:?}"
            );
        }
    }

    #[test]
    fn detach_table() {
        let mut other_if = att("c1", "b");
        other_if.ifname = "net1".into();
        #[rustfmt::skip]
        let cases: Vec<(Scope, Vec<Attachment>, Verdict)> = vec![
            (Scope::AllNodes, vec![att("c1", "b")], None),
            (a(), vec![], None),
            (a(), vec![att("c1", "a")], None),
            // Another sandbox holds the lease now (on any node): the detach is a no-op anyway.
            (a(), vec![att("c2", "b")], None),
            (a(), vec![other_if], None),
            (a(), vec![att("c1", "b")], Some(("b".into(), "container_id"))),
            (a(), vec![att("c9", "a"), att("c1", "b")], Some(("b".into(), "container_id"))),
        ];
        for (scope, current, want) in cases {
            assert_eq!(
                verdict(detach(&scope, "c1", "eth0", &current)),
                want,
                "{scope:?} over {current:?}"
            );
        }
    }

    #[test]
    fn gc_table() {
        assert_eq!(verdict(gc(&Scope::AllNodes, "b")), None);
        assert_eq!(verdict(gc(&a(), "a")), None);
        assert_eq!(verdict(gc(&a(), "b")), Some(("b".into(), "node")));
    }

    #[test]
    fn report_table() {
        assert_eq!(verdict(report(&Scope::AllNodes, "b")), None);
        assert_eq!(verdict(report(&a(), "a")), None);
        assert_eq!(
            verdict(report(&a(), "b")),
            Some(("b".into(), "attachment.node"))
        );
    }

    #[test]
    fn the_403_names_both_nodes_and_the_field() {
        let e = ApiErr::from(gc(&a(), "b").unwrap_err());
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(e.error.code, codes::FORBIDDEN);
        assert_eq!(e.error.field.as_deref(), Some("node"));
        assert_eq!(
            e.error.message,
            r#"this credential is bound to node "a" and may not garbage-collect on node "b""#
        );
    }
}
