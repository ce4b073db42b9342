//! The names other parts rely on (DESIGN.md "Contracts"): users put them on their objects, the
//! manifests and every component read them. One definition here, ungated, so the CNI plugin
//! (which has no Kubernetes types) and the controllers agree on each name and on how the
//! fixed-ip switch is read.

/// The finalizer that keeps a Location until NetHouse confirmed the release of its IP.
pub const FINALIZER: &str = "nethouse.io/release-ip";
/// Pod annotation (or sandbox label) that asks for a fixed IP.
pub const FIXED_IP_ANNOTATION: &str = "nethouse.io/fixed-ip";
/// Node label naming the node's network zone.
pub const ZONE_LABEL: &str = "nethouse.io/network-zone";
/// The CNI capability under which containerd and CRI-O pass a pod's annotations to the plugins
/// of a conflist entry that declares it (`runtimeConfig[...]`); without it the plugin cannot see
/// `nethouse.io/fixed-ip`.
pub const POD_ANNOTATIONS_CAPABILITY: &str = "io.kubernetes.cri.pod-annotations";
/// StatefulSet annotation: how long the IPs of pods it no longer wants are kept (e.g. `72h`,
/// `0s` = release at once). On a Location it overrides its StatefulSet's value for that one
/// Location, e.g. to empty the recycle bin early.
pub const RETENTION_ANNOTATION: &str = "nethouse.io/ip-retention";

/// A fixed-ip value that is neither true nor false.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{FIXED_IP_ANNOTATION}={0:?}: expected \"true\" or \"false\"")]
pub struct InvalidFixedIp(pub String);

/// Reads the fixed-ip switch: `true`/`false` in any case, surrounding blanks ignored, empty is
/// false. Anything else is an error: the CNI plugin refuses it (a typo must not silently cost
/// a pod its IP), and the scheduler side treats such a pod as not fixed, which is what the
/// plugin's refusal leaves it.
pub fn parse_fixed_ip(value: &str) -> Result<bool, InvalidFixedIp> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if v.is_empty() || v.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(InvalidFixedIp(v.to_string()))
    }
}

/// Whether an annotation value (absent: `None`) asks for a fixed IP.
pub fn is_fixed(value: Option<&str>) -> bool {
    value.is_some_and(|v| parse_fixed_ip(v) == Ok(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_ip_switch() {
        for (v, want) in [
            ("true", Ok(true)),
            (" TRUE ", Ok(true)),
            ("True", Ok(true)),
            ("false", Ok(false)),
            ("", Ok(false)),
            ("  ", Ok(false)),
            ("yes", Err(InvalidFixedIp("yes".into()))),
            ("1", Err(InvalidFixedIp("1".into()))),
        ] {
            assert_eq!(parse_fixed_ip(v), want, "{v:?}");
        }
        assert!(is_fixed(Some("true")));
        assert!(!is_fixed(Some("yes")));
        assert!(!is_fixed(None));
        assert_eq!(
            InvalidFixedIp("yes".into()).to_string(),
            r#"nethouse.io/fixed-ip="yes": expected "true" or "false""#
        );
    }
}
