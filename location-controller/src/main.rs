//! `nethouse-location-controller`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use clap::Parser;
use nethouse_api::duration::parse_duration;
use nethouse_location_controller::leader::{self, LeaderOptions};
use nethouse_location_controller::{Context, Options};

#[derive(Parser, Debug)]
#[command(
    about = "Releases fixed pod IPs through NetHouse when their Locations are deleted and the pods are gone; keeps them for a StatefulSet's retention period"
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
    /// PEM CA bundle trusted for an `https` NetHouse (default: the platform's roots).
    #[arg(long, env = "NETHOUSE_CA_FILE")]
    nethouse_ca_file: Option<PathBuf>,
    /// Cluster name, part of a fixed lease's owner (as in nethouse-cni's config).
    #[arg(long, default_value = "default")]
    cluster: String,
    /// Retention of StatefulSets without `nethouse.io/ip-retention` (e.g. 72h, 30m, 0s).
    #[arg(long, default_value = "72h", value_parser = parse_duration)]
    default_retention: Duration,
    /// A fixed lease with neither Location nor pod is released after this long.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    orphan_grace: Duration,
    /// Period of the reconciliation with NetHouse.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    sweep_interval: Duration,
    /// Run only while holding the leader Lease (off: always active; run one replica only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    #[arg(long, env = "POD_NAMESPACE", default_value = "nethouse-system")]
    leader_lease_namespace: String,
    #[arg(long, default_value = "nethouse-location-controller")]
    leader_lease_name: String,
    /// This replica's identity (defaults to the pod name, then the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_lease_duration: Duration,
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    leader_renew_before: Duration,
    /// /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    health_listen: SocketAddr,
}

async fn metrics(State(ctx): State<Arc<Context>>) -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ctx.metrics.encode(),
    )
}

fn identity(args: &Args) -> String {
    args.identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
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
    let leader_opts = LeaderOptions {
        namespace: args.leader_lease_namespace.clone(),
        lease_name: args.leader_lease_name.clone(),
        identity: identity(&args),
        duration: args.leader_lease_duration,
        renew_before: args.leader_renew_before,
    };
    if args.leader_elect {
        leader_opts.validate().map_err(anyhow::Error::msg)?;
    }
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
    )?
    .with_ca_file(args.nethouse_ca_file.as_deref())?;
    let ctx = Context::new(
        client,
        nethouse_api::Client::new(nh)?,
        Options {
            cluster: args.cluster.clone(),
            default_retention: args.default_retention,
            orphan_grace: args.orphan_grace,
            sweep_every: args.sweep_interval,
            instance: Some(leader_opts.identity.clone()),
        },
    );
    // A standby is healthy and ready: readiness means "can take over", and the Service in
    // front (metrics) should reach every replica.
    let health = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(|| async { "ready" }))
        .route("/metrics", axum::routing::get(metrics))
        .with_state(ctx.clone());
    let listener = tokio::net::TcpListener::bind(args.health_listen).await?;
    let serve = axum::serve(listener, health);
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| tracing::warn!(error = %e, "no SIGTERM handler"))
            .ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("shutting down");
    };
    if args.leader_elect {
        tokio::select! {
            r = serve => r?,
            r = leader::run(ctx, leader_opts, shutdown) => r?,
        }
    } else {
        ctx.metrics.leader.set(1);
        let task = nethouse_location_controller::start(ctx);
        tokio::select! {
            r = serve => r?,
            _ = shutdown => {}
            _ = task => anyhow::bail!("controller stopped"),
        }
    }
    Ok(())
}
