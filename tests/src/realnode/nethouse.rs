//! NetHouse for real nodes: in this process, listening on the fabric's address (the calling
//! thread must be in the fabric), one subnet per zone with the zone's gateway, a default route
//! through it, and the gateway and node addresses excluded.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use nethouse::server::running::{Running, ServerOptions, start};
use nethouse_api::{Client, ClientConfig, Route, SubnetSpec};

use super::fabric::Fabric;

pub async fn start_in_fabric(
    fabric: &Fabric,
    data_dir: &Path,
    cooldown: Duration,
) -> anyhow::Result<(Running, Client)> {
    let mut opts = ServerOptions::local(data_dir);
    opts.listen = SocketAddr::from((fabric.address, 0));
    opts.default_cooldown = cooldown;
    let running = start(opts)
        .await
        .context("starting NetHouse in the fabric")?;
    let client = Client::new(ClientConfig::new(running.url()))?;
    for zone in &fabric.zones {
        let spec = SubnetSpec {
            zone: zone.name.clone(),
            cidr: zone.cidr(),
            gateway: Some(zone.gateway().to_string()),
            exclude: vec![zone.reserved()],
            routes: vec![Route {
                dst: "0.0.0.0/0".into(),
                gw: Some(zone.gateway().to_string()),
            }],
            ..Default::default()
        };
        client
            .add_subnet(&spec)
            .await
            .with_context(|| format!("adding subnet {} of zone {}", spec.cidr, spec.zone))?;
    }
    Ok((running, client))
}
