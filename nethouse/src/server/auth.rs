//! Bearer-token authentication with two roles. `node` is what a CNI plugin on a node needs
//! (allocate, detach, gc, read); `controller` what the location controller and operators need
//! (release, subnet admin, read).
//!
//! A `node` credential is bound to one node — a `node:<node-name> TOKEN` line of the auth file,
//! or (`--node-token-review`) a ServiceAccount token the Kubernetes API ties to the node its pod
//! runs on ([`review`]) — or unbound: the old shared `node TOKEN`, which acts for every node.
//! A bound caller may change only its own node's attachments ([`scope`]), as NodeRestriction
//! holds a kubelet to its node: one node's credential cannot free another node's addresses.

mod file;
pub mod kube_review;
mod review;
mod review_cache;
pub mod scope;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use prometheus_client::registry::Registry;

use file::Entry;
pub use review::{NodeReview, ReviewDenied, Reviewer, ServiceAccount};
pub use scope::Scope;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Node,
    Controller,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Controller => "controller",
        }
    }
}

/// What a route requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token needed (health and metrics).
    Public,
    /// Any valid token.
    Read,
    Only(Role),
}

#[derive(Clone)]
pub enum Auth {
    /// `--insecure-no-auth`: every request is allowed.
    Disabled,
    Tokens(Tokens),
}

/// The auth file's tokens and, with `--node-token-review`, the reviewer of the others.
#[derive(Clone)]
pub struct Tokens {
    entries: Vec<Entry>,
    review: Option<Arc<NodeReview>>,
}

/// Counts only: `ServerOptions` is Debug, and a token must never reach a log.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Disabled => f.write_str("Auth::Disabled"),
            Auth::Tokens(t) => f
                .debug_struct("Auth::Tokens")
                .field("tokens", &t.entries.len())
                .field("node_token_review", &t.review.is_some())
                .finish(),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// 401: no or unknown token, or one the Kubernetes API did not vouch for.
    Unauthenticated(Cow<'static, str>),
    /// 403: valid token, wrong role.
    Forbidden { role: Role, needs: &'static str },
    /// 503: the Kubernetes API could not review the token now; the caller retries.
    Unavailable(String),
}

impl From<ReviewDenied> for Denied {
    fn from(d: ReviewDenied) -> Self {
        match d {
            ReviewDenied::Refused(why) => Denied::Unauthenticated(why.into()),
            ReviewDenied::Unavailable(why) => Denied::Unavailable(why),
        }
    }
}

impl Auth {
    /// Reads `ROLE TOKEN` lines (`#` starts a comment); roles `node`, `node:<node-name>`,
    /// `controller`.
    pub fn from_file(path: &Path) -> Result<Auth, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading auth file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("auth file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Auth, String> {
        Ok(Auth::Tokens(Tokens {
            entries: file::parse(text)?,
            review: None,
        }))
    }

    /// Also accepts, for the `node` role, tokens the auth file does not hold when `review` says
    /// which node they belong to.
    pub fn with_node_review(self, review: NodeReview) -> Result<Auth, String> {
        match self {
            Auth::Disabled => Err("--node-token-review needs an auth file".into()),
            Auth::Tokens(t) => Ok(Auth::Tokens(Tokens {
                review: Some(Arc::new(review)),
                ..t
            })),
        }
    }

    /// `node` tokens of the auth file that may act for every node (logged at start).
    pub fn unbound_node_tokens(&self) -> usize {
        match self {
            Auth::Disabled => 0,
            Auth::Tokens(t) => t
                .entries
                .iter()
                .filter(|e| e.role == Role::Node && e.node.is_none())
                .count(),
        }
    }

    /// The token reviews' metrics, when tokens are reviewed.
    pub fn register_metrics(&self, registry: &mut Registry) {
        if let Auth::Tokens(Tokens {
            review: Some(r), ..
        }) = self
        {
            r.register(registry);
        }
    }

    /// Decides a request from its `Authorization` header value; on success, whose attachments
    /// the caller may change.
    pub async fn check(&self, access: Access, header: Option<&str>) -> Result<Scope, Denied> {
        let tokens = match (self, access) {
            (Auth::Disabled, _) | (_, Access::Public) => return Ok(Scope::AllNodes),
            (Auth::Tokens(t), _) => t,
        };
        let header = header.ok_or(Denied::Unauthenticated(
            "missing Authorization: Bearer token".into(),
        ))?;
        let presented = bearer_token(header).ok_or(Denied::Unauthenticated(
            "Authorization header is not `Bearer <token>`".into(),
        ))?;
        let (role, scope) = match file::lookup(&tokens.entries, presented) {
            Some(e) => (e.role, e.scope()),
            None => match &tokens.review {
                Some(review) => (Role::Node, Scope::Node(review.node_of(presented).await?)),
                None => return Err(Denied::Unauthenticated("unknown token".into())),
            },
        };
        match access {
            Access::Only(needed) if needed != role => Err(Denied::Forbidden {
                role,
                needs: needed.as_str(),
            }),
            _ => Ok(scope),
        }
    }
}

/// The token of a `Bearer` credential. The scheme is case-insensitive (RFC 7235 2.1: `bearer`
/// and `BEARER` are `Bearer`) and separated from the token by one or more spaces.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# tokens\nnode nodetoken-0123456789\ncontroller ctrltoken-0123456789 # ops\n\
         node:n1 n1-token-0123456789\n";

    fn check(auth: &Auth, access: Access, header: Option<&str>) -> Result<Scope, Denied> {
        block_on(auth.check(access, header))
    }

    /// The checks without a reviewer never wait; a current-thread runtime is enough.
    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    #[test]
    fn roles_and_refusals() {
        let auth = Auth::parse(FILE).unwrap();
        let node = Some("Bearer nodetoken-0123456789");
        let ctrl = Some("Bearer ctrltoken-0123456789");
        let n1 = Some("Bearer n1-token-0123456789");
        assert_eq!(check(&auth, Access::Public, None), Ok(Scope::AllNodes));
        assert_eq!(check(&auth, Access::Read, node), Ok(Scope::AllNodes));
        assert_eq!(check(&auth, Access::Read, ctrl), Ok(Scope::AllNodes));
        assert_eq!(
            check(&auth, Access::Only(Role::Node), node),
            Ok(Scope::AllNodes)
        );
        assert_eq!(
            check(&auth, Access::Only(Role::Node), n1),
            Ok(Scope::Node("n1".into()))
        );
        assert_eq!(check(&auth, Access::Read, n1), Ok(Scope::Node("n1".into())));
        for (access, header) in [
            (Access::Only(Role::Controller), node),
            (Access::Only(Role::Controller), n1),
            (Access::Only(Role::Node), ctrl),
        ] {
            assert!(
                matches!(check(&auth, access, header), Err(Denied::Forbidden { .. })),
                "{access:?} {header:?}"
            );
        }
        for header in [None, Some("Bearer nope"), Some("Basic x")] {
            assert!(
                matches!(
                    check(&auth, Access::Read, header),
                    Err(Denied::Unauthenticated(_))
                ),
                "{header:?}"
            );
        }
        assert_eq!(
            check(&Auth::Disabled, Access::Only(Role::Controller), None),
            Ok(Scope::AllNodes)
        );
        assert_eq!(auth.unbound_node_tokens(), 1);
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        let auth = Auth::parse(FILE).unwrap();
        for header in [
            "bearer nodetoken-0123456789",
            "BEARER nodetoken-0123456789",
            "BeArEr   nodetoken-0123456789",
        ] {
            assert_eq!(
                check(&auth, Access::Read, Some(header)),
                Ok(Scope::AllNodes),
                "{header}"
            );
        }
        for header in [
            "Bearer",
            "Bearer ",
            "Bearernodetoken-0123456789",
            "Bearer\tnodetoken-0123456789",
            "Basic nodetoken-0123456789",
        ] {
            assert_eq!(
                check(&auth, Access::Read, Some(header)),
                Err(Denied::Unauthenticated(
                    "Authorization header is not `Bearer <token>`".into()
                )),
                "{header:?}"
            );
        }
        assert_eq!(
            check(&auth, Access::Read, Some("bearer nodetoken-0123456789x")),
            Err(Denied::Unauthenticated("unknown token".into()))
        );
    }

    #[test]
    fn debug_shows_no_token() {
        let auth = Auth::parse(FILE).unwrap();
        let shown = format!("{auth:?}");
        assert!(!shown.contains("0123456789"), "{shown}");
        assert!(shown.contains("tokens: 3"), "{shown}");
    }
}
