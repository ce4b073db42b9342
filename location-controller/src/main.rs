//! `nethouse-location-controller`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use nethouse_api::duration::parse_duration;
use nethouse_location_controller::leader::{self, LeaderOptions};
use nethouse_location_controller::{Context, Options};
use nethouse_runtime::args::{KubeArgs, NetHouseArgs};
use nethouse_runtime::logs::LogArgs;
use nethouse_runtime::serve::{DrainArgs, Draining};

#[derive(Parser, Debug)]
#[command(
    about = "Releases fixed pod IPs through NetHouse when their Locations are deleted and the pods are gone; keeps them for a StatefulSet's retention period"
)]
struct Args {
    #[command(flatten)]
    kube: KubeArgs,
    // The token must be the `controller` role's: it lists and releases fixed leases.
    #[command(flatten)]
    nethouse: NetHouseArgs,
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
    #[command(flatten)]
    drain: DrainArgs,
    #[command(flatten)]
    http: nethouse_runtime::limits::HttpLimits,
    #[command(flatten)]
    log: LogArgs,
}

impl Args {
    fn identity(&self) -> String {
        self.identity
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("pid-{}", std::process::id()))
    }

    fn leader_options(&self) -> LeaderOptions {
        LeaderOptions {
            namespace: self.leader_lease_namespace.clone(),
            lease_name: self.leader_lease_name.clone(),
            identity: self.identity(),
            duration: self.leader_lease_duration,
            renew_before: self.leader_renew_before,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.log.init();
    let leader_opts = args.leader_options();
    if args.leader_elect {
        leader_opts.validate().map_err(anyhow::Error::msg)?;
    }
    let client = args.kube.client().await?;
    let nethouse = args.nethouse.client()?;
    let ctx = Context::new(
        client,
        nethouse,
        Options {
            cluster: args.nethouse.cluster.clone(),
            default_retention: args.default_retention,
            orphan_grace: args.orphan_grace,
            sweep_every: args.sweep_interval,
            instance: Some(leader_opts.identity.clone()),
        },
    );
    let draining = Arc::new(Draining::default());
    let serving = nethouse_runtime::serve::serve(
        nethouse_location_controller::health::router(ctx.metrics.clone(), draining.clone()),
        args.health_listen,
        None,
        &nethouse_runtime::serve::Http {
            limits: args.http,
            metrics: ctx.metrics.http.clone(),
        },
    )
    .await?;
    tracing::info!(address = %serving.addr, "serving /healthz, /readyz, /metrics");

    // The controller is told to stop through this channel rather than by the signal itself, so
    // that releasing the Lease and the health server's drain run side by side.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    let elect = args.leader_elect;
    let controller = async move {
        if elect {
            leader::run(ctx, leader_opts, stopped).await
        } else {
            leader::run_unelected(ctx, stopped).await
        }
    };
    tokio::pin!(controller);
    let why = tokio::select! {
        ended = &mut controller => {
            // Only a stop asked for ends it cleanly; anything before the signal is a failure.
            ended?;
            anyhow::bail!("controller stopped");
        }
        why = nethouse_runtime::shutdown::signal() => why,
    };
    tracing::info!(signal = why, "shutting down");
    let _ = stop.send(());
    let (ended, ()) = tokio::join!(controller, serving.drain(&draining, args.drain));
    Ok(ended?)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;

    /// Parses as the binary does, but with every `env` fallback removed, so the test sees the
    /// built-in defaults whatever the environment (KUBECONFIG, POD_NAME, ...) holds.
    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        let cmd = Args::command().mut_args(|a| a.env(None));
        let matches = cmd.try_get_matches_from(std::iter::once("x").chain(argv.iter().copied()))?;
        Args::from_arg_matches(&matches)
    }

    #[test]
    fn the_command_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn flags_and_their_defaults() {
        let a = parse(&["--nethouse", "http://a:1,http://b:2"]).unwrap();
        assert_eq!(a.nethouse.nethouse, ["http://a:1", "http://b:2"]);
        assert_eq!(a.nethouse.nethouse_token_file, None);
        assert_eq!(a.nethouse.nethouse_ca_file, None);
        assert_eq!(a.nethouse.cluster, "default");
        assert_eq!(a.kube.kubeconfig, None);
        assert_eq!(a.default_retention, Duration::from_secs(72 * 3600));
        assert_eq!(a.orphan_grace, Duration::from_secs(300));
        assert_eq!(a.sweep_interval, Duration::from_secs(60));
        assert!(a.leader_elect);
        assert_eq!(a.leader_lease_namespace, "nethouse-system");
        assert_eq!(a.leader_lease_name, "nethouse-location-controller");
        assert_eq!(a.identity, None);
        assert_eq!(a.leader_lease_duration, Duration::from_secs(15));
        assert_eq!(a.leader_renew_before, Duration::from_secs(5));
        assert_eq!(a.health_listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(a.drain.shutdown_delay, Duration::from_secs(5));
        assert_eq!(a.drain.shutdown_grace, Duration::from_secs(20));
        assert_eq!(a.log.log_format, nethouse_runtime::logs::LogFormat::Text);
        assert!(a.leader_options().validate().is_ok());

        // Every flag the manifests, the e2e tests and the demo pass.
        let a = parse(&[
            "--kubeconfig=/k",
            "--nethouse=https://nethouse:7420",
            "--nethouse-token-file=/etc/nethouse/controller.token",
            "--nethouse-ca-file=/etc/nethouse/ca.crt",
            "--cluster=e2e",
            "--default-retention=0s",
            "--orphan-grace=5s",
            "--sweep-interval=2s",
            "--leader-elect=false",
            "--leader-lease-namespace=default",
            "--leader-lease-name=l",
            "--identity=ctl-a",
            "--leader-lease-duration=4s",
            "--leader-renew-before=2s",
            "--health-listen=127.0.0.1:9090",
            "--shutdown-delay=1s",
            "--shutdown-grace=3s",
            "--log-format=json",
        ])
        .unwrap();
        assert_eq!(a.kube.kubeconfig.as_deref(), Some("/k".as_ref()));
        assert_eq!(a.nethouse.cluster, "e2e");
        assert_eq!(a.default_retention, Duration::ZERO);
        assert!(!a.leader_elect);
        let opts = a.leader_options();
        assert_eq!(
            (opts.namespace.as_str(), opts.lease_name.as_str()),
            ("default", "l")
        );
        assert_eq!(opts.identity, "ctl-a");
        assert_eq!(opts.duration, Duration::from_secs(4));
        assert_eq!(opts.renew_before, Duration::from_secs(2));
        assert_eq!(a.health_listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(a.drain.shutdown_delay, Duration::from_secs(1));
        assert_eq!(a.log.log_format, nethouse_runtime::logs::LogFormat::Json);
    }

    #[test]
    fn bad_values_name_their_flag() {
        let e = parse(&[]).unwrap_err().to_string();
        assert!(e.contains("--nethouse <NETHOUSE>"), "{e}");
        let e = parse(&["--nethouse=http://a:1", "--orphan-grace=soon"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--orphan-grace"), "{e}");

        let a = parse(&[
            "--nethouse=http://a:1",
            "--nethouse-token-file=/nonexistent/controller.token",
        ])
        .unwrap();
        let e = a.nethouse.client().unwrap_err().to_string();
        assert!(e.starts_with("--nethouse-token-file: "), "{e}");
    }
}
