//! `nethouse-scheduler-extender`: run next to kube-scheduler (see manifests/base/scheduler/).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use nethouse_runtime::args::{KubeArgs, NetHouseArgs};
use nethouse_runtime::limits::HttpLimits;
use nethouse_runtime::logs::LogArgs;
use nethouse_runtime::serve::DrainArgs;

#[derive(Parser, Debug)]
#[command(about = "kube-scheduler extender: fixed pods land in the zone where their IP lives")]
struct Args {
    #[arg(long, env = "EXTENDER_LISTEN", default_value = "127.0.0.1:8888")]
    listen: SocketAddr,
    #[command(flatten)]
    kube: KubeArgs,
    /// NetHouse is read for zone capacity.
    #[command(flatten)]
    nethouse: NetHouseArgs,
    /// PEM certificate chain; with --tls-key serves HTTPS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA bundle: only clients presenting a certificate it signed may call (the scheduler's
    /// `tlsConfig.certFile`/`keyFile`). Needs --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// How often zone capacity is read from NetHouse, in seconds.
    #[arg(long, default_value_t = 5)]
    zones_refresh_seconds: u64,
    /// The largest request body: 5,000 full Node objects (`nodeCacheCapable: false`) with margin.
    #[arg(long, default_value_t = nethouse_scheduler_extender::server::DEFAULT_MAX_BODY)]
    max_body_bytes: usize,
    /// Scheduler calls decided at once; more wait their turn (memory is about this many bodies).
    #[arg(long, default_value_t = nethouse_scheduler_extender::server::DEFAULT_MAX_CONCURRENT as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrent_requests: u32,
    #[command(flatten)]
    drain: DrainArgs,
    #[command(flatten)]
    http: HttpLimits,
    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.log.init();
    let client = args.kube.client().await?;
    let nethouse = args.nethouse.client()?;
    let running = nethouse_scheduler_extender::start(
        client,
        nethouse,
        nethouse_scheduler_extender::Options {
            listen: args.listen,
            cluster: args.nethouse.cluster.clone(),
            zones_refresh: Duration::from_secs(args.zones_refresh_seconds),
            tls: args
                .tls_cert
                .clone()
                .zip(args.tls_key.clone())
                .map(|(cert, key)| nethouse_runtime::tls::Tls {
                    cert,
                    key,
                    client_ca: args.tls_client_ca.clone(),
                }),
            http: args.http,
            max_body: args.max_body_bytes,
            max_concurrent: args.max_concurrent_requests as usize,
        },
    )
    .await?;
    let why = nethouse_runtime::shutdown::signal().await;
    tracing::info!(signal = why, "shutting down");
    running.drain(args.drain).await;
    Ok(())
}
