//! Validated domain types. Everything that enters NetHouse (HTTP bodies, CLI flags, stored
//! records) is turned into these once, at the edge; nothing raw travels inward.

pub mod cidr;
pub mod lease;
pub mod netconf;
pub mod refusal;
pub mod subnet;

/// A validation failure that names the offending field, so every boundary can say exactly
/// what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Names of zones, subnets, clusters, namespaces and pods: DNS-label-like, so they are safe in
/// store keys (which use `/` as separator) and as a URL path segment (`/v1/subnets/{name}`,
/// `/v1/leases/by-owner/...`).
pub fn validate_name(field: &str, value: &str, max_len: usize) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    // URL clients resolve "." and ".." away (RFC 3986 5.2.4), even percent-encoded: such a
    // name could be created but never addressed again, e.g. by `nethouse subnet rm`.
    if value == "." || value == ".." {
        return Err(FieldError::new(
            field,
            format!("{value:?} cannot be a name: it is not usable as a URL path segment"),
        ));
    }
    if value.len() > max_len {
        return Err(FieldError::new(
            field,
            format!("must be at most {max_len} characters, got {}", value.len()),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(FieldError::new(
            field,
            format!("{value:?} contains {c:?}; allowed are letters, digits, '-', '_', '.', ':'"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("zone", "zone-a", 63).is_ok());
        assert!(validate_name("subnet", "fd00::-64", 63).is_ok());
        let e = validate_name("zone", "", 63).unwrap_err();
        assert_eq!(e.field, "zone");
        let e = validate_name("namespace", "a/b", 63).unwrap_err();
        assert!(e.message.contains("'/'"), "{e}");
        assert!(validate_name("pod", &"x".repeat(300), 253).is_err());
        for dots in [".", ".."] {
            let e = validate_name("name", dots, 63).unwrap_err();
            assert!(e.message.contains("URL path segment"), "{e}");
        }
        assert!(validate_name("name", "...", 63).is_ok());
        assert!(validate_name("name", "10.9.0.0-24", 63).is_ok());
    }
}
