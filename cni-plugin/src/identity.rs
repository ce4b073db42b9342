//! Who is asking, and whether its IP must be kept: the pod identity from `CNI_ARGS`, and the
//! `nethouse.io/fixed-ip` switch from the sandbox's annotations or labels.
//!
//! Precedence: the pod annotation (`runtimeConfig["io.kubernetes.cri.pod-annotations"]`, sent
//! by containerd and CRI-O when the conflist declares the capability) decides when present;
//! otherwise a sandbox label of the same key (`args.cni.labels`). When a Kubernetes pod comes
//! with neither, nothing says whether it is fixed: kubelet always gives a pod annotations, so
//! their absence means the conflist lacks the capability, and an ordinary IP could cost a fixed
//! pod its address. That pod gets no address at all ([`Decision::Unknown`]). A call with no pod
//! identity (not from Kubernetes) is ordinary.

use std::collections::BTreeMap;

use nethouse_api::contract::{FIXED_IP_ANNOTATION, parse_fixed_ip};
use nethouse_api::{LeaseKind, Owner, RefusalReason};

use crate::conf::NetConf;
use crate::env::K8sArgs;
use crate::error::{CniError, INVALID_CONFIG, INVALID_ENV};

/// What an ADD asks NetHouse for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Lease(LeaseKind),
    /// A named pod whose fixed-ness cannot be known: refuse the ADD, for `reason`.
    Unknown {
        owner: Owner,
        reason: RefusalReason,
    },
}

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

/// Fixed (owned by the pod name, survives DEL), ephemeral (owned by the attachment), or
/// unknown (no address).
pub fn decide(conf: &NetConf, owner: Option<&Owner>) -> Result<Decision, CniError> {
    if conf.annotations.is_none() && conf.labels.is_none() {
        return Ok(match owner {
            Some(o) => Decision::Unknown {
                owner: o.clone(),
                reason: RefusalReason::PodAnnotationsMissing,
            },
            None => Decision::Lease(LeaseKind::Ephemeral),
        });
    }
    let fixed = match flag("pod annotation", &conf.annotations)? {
        Some(v) => v,
        None => flag("sandbox label", &conf.labels)?.unwrap_or(false),
    };
    if !fixed {
        return Ok(Decision::Lease(LeaseKind::Ephemeral));
    }
    if owner.is_none() {
        return Err(CniError::new(
            INVALID_ENV,
            format!(
                "{FIXED_IP_ANNOTATION} is true but CNI_ARGS lacks K8S_POD_NAMESPACE and K8S_POD_NAME"
            ),
        ));
    }
    Ok(Decision::Lease(LeaseKind::Fixed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source of the switch: absent (`None`), sent without the key (`Some(None)`), or sent
    /// with this value.
    type Source<'a> = Option<Option<&'a str>>;

    fn conf(annotations: Source, labels: Source) -> NetConf {
        let mut text = String::from(
            r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"nethouse-cni","servers":["http://h:1"],"zone":"z"}"#,
        );
        if let Some(a) = annotations {
            // kubelet always sends some annotations of its own.
            let mut map = String::from(r#""kubernetes.io/config.source":"api""#);
            if let Some(v) = a {
                map.push_str(&format!(r#","nethouse.io/fixed-ip":"{v}""#));
            }
            text.push_str(&format!(
                r#","runtimeConfig":{{"io.kubernetes.cri.pod-annotations":{{{map}}}}}"#
            ));
        }
        if let Some(l) = labels {
            let mut list = String::from(r#"{"key":"app","value":"redis"}"#);
            if let Some(v) = l {
                list.push_str(&format!(
                    r#",{{"key":"nethouse.io/fixed-ip","value":"{v}"}}"#
                ));
            }
            text.push_str(&format!(r#","args":{{"cni":{{"labels":[{list}]}}}}"#));
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
    fn decision_table() {
        let o = owner(&pod(), "k");
        let unknown = Decision::Unknown {
            owner: o.clone().unwrap(),
            reason: RefusalReason::PodAnnotationsMissing,
        };
        let fixed = Decision::Lease(LeaseKind::Fixed);
        let ordinary = Decision::Lease(LeaseKind::Ephemeral);
        #[rustfmt::skip]
        let cases: Vec<(Source, Source, Option<&Owner>, Decision)> = vec![
            // Neither source: a Kubernetes pod gets no address; a call without a pod is ordinary.
            (None, None, o.as_ref(), unknown),
            (None, None, None, ordinary.clone()),
            // The annotation decides when present.
            (Some(Some("true")), None, o.as_ref(), fixed.clone()),
            (Some(Some("TRUE")), None, o.as_ref(), fixed.clone()),
            (Some(Some("false")), Some(Some("true")), o.as_ref(), ordinary.clone()),
            (Some(Some("true")), Some(Some("false")), o.as_ref(), fixed.clone()),
            (Some(Some("false")), None, None, ordinary.clone()),
            // Annotations without the key: the pod did not ask, unless a label does.
            (Some(None), None, o.as_ref(), ordinary.clone()),
            (Some(None), None, None, ordinary.clone()),
            (Some(None), Some(Some("true")), o.as_ref(), fixed.clone()),
            // No annotations: the sandbox label decides.
            (None, Some(Some("true")), o.as_ref(), fixed.clone()),
            (None, Some(Some("false")), o.as_ref(), ordinary.clone()),
            (None, Some(None), o.as_ref(), ordinary.clone()),
        ];
        for (a, l, who, want) in cases {
            assert_eq!(
                decide(&conf(a, l), who).unwrap(),
                want,
                "annotations {a:?}, labels {l:?}, owner {who:?}"
            );
        }
    }

    #[test]
    fn fixed_needs_a_pod_identity_and_a_boolean() {
        let o = owner(&pod(), "k");
        let e = decide(&conf(Some(Some("true")), None), None).unwrap_err();
        assert_eq!(e.code, INVALID_ENV);
        let e = decide(&conf(None, Some(Some("true"))), None).unwrap_err();
        assert_eq!(e.code, INVALID_ENV);
        let e = decide(&conf(Some(Some("yes")), None), o.as_ref()).unwrap_err();
        assert_eq!(e.code, INVALID_CONFIG);
        assert_eq!(
            e.msg,
            r#"pod annotation nethouse.io/fixed-ip="yes": expected "true" or "false""#
        );
        let e = decide(&conf(None, Some(Some(" On "))), o.as_ref()).unwrap_err();
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
