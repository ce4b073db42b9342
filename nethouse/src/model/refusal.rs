//! Validation of a CNI plugin's report of an ADD it refused (`POST /v1/refusals`): the same
//! rules as an allocation's zone, owner and attachment, so a report names its pod and node as
//! precisely as a lease would.

use nethouse_api::RefusalReport;

use super::lease::{validate_attachment, validate_owner};
use super::{FieldError, validate_name};

pub fn validate_refusal(report: &RefusalReport) -> Result<(), FieldError> {
    validate_name("zone", &report.zone, 63)?;
    validate_owner("owner", &report.owner)?;
    validate_attachment(&report.attachment)
}

#[cfg(test)]
mod tests {
    use nethouse_api::{Attachment, Owner, RefusalReason};

    use super::*;

    fn report() -> RefusalReport {
        RefusalReport {
            reason: RefusalReason::PodAnnotationsMissing,
            zone: "z1".into(),
            owner: Owner {
                cluster: "k".into(),
                namespace: "db".into(),
                pod: "redis-0".into(),
            },
            attachment: Attachment {
                container_id: "c1".into(),
                ifname: "eth0".into(),
                node: "n1".into(),
            },
        }
    }

    #[test]
    fn bad_reports_name_the_field() {
        assert_eq!(validate_refusal(&report()), Ok(()));
        type Spoil = fn(&mut RefusalReport);
        let cases: Vec<(&str, Spoil)> = vec![
            ("zone", |r| r.zone.clear()),
            ("owner.pod", |r| r.owner.pod = "a/b".into()),
            ("attachment.container_id", |r| {
                r.attachment.container_id = "../x".into()
            }),
            ("attachment.ifname", |r| r.attachment.ifname.clear()),
            ("attachment.node", |r| r.attachment.node.clear()),
        ];
        for (field, spoil) in cases {
            let mut r = report();
            spoil(&mut r);
            assert_eq!(
                validate_refusal(&r).map_err(|e| e.field),
                Err(field.to_string())
            );
        }
    }
}
