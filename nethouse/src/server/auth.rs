//! Bearer-token authentication with two roles. `node` is what a CNI plugin on a node needs
//! (allocate, detach, gc, read); `controller` what the location controller and operators need
//! (release, subnet admin, read).

use std::path::Path;

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

#[derive(Clone, Debug)]
pub enum Auth {
    /// `--insecure-no-auth`: every request is allowed.
    Disabled,
    Tokens(Vec<(String, Role)>),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// 401: no or unknown token.
    Unauthenticated(&'static str),
    /// 403: valid token, wrong role.
    Forbidden { role: Role, needs: &'static str },
}

impl Auth {
    /// Reads `ROLE TOKEN` lines (`#` starts a comment).
    pub fn from_file(path: &Path) -> Result<Auth, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading auth file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("auth file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Auth, String> {
        let mut tokens = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(role), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("line {}: expected `ROLE TOKEN`", i + 1));
            };
            let role = match role {
                "node" => Role::Node,
                "controller" => Role::Controller,
                other => {
                    return Err(format!(
                        "line {}: unknown role {other:?} (node or controller)",
                        i + 1
                    ));
                }
            };
            if token.len() < 16 {
                return Err(format!("line {}: token shorter than 16 characters", i + 1));
            }
            tokens.push((token.to_string(), role));
        }
        if tokens.is_empty() {
            return Err("no token defined".into());
        }
        Ok(Auth::Tokens(tokens))
    }

    /// Decides a request from its `Authorization` header value.
    pub fn check(&self, access: Access, header: Option<&str>) -> Result<(), Denied> {
        let tokens = match (self, access) {
            (Auth::Disabled, _) | (_, Access::Public) => return Ok(()),
            (Auth::Tokens(t), _) => t,
        };
        let header = header.ok_or(Denied::Unauthenticated(
            "missing Authorization: Bearer token",
        ))?;
        let presented = bearer_token(header).ok_or(Denied::Unauthenticated(
            "Authorization header is not `Bearer <token>`",
        ))?;
        // Compare against every token in constant time so timing tells nothing about them.
        let mut role = None;
        for (token, r) in tokens {
            if constant_time_eq(token.as_bytes(), presented.as_bytes()) {
                role = Some(*r);
            }
        }
        let role = role.ok_or(Denied::Unauthenticated("unknown token"))?;
        match access {
            Access::Only(needed) if needed != role => Err(Denied::Forbidden {
                role,
                needs: needed.as_str(),
            }),
            _ => Ok(()),
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str =
        "# tokens\nnode nodetoken-0123456789\ncontroller ctrltoken-0123456789 # ops\n";

    #[test]
    fn roles_and_refusals() {
        let auth = Auth::parse(FILE).unwrap();
        let node = Some("Bearer nodetoken-0123456789");
        let ctrl = Some("Bearer ctrltoken-0123456789");
        assert_eq!(auth.check(Access::Public, None), Ok(()));
        assert_eq!(auth.check(Access::Read, node), Ok(()));
        assert_eq!(auth.check(Access::Read, ctrl), Ok(()));
        assert_eq!(auth.check(Access::Only(Role::Node), node), Ok(()));
        assert!(matches!(
            auth.check(Access::Only(Role::Controller), node),
            Err(Denied::Forbidden { .. })
        ));
        assert!(matches!(
            auth.check(Access::Only(Role::Node), ctrl),
            Err(Denied::Forbidden { .. })
        ));
        assert!(matches!(
            auth.check(Access::Read, None),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            auth.check(Access::Read, Some("Bearer nope")),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            auth.check(Access::Read, Some("Basic x")),
            Err(Denied::Unauthenticated(_))
        ));
        assert_eq!(
            Auth::Disabled.check(Access::Only(Role::Controller), None),
            Ok(())
        );
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        let auth = Auth::parse(FILE).unwrap();
        for header in [
            "bearer nodetoken-0123456789",
            "BEARER nodetoken-0123456789",
            "BeArEr   nodetoken-0123456789",
        ] {
            assert_eq!(auth.check(Access::Read, Some(header)), Ok(()), "{header}");
        }
        for header in [
            "Bearer",
            "Bearer ",
            "Bearernodetoken-0123456789",
            "Bearer\tnodetoken-0123456789",
            "Basic nodetoken-0123456789",
        ] {
            assert_eq!(
                auth.check(Access::Read, Some(header)),
                Err(Denied::Unauthenticated(
                    "Authorization header is not `Bearer <token>`"
                )),
                "{header:?}"
            );
        }
        assert_eq!(
            auth.check(Access::Read, Some("bearer nodetoken-0123456789x")),
            Err(Denied::Unauthenticated("unknown token"))
        );
    }

    #[test]
    fn bad_files() {
        assert!(Auth::parse("").is_err());
        assert!(
            Auth::parse("admin sometoken-0123456789")
                .unwrap_err()
                .contains("unknown role")
        );
        assert!(Auth::parse("node short").unwrap_err().contains("shorter"));
        assert!(Auth::parse("node a b").unwrap_err().contains("line 1"));
    }
}
