//! Operator commands: each builds a request, calls the server through the shared client and
//! prints a table or JSON.

use nethouse_api::{
    Client, ClientConfig, Dns, Lease, LeaseFilter, LeaseKind, Owner, Route, SubnetSpec,
};
use serde::Serialize;

use super::error::CliError;
use super::table::{age, render};
use super::{Conn, LeaseCmd, Output, SubnetCmd, ZoneCmd};
use crate::clock::{Clock, SystemClock};

fn client(conn: &Conn) -> Result<Client, CliError> {
    let urls = conn
        .server
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let mut cfg = ClientConfig::with_token_file(urls, conn.token_file.as_deref())
        .map_err(CliError::TokenFile)?;
    if let Some(t) = &conn.token {
        cfg.token = Some(t.trim().to_string());
    }
    let cfg = cfg
        .with_ca_file(conn.ca_file.as_deref())
        .map_err(CliError::CaFile)?;
    Client::new(cfg).map_err(CliError::Server)
}

fn print<T: Serialize>(
    conn: &Conn,
    value: &T,
    table: impl FnOnce() -> String,
) -> Result<(), CliError> {
    match conn.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Table => print!("{}", table()),
    }
    Ok(())
}

fn subnet_rows(subnets: &[nethouse_api::Subnet]) -> String {
    let rows: Vec<Vec<String>> = subnets
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.zone.clone(),
                s.cidr.clone(),
                s.gateway
                    .map(|g| g.to_string())
                    .unwrap_or_else(|| "none".into()),
                s.usage.capacity.to_string(),
                s.usage.attached.to_string(),
                s.usage.retained.to_string(),
                s.usage.cooling.to_string(),
                s.usage.free.to_string(),
                format!("{}s", s.cooldown_seconds),
            ]
        })
        .collect();
    render(
        &[
            "NAME", "ZONE", "CIDR", "GATEWAY", "CAPACITY", "ATTACHED", "RETAINED", "COOLING",
            "FREE", "COOLDOWN",
        ],
        &rows,
    )
}

fn parse_route(text: &str) -> Result<Route, CliError> {
    let mut parts = text.splitn(2, ',');
    let dst = parts.next().unwrap_or_default().trim().to_string();
    if dst.is_empty() {
        return Err(CliError::Route { text: text.into() });
    }
    Ok(Route {
        dst,
        gw: parts.next().map(|g| g.trim().to_string()),
    })
}

pub async fn subnet(cmd: SubnetCmd) -> Result<(), CliError> {
    match cmd {
        SubnetCmd::Add {
            conn,
            zone,
            cidr,
            gateway,
            name,
            exclude,
            route,
            dns_server,
            dns_search,
            dns_domain,
            cooldown,
        } => {
            let spec = SubnetSpec {
                name,
                zone,
                cidr,
                gateway,
                exclude,
                routes: route
                    .iter()
                    .map(|r| parse_route(r))
                    .collect::<Result<_, _>>()?,
                dns: Dns {
                    nameservers: dns_server,
                    domain: dns_domain,
                    search: dns_search,
                    options: Vec::new(),
                },
                cooldown_seconds: cooldown.map(|d| d.as_secs()),
            };
            let s = client(&conn)?.add_subnet(&spec).await?;
            print(&conn, &s, || subnet_rows(std::slice::from_ref(&s)))
        }
        SubnetCmd::List { conn } => {
            let subnets = client(&conn)?.list_subnets().await?;
            print(&conn, &subnets, || subnet_rows(&subnets))
        }
        SubnetCmd::Rm { conn, name } => {
            let s = client(&conn)?.remove_subnet(&name).await?;
            print(&conn, &s, || format!("subnet {} removed\n", s.name))
        }
    }
}

fn lease_rows(leases: &[Lease]) -> String {
    let now = SystemClock.now_ms();
    let rows: Vec<Vec<String>> = leases
        .iter()
        .map(|l| {
            let owner = match (&l.owner, l.kind) {
                (Some(o), _) => format!("{}/{}", o.namespace, o.pod),
                (None, _) => "-".into(),
            };
            let (node, container) = match &l.attachment {
                Some(a) => (
                    a.node.clone(),
                    format!("{}/{}", short(&a.container_id), a.ifname),
                ),
                None => ("-".into(), "-".into()),
            };
            let state = match (l.kind, &l.attachment) {
                (LeaseKind::Fixed, None) => "retained",
                _ => "attached",
            };
            vec![
                l.ips
                    .iter()
                    .map(|i| i.ip.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                l.kind.as_str().into(),
                owner,
                l.zone.clone(),
                node,
                container,
                state.into(),
                age(l.created_unix_ms, now),
            ]
        })
        .collect();
    render(
        &[
            "IP",
            "KIND",
            "OWNER",
            "ZONE",
            "NODE",
            "ATTACHMENT",
            "STATE",
            "AGE",
        ],
        &rows,
    )
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// `NAMESPACE/POD` or `CLUSTER/NAMESPACE/POD`.
fn parse_owner(target: &str, cluster: &str) -> Result<Owner, CliError> {
    let parts: Vec<&str> = target.split('/').collect();
    match parts.as_slice() {
        [ns, pod] => Ok(Owner {
            cluster: cluster.into(),
            namespace: (*ns).into(),
            pod: (*pod).into(),
        }),
        [c, ns, pod] => Ok(Owner {
            cluster: (*c).into(),
            namespace: (*ns).into(),
            pod: (*pod).into(),
        }),
        _ => Err(CliError::Target {
            target: target.into(),
        }),
    }
}

pub async fn lease(cmd: LeaseCmd) -> Result<(), CliError> {
    match cmd {
        LeaseCmd::List {
            conn,
            zone,
            subnet,
            node,
            kind,
            namespace,
            cluster,
            retained,
        } => {
            let filter = LeaseFilter {
                zone,
                subnet,
                node,
                kind: kind.map(|k| {
                    if k == "fixed" {
                        LeaseKind::Fixed
                    } else {
                        LeaseKind::Ephemeral
                    }
                }),
                cluster,
                namespace,
                retained: retained.then_some(true),
                limit: Some(crate::ipam::MAX_PAGE),
                continue_from: None,
            };
            let leases = client(&conn)?.list_all_leases(&filter).await?;
            print(&conn, &leases, || lease_rows(&leases))
        }
        LeaseCmd::Show {
            conn,
            target,
            cluster,
        } => {
            let c = client(&conn)?;
            let lease = match target.parse::<std::net::IpAddr>() {
                Ok(ip) => c.lease_by_ip(ip).await?,
                Err(_) => c.lease_by_owner(&parse_owner(&target, &cluster)?).await?,
            };
            print(&conn, &lease, || lease_rows(std::slice::from_ref(&lease)))
        }
        LeaseCmd::Release {
            conn,
            target,
            cluster,
        } => {
            let owner = parse_owner(&target, &cluster)?;
            let out = client(&conn)?.release(&owner).await?;
            print(&conn, &out, || match &out.released {
                Some(l) => format!(
                    "released {} of {owner}\n",
                    l.ips
                        .iter()
                        .map(|i| i.ip.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                None => format!("{owner} held no lease\n"),
            })
        }
    }
}

pub async fn zone(cmd: ZoneCmd) -> Result<(), CliError> {
    let ZoneCmd::List { conn } = cmd;
    let zones = client(&conn)?.zones().await?;
    let opt = |v: Option<u128>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    print(&conn, &zones, || {
        let rows: Vec<Vec<String>> = zones
            .iter()
            .map(|z| {
                vec![
                    z.name.clone(),
                    z.subnets.join(","),
                    opt(z.free_v4),
                    opt(z.free_v6),
                    z.can_allocate.to_string(),
                ]
            })
            .collect();
        render(
            &["ZONE", "SUBNETS", "FREE-V4", "FREE-V6", "CAN-ALLOCATE"],
            &rows,
        )
    })
}
