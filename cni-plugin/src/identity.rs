//! Who is asking, and whether its IP must be kept: the pod identity from `CNI_ARGS`, and the
//! `nethouse.io/fixed-ip` switch from the sandbox's annotations or labels.
//!
//! Precedence: the pod annotation (`runtimeConfig["io.kubernetes.cri.pod-annotations"]`, sent
//! by containerd and CRI-O when the conflist declares the capability) decides when present;
//! otherwise a sandbox label of the same key (`args.cni.labels`); otherwise the pod is not fixed.

use std::collections::BTreeMap;

use nethouse_api::contract::{FIXED_IP_ANNOTATION, parse_fixed_ip};
use nethouse_api::{LeaseKind, Owner};

use crate::conf::NetConf;
use crate::env::K8sArgs;
use crate::error::{CniError, INVALID_CONFIG, INVALID_ENV};

/// The pod, when the runtime named it.
pub fn owner(args: &K8sArgs, cluster: &str) -> Option<Owner> {
    match (&args.namespace, &args.name) {
        (Some(ns), Some(name)) => Some(Owner {
            cluster: cluster.to_string(),
            namespace: ns.clone(),
            pod: name.clone(),
        }),
        _ => None,
    }
}

fn flag(source: &str, map: &Option<BTreeMap<String, String>>) -> Result<Option<bool>, CniError> {
    let Some(value) = map.as_ref().and_then(|m| m.get(FIXED_IP_ANNOTATION)) else {
        return Ok(None);
    };
    // The source in the message: the user fixes the annotation or the label, whichever it was.
    parse_fixed_ip(value)
        .map(Some)
        .map_err(|e| CniError::new(INVALID_CONFIG, format!("{source} {e}")))
}

/// Fixed (owned by the pod name, survives DEL) or ephemeral (owned by the attachment).
pub fn lease_kind(conf: &NetConf, owner: Option<&Owner>) -> Result<LeaseKind, CniError> {
    let fixed = match flag("pod annotation", &conf.annotations)? {
        Some(v) => v,
        None => flag("sandbox label", &conf.labels)?.unwrap_or(false),
    };
    if !fixed {
        return Ok(LeaseKind::Ephemeral);
    }
    if owner.is_none() {
        return Err(CniError::new(
            INVALID_ENV,
            format!(
                "{FIXED_IP_ANNOTATION} is true but CNI_ARGS lacks K8S_POD_NAMESPACE and K8S_POD_NAME"
            ),
        ));
    }
    Ok(LeaseKind::Fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(annotations: Option<&str>, label: Option<&str>) -> NetConf {
        let mut text = String::from(
            r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"nethouse-cni","servers":["http://h:1"],"zone":"z"}"#,
        );
        if let Some(a) = annotations {
            text.push_str(&format!(
                r#","runtimeConfig":{{"io.kubernetes.cri.pod-annotations":{{"nethouse.io/fixed-ip":"{a}"}}}}"#
            ));
        }
        if let Some(l) = label {
            text.push_str(&format!(
                r#","args":{{"cni":{{"labels":[{{"key":"nethouse.io/fixed-ip","value":"{l}"}}]}}}}"#
            ));
        }
        text.push('}');
        crate::conf::parse(text.as_bytes()).unwrap()
    }

    fn pod() -> K8sArgs {
        K8sArgs {
            namespace: Some("db".into()),
            name: Some("redis-0".into()),
            ..Default::default()
        }
    }

    #[test]
    fn precedence_table() {
        let o = owner(&pod(), "k");
        let cases = [
            (None, None, LeaseKind::Ephemeral),
            (Some("true"), None, LeaseKind::Fixed),
            (Some("false"), Some("true"), LeaseKind::Ephemeral),
            (Some("true"), Some("false"), LeaseKind::Fixed),
            (None, Some("true"), LeaseKind::Fixed),
            (Some("TRUE"), None, LeaseKind::Fixed),
        ];
        for (a, l, want) in cases {
            assert_eq!(
                lease_kind(&conf(a, l), o.as_ref()).unwrap(),
                want,
                "{a:?} {l:?}"
            );
        }
    }

    #[test]
    fn fixed_needs_a_pod_identity_and_a_boolean() {
        let e = lease_kind(&conf(Some("true"), None), None).unwrap_err();
        assert_eq!(e.code, INVALID_ENV);
        let e = lease_kind(&conf(Some("yes"), None), owner(&pod(), "k").as_ref()).unwrap_err();
        assert_eq!(e.code, INVALID_CONFIG);
        assert_eq!(
            e.msg,
            r#"pod annotation nethouse.io/fixed-ip="yes": expected "true" or "false""#
        );
        let e = lease_kind(&conf(None, Some(" On ")), owner(&pod(), "k").as_ref()).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (
                INVALID_CONFIG,
                r#"sandbox label nethouse.io/fixed-ip="On": expected "true" or "false""#
            )
        );
        assert!(owner(&K8sArgs::default(), "k").is_none());
        assert_eq!(owner(&pod(), "k").unwrap().cluster, "k");
    }
}
