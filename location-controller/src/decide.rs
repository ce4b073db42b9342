//! When may a deleted Location's IP go back to the pool? Pure and table-tested: only when its
//! pod is gone, or is pending without an IP (it never got one, or lost its sandbox), or has
//! terminated. A pod that still holds the IP — running, or terminating with its sandbox still
//! up — keeps it: releasing then would hand one IP to two pods.

use k8s_openapi::api::core::v1::Pod;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    Now,
    /// The pod still holds the IP; look again when it changes.
    Wait,
}

pub fn decide(pod: Option<&Pod>) -> Release {
    let Some(pod) = pod else {
        return Release::Now;
    };
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let has_ip = status
        .map(|s| {
            s.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
                || s.pod_ips.as_ref().is_some_and(|v| !v.is_empty())
        })
        .unwrap_or(false);
    match phase {
        "Succeeded" | "Failed" => Release::Now,
        "Pending" if !has_ip => Release::Now,
        _ => Release::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodIP, PodStatus};

    fn pod(phase: &str, ip: Option<&str>) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                pod_ip: ip.map(str::to_string),
                pod_ips: ip.map(|i| vec![PodIP { ip: i.into() }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn table() {
        let cases = [
            ("pod gone", None, Release::Now),
            ("pending, no IP", Some(pod("Pending", None)), Release::Now),
            (
                "pending with IP (sandbox up, containers starting)",
                Some(pod("Pending", Some("10.0.0.2"))),
                Release::Wait,
            ),
            (
                "running",
                Some(pod("Running", Some("10.0.0.2"))),
                Release::Wait,
            ),
            (
                "running, status not yet reported",
                Some(pod("Running", None)),
                Release::Wait,
            ),
            (
                "succeeded",
                Some(pod("Succeeded", Some("10.0.0.2"))),
                Release::Now,
            ),
            ("failed", Some(pod("Failed", None)), Release::Now),
            ("no status at all", Some(Pod::default()), Release::Now),
        ];
        for (name, p, want) in cases {
            assert_eq!(decide(p.as_ref()), want, "{name}");
        }
    }
}
