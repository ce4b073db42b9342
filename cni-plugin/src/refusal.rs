//! An ADD refused without an address ([`identity::Decision::Unknown`]): NetHouse is told, so
//! that it counts the refusal where every node's are seen together, and the runtime gets CNI
//! error 7 naming the fix. Whether NetHouse could be told changes the error's details, never
//! its outcome: the pod gets no address either way.
//!
//! [`identity::Decision::Unknown`]: crate::identity::Decision::Unknown

use nethouse_api::contract::FIXED_IP_ANNOTATION;
use nethouse_api::{Attachment, BlockingClient, Owner, RefusalReason, RefusalReport};

use crate::conf::NetConf;
use crate::env::Invocation;
use crate::error::{CniError, INVALID_CONFIG};
use crate::verbs::node_name;

/// What the runtime shows the user (a pod event, `FailedCreatePodSandBox`): what is wrong and
/// what to change.
pub fn message(reason: RefusalReason) -> String {
    match reason {
        RefusalReason::PodAnnotationsMissing => format!(
            "no pod annotations reached nethouse-cni, so it cannot tell whether the pod asks for a fixed IP ({FIXED_IP_ANNOTATION}) and gives it no address: {}",
            reason.fix()
        ),
    }
}

/// Reports the refusal to NetHouse and returns the error for the runtime.
pub fn refuse(
    inv: &Invocation,
    conf: &NetConf,
    client: &BlockingClient,
    owner: Owner,
    reason: RefusalReason,
) -> CniError {
    let told = node_name(conf).map_err(|e| e.msg).and_then(|node| {
        let report = RefusalReport {
            reason,
            zone: conf.ipam.zone.clone(),
            owner,
            attachment: Attachment {
                container_id: inv.container_id.clone(),
                ifname: inv.ifname.clone(),
                node,
            },
        };
        client.report_refusal(&report).map_err(|e| e.to_string())
    });
    let details = match told {
        Ok(_) => format!(
            "NetHouse counted it in nethouse_cni_refused_total{{reason=\"{}\"}}",
            reason.as_str()
        ),
        Err(why) => format!("NetHouse could not count it: {why}"),
    };
    CniError::new(INVALID_CONFIG, message(reason)).details(details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_switch_and_the_fix() {
        assert_eq!(
            message(RefusalReason::PodAnnotationsMissing),
            r#"no pod annotations reached nethouse-cni, so it cannot tell whether the pod asks for a fixed IP (nethouse.io/fixed-ip) and gives it no address: the main plugin's entry in plugins[] of the node's CNI conflist needs "capabilities": {"io.kubernetes.cri.pod-annotations": true}"#
        );
    }
}
