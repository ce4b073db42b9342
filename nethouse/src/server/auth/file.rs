//! The auth file: one `ROLE TOKEN` per line, `#` starts a comment. Roles: `controller`,
//! `node:<node-name>` (a node's own token: it acts for that node only) and `node` (unbound: it
//! acts for every node). No error repeats a line's text: a line with its fields swapped would
//! print its token.

use std::sync::Arc;

use super::{Role, Scope};
use crate::model::validate_name;

/// Shortest token accepted: guessing must stay out of reach.
const MIN_TOKEN_LEN: usize = 16;

/// One token of the auth file. Its Debug never shows the token.
#[derive(Clone)]
pub struct Entry {
    token: String,
    pub role: Role,
    /// The node a `node:<name>` token is bound to.
    pub node: Option<Arc<str>>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("role", &self.role)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Entry {
    pub fn scope(&self) -> Scope {
        match &self.node {
            Some(n) => Scope::Node(n.clone()),
            None => Scope::AllNodes,
        }
    }
}

pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries: Vec<(usize, Entry)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(role), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("line {n}: expected `ROLE TOKEN`"));
        };
        let (role, node) = match role.split_once(':') {
            None if role == "node" => (Role::Node, None),
            None if role == "controller" => (Role::Controller, None),
            Some(("node", name)) => {
                validate_name("node", name, 253)
                    .map_err(|e| format!("line {n}: node:<node-name>: {}", e.message))?;
                (Role::Node, Some(Arc::from(name)))
            }
            _ => {
                return Err(format!(
                    "line {n}: unknown role; expected `node:<node-name>`, `node` or `controller` \
                     before the token"
                ));
            }
        };
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "line {n}: token shorter than {MIN_TOKEN_LEN} characters"
            ));
        }
        // Two lines with one token would make its role or node a matter of line order.
        if let Some((first, _)) = entries.iter().find(|(_, e)| e.token == token) {
            return Err(format!("line {n}: the same token as line {first}"));
        }
        entries.push((
            n,
            Entry {
                token: token.to_string(),
                role,
                node,
            },
        ));
    }
    if entries.is_empty() {
        return Err("no token defined".into());
    }
    Ok(entries.into_iter().map(|(_, e)| e).collect())
}

/// The entry of `presented`. Every token is compared, in constant time, so that the time taken
/// tells nothing about any of them.
pub fn lookup<'a>(entries: &'a [Entry], presented: &str) -> Option<&'a Entry> {
    let mut found = None;
    for e in entries {
        if constant_time_eq(e.token.as_bytes(), presented.as_bytes()) {
            found = Some(e);
        }
    }
    found
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_bound_nodes() {
        let entries = parse(
            "node shared-token-0123456789\n  node:z1-a   a-token-0123456789  # z1-a only\n\
             controller ctrl-token-0123456789\nnode:node-1.example.com b-token-0123456789\n",
        )
        .unwrap();
        let got: Vec<(Role, Option<&str>)> = entries
            .iter()
            .map(|e| (e.role, e.node.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (Role::Node, None),
                (Role::Node, Some("z1-a")),
                (Role::Controller, None),
                (Role::Node, Some("node-1.example.com")),
            ]
        );
        let a = lookup(&entries, "a-token-0123456789").unwrap();
        assert_eq!(a.scope(), Scope::Node("z1-a".into()));
        assert_eq!(
            lookup(&entries, "shared-token-0123456789").unwrap().scope(),
            Scope::AllNodes
        );
        assert!(lookup(&entries, "a-token-012345678").is_none());
        assert!(!format!("{entries:?}").contains("0123456789"));
    }

    #[test]
    fn bad_lines_are_named_without_their_token() {
        let secret = "s3cret-token-0123456789";
        for (text, want) in [
            ("", "no token defined"),
            ("# only a comment\n", "no token defined"),
            ("admin s3cret-token-0123456789", "line 1: unknown role"),
            // Fields swapped: the role position holds the token, which must not be printed.
            ("s3cret-token-0123456789 node", "line 1: unknown role"),
            (
                "node:.. s3cret-token-0123456789",
                "line 1: node:<node-name>: ",
            ),
            (
                "controller:z1-a s3cret-token-0123456789",
                "line 1: unknown role",
            ),
            ("node: s3cret-token-0123456789", "must not be empty"),
            ("node:a/b s3cret-token-0123456789", "contains '/'"),
            ("node short", "line 1: token shorter than 16"),
            (
                "node s3cret-token-0123456789 extra",
                "line 1: expected `ROLE TOKEN`",
            ),
            (
                "node s3cret-token-0123456789\n\nnode:z1-a s3cret-token-0123456789",
                "line 3: the same token as line 1",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains(secret), "{text:?} printed its token: {e}");
        }
    }
}
