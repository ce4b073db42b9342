//! `nethouse-scheduler-extender`: run next to kube-scheduler (see manifests/scheduler/).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "kube-scheduler extender: fixed pods land in the zone where their IP lives")]
struct Args {
    #[arg(long, env = "EXTENDER_LISTEN", default_value = "127.0.0.1:8888")]
    listen: SocketAddr,
    /// Kubeconfig; in a pod, the service account is used.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// NetHouse URL(s), for zone capacity.
    #[arg(
        long = "nethouse",
        env = "NETHOUSE_SERVER",
        required = true,
        value_delimiter = ','
    )]
    nethouse: Vec<String>,
    #[arg(long, env = "NETHOUSE_TOKEN_FILE")]
    nethouse_token_file: Option<PathBuf>,
    /// PEM CA bundle trusted for an `https` NetHouse (default: the platform's roots).
    #[arg(long, env = "NETHOUSE_CA_FILE")]
    nethouse_ca_file: Option<PathBuf>,
    /// Cluster name, part of a fixed lease's owner (as in nethouse-cni's config).
    #[arg(long, default_value = "default")]
    cluster: String,
    /// PEM certificate chain; with --tls-key serves HTTPS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How often zone capacity is read from NetHouse, in seconds.
    #[arg(long, default_value_t = 5)]
    zones_refresh_seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    let client = kube::Client::try_from(config)?;
    let nh = nethouse_api::ClientConfig::with_token_file(
        args.nethouse.clone(),
        args.nethouse_token_file.as_deref(),
    )?
    .with_ca_file(args.nethouse_ca_file.as_deref())?;
    let nethouse = nethouse_api::Client::new(nh)?;
    let _running = nethouse_scheduler_extender::start(
        client,
        nethouse,
        nethouse_scheduler_extender::Options {
            listen: args.listen,
            cluster: args.cluster,
            zones_refresh: Duration::from_secs(args.zones_refresh_seconds),
            tls: args.tls_cert.clone().zip(args.tls_key.clone()),
        },
    )
    .await?;
    tokio::signal::ctrl_c().await?;
    Ok(())
}
