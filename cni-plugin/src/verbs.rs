//! One function per CNI verb. Each gets the validated invocation and config and talks to
//! NetHouse only through the shared client.

use nethouse_api::{
    AllocateRequest, Attachment, AttachmentRef, BlockingClient, ClientConfig, DetachRequest,
    GcRequest, Setting, codes,
};
use serde_json::{Value, json};

use crate::conf::{NetConf, SUPPORTED_VERSIONS};
use crate::env::Invocation;
use crate::error::{
    CniError, INVALID_CONFIG, IO_FAILURE, LEASE_MISMATCH, NOT_AVAILABLE, REJECTED, from_client,
};
use crate::identity::{self, Decision};
use crate::refusal;

/// This node's name: the config's `node`, else the host name.
pub fn node_name(conf: &NetConf) -> Result<String, CniError> {
    if let Some(n) = &conf.ipam.node {
        return Ok(n.clone());
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            CniError::new(
                INVALID_CONFIG,
                "ipam.node: not set and the host name is unknown",
            )
        })
}

/// The client every request of this call goes through; none outlives `deadline`.
pub fn client(conf: &NetConf, deadline: std::time::Instant) -> Result<BlockingClient, CniError> {
    let mut cfg = ClientConfig::new(String::new());
    cfg.urls = conf.ipam.servers.clone();
    // Validated with the config: every value is an address.
    cfg.hosts = conf
        .ipam
        .hosts
        .iter()
        .filter_map(|(name, ip)| Some((name.clone(), ip.parse().ok()?)))
        .collect();
    cfg.timeout = conf.ipam.request_timeout();
    cfg.connect_timeout = conf
        .ipam
        .request_timeout()
        .min(std::time::Duration::from_secs(2));
    if let Some(path) = &conf.ipam.token_file {
        let token = std::fs::read_to_string(path).map_err(|e| {
            CniError::new(
                IO_FAILURE,
                format!("ipam.tokenFile {}: {e}", path.display()),
            )
        })?;
        cfg.token = Some(token.trim().to_string());
    }
    if let Some(path) = &conf.ipam.ca_file {
        cfg.ca_pem = Some(std::fs::read(path).map_err(|e| {
            CniError::new(IO_FAILURE, format!("ipam.caFile {}: {e}", path.display()))
        })?);
    }
    BlockingClient::new(cfg)
        .map(|c| c.with_deadline(deadline))
        .map_err(|e| {
            // Name the key the operator has to fix.
            let key = match e.setting() {
                Some(Setting::CaBundle) => "ipam.caFile",
                Some(Setting::Token) => "ipam.tokenFile",
                Some(Setting::Servers) => "ipam.servers",
                _ => "ipam",
            };
            CniError::new(INVALID_CONFIG, format!("{key}: {e}"))
        })
}

pub fn add(inv: &Invocation, conf: &NetConf, client: &BlockingClient) -> Result<Value, CniError> {
    let owner = identity::owner(&inv.args, conf.ipam.cluster());
    let kind = match identity::decide(conf, owner.as_ref())? {
        Decision::Lease(kind) => kind,
        Decision::Unknown { owner, reason } => {
            return Err(refusal::refuse(inv, conf, client, owner, reason));
        }
    };
    let req = AllocateRequest {
        zone: conf.ipam.zone.clone(),
        kind,
        owner,
        attachment: Attachment {
            container_id: inv.container_id.clone(),
            ifname: inv.ifname.clone(),
            node: node_name(conf)?,
        },
    };
    let resp = client.allocate(&req).map_err(|e| from_client("ADD", &e))?;
    Ok(crate::result::render(&conf.cni_version, &resp))
}

/// Idempotent: a lease that is gone, or that a newer sandbox of the pod owns, is success.
/// Works without a netns. NetHouse unreachable is error 11, never a silent leak.
pub fn del(inv: &Invocation, conf: &NetConf, client: &BlockingClient) -> Result<(), CniError> {
    let req = DetachRequest {
        container_id: inv.container_id.clone(),
        ifname: inv.ifname.clone(),
        owner: identity::owner(&inv.args, conf.ipam.cluster()),
    };
    client.detach(&req).map_err(|e| from_client("DEL", &e))?;
    Ok(())
}

/// NetHouse must still hold this attachment with every address of `prevResult`.
pub fn check(inv: &Invocation, conf: &NetConf, client: &BlockingClient) -> Result<(), CniError> {
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            INVALID_CONFIG,
            "prevResult: missing (CHECK needs the ADD result)",
        )
    })?;
    let addresses = crate::result::prev_addresses(prev);
    if addresses.is_empty() {
        return Err(CniError::new(
            INVALID_CONFIG,
            "prevResult.ips: no address to check",
        ));
    }
    for address in addresses {
        let ip: std::net::IpAddr = address
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|_| {
                CniError::new(
                    INVALID_CONFIG,
                    format!("prevResult.ips: {address:?} is not an address"),
                )
            })?;
        let lease = match client.lease_by_ip(ip) {
            Ok(l) => l,
            Err(e) if e.api_code() == Some(codes::NOT_FOUND) => {
                return Err(CniError::new(
                    LEASE_MISMATCH,
                    format!("NetHouse holds no lease for {ip}"),
                ));
            }
            Err(e) => return Err(from_client("CHECK", &e)),
        };
        let here = lease
            .attachment
            .as_ref()
            .is_some_and(|a| a.container_id == inv.container_id && a.ifname == inv.ifname);
        if !here {
            return Err(CniError::new(
                LEASE_MISMATCH,
                format!(
                    "{ip} is no longer leased to container {} {}",
                    inv.container_id, inv.ifname
                ),
            )
            .details(format!("{:?}", lease.attachment)));
        }
    }
    Ok(())
}

/// 0 when NetHouse answers `/readyz`, error 50 otherwise.
pub fn status(conf: &NetConf, client: &BlockingClient) -> Result<(), CniError> {
    let _ = conf;
    client.ready().map_err(|e| {
        CniError::new(NOT_AVAILABLE, "NetHouse is not available").details(e.to_string())
    })
}

/// Sends this node's valid attachments; NetHouse detaches fixed leases (never releases them)
/// and releases ephemeral ones that are not in the list.
///
/// Without a list (e.g. `cnitool gc`) nothing is done: an empty or absent list would read as
/// "no attachment on this node is valid" and drop every lease of the node.
pub fn gc(conf: &NetConf, client: &BlockingClient) -> Result<Value, CniError> {
    let Some(valid) = &conf.valid_attachments else {
        return Ok(json!({"skipped": "no cni.dev/valid-attachments in the request"}));
    };
    let req = GcRequest {
        node: node_name(conf)?,
        valid_attachments: valid
            .iter()
            .map(|a| AttachmentRef {
                container_id: a.container_id.clone(),
                ifname: a.ifname.clone(),
            })
            .collect(),
    };
    let out = client.gc(&req).map_err(|e| from_client("GC", &e))?;
    if !out.errors.is_empty() {
        return Err(CniError::new(
            REJECTED,
            format!("GC: {} lease(s) could not be cleaned", out.errors.len()),
        )
        .details(out.errors.join("; ")));
    }
    Ok(json!({"detached": out.detached, "released": out.released}))
}

pub fn version(requested: Option<&str>) -> Value {
    let v = requested
        .filter(|v| SUPPORTED_VERSIONS.contains(v))
        .unwrap_or(SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1]);
    json!({"cniVersion": v, "supportedVersions": SUPPORTED_VERSIONS})
}
