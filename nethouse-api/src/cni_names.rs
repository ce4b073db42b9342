//! The CNI specification's rules for container IDs and interface names, shared by the plugin
//! (which checks its environment) and NetHouse (which checks its API input).

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, at most 256 characters.
pub fn valid_container_id(id: &str) -> bool {
    id.len() <= 256
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// 1-15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(valid_container_id("abc_1.2-3"));
        for bad in ["", "-x", "a/b", "a b", &"x".repeat(257)] {
            assert!(!valid_container_id(bad), "{bad}");
        }
        assert!(valid_ifname("eth0"));
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "0123456789abcdef"] {
            assert!(!valid_ifname(bad), "{bad}");
        }
    }
}
