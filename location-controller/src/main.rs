//! `nethouse-location-controller`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    about = "Releases fixed pod IPs through NetHouse when their Locations are deleted and the pods are gone"
)]
struct Args {
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    #[arg(
        long = "nethouse",
        env = "NETHOUSE_SERVER",
        required = true,
        value_delimiter = ','
    )]
    nethouse: Vec<String>,
    /// Bearer token of the `controller` role.
    #[arg(long, env = "NETHOUSE_TOKEN_FILE")]
    nethouse_token_file: Option<PathBuf>,
    /// /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    health_listen: SocketAddr,
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
        Some(p) => {
            kube::Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::read_from(p)?,
                &Default::default(),
            )
            .await?
        }
        None => kube::Config::infer().await?,
    };
    let client = kube::Client::try_from(config)?;
    let nh = nethouse_api::ClientConfig::with_token_file(
        args.nethouse.clone(),
        args.nethouse_token_file.as_deref(),
    )?;
    let ctx = nethouse_location_controller::Context::new(client, nethouse_api::Client::new(nh)?);
    let task = nethouse_location_controller::start(ctx);
    let health = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(|| async { "ready" }));
    let listener = tokio::net::TcpListener::bind(args.health_listen).await?;
    tokio::select! {
        r = axum::serve(listener, health) => r?,
        _ = tokio::signal::ctrl_c() => {}
        _ = task => anyhow::bail!("controller stopped"),
    }
    Ok(())
}
