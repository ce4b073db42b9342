//! `nethouse serve`: open the store (embedded, or etcd: `store_args`), read it back whole,
//! serve the API until SIGTERM/SIGINT,
//! then answer `/readyz` 503 for `--shutdown-delay` while still serving, stop taking
//! connections, let in-flight requests finish and close the store cleanly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::error::CliError;
use super::store_args::StoreArgs;

use crate::server::running::{ServerOptions, StoreOptions, start};
use crate::server::{Auth, KubeReviewer, NodeReview, ServiceAccount};
use nethouse_api::duration::parse_duration;
use nethouse_runtime::args::KubeArgs;
use nethouse_runtime::limits::HttpLimits;
use nethouse_runtime::logs::LogArgs;
use nethouse_runtime::serve::DrainArgs;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; see --ready-file).
    #[arg(long, env = "NETHOUSE_LISTEN", default_value = "127.0.0.1:7420")]
    pub listen: SocketAddr,
    /// `--store`, `--data-dir` and the `--etcd-*` flags.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Tokens, one `ROLE TOKEN` per line. Roles: `node:<node-name>` (a node's own token: it acts
    /// for that node only), `controller`, and `node` (unbound: it acts for every node).
    #[arg(
        long,
        env = "NETHOUSE_AUTH_FILE",
        required_unless_present = "insecure_no_auth"
    )]
    pub auth_file: Option<PathBuf>,
    /// Serve without authentication (development only).
    #[arg(long, conflicts_with = "auth_file")]
    pub insecure_no_auth: bool,
    /// Also accept, as the `node` role of ONE node, a Kubernetes ServiceAccount token that is not
    /// in the auth file: a TokenReview must find it authentic, meant for
    /// --node-token-audience, of --node-service-account, and bound to a pod on a node
    /// (Kubernetes 1.32+ names that node). Needs `create` on `tokenreviews`.
    #[arg(long, conflicts_with = "insecure_no_auth")]
    pub node_token_review: bool,
    /// NAMESPACE/NAME of the ServiceAccount whose tokens --node-token-review accepts (the CNI
    /// DaemonSet's).
    #[arg(long, default_value = "nethouse-system/nethouse-cni")]
    pub node_service_account: ServiceAccount,
    /// The audience those tokens must be minted for.
    #[arg(long, default_value = "nethouse")]
    pub node_token_audience: String,
    /// The Kubernetes API of --node-token-review.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// PEM certificate chain; with --tls-key serves HTTPS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Cooldown of released addresses unless their subnet sets one.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub default_cooldown: Duration,
    /// State-changing calls that may run at once; more are refused at once with a transient
    /// 503 (a stalled store would otherwise collect every caller's retries).
    #[arg(long, env = "NETHOUSE_MAX_IN_FLIGHT",
          default_value_t = crate::server::DEFAULT_MAX_IN_FLIGHT as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
    /// After SIGTERM, how long `/readyz` says 503 while requests are still taken.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Then, how long in-flight requests may take to finish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Once serving, write the bound address here (for supervisors and tests).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub http: HttpLimits,
}

/// The embedded store's file under `--data-dir` (a test keeps it equal to the store's).
pub const STORE_FILE: &str = "nethouse.redb";

/// Refuses a store file that exists but is empty. redb would take a 0-byte file for a new
/// database and NetHouse would start with every lease forgotten (a truncated copy, a full
/// disk at creation, a wrong volume), handing their addresses out again. A new store is a
/// data dir with no store file at all: deleting the empty file is how an operator says so.
pub fn check_store_file(data_dir: &Path) -> Result<(), CliError> {
    let path = data_dir.join(STORE_FILE);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() && m.len() == 0 => Err(CliError::EmptyStore { path }),
        _ => Ok(()),
    }
}

pub async fn run(args: ServeArgs) -> Result<(), CliError> {
    args.log.init();
    let store = args.store.options()?;
    if let StoreOptions::Embedded { data_dir } = &store {
        check_store_file(data_dir)?;
    }
    let auth = match (&args.auth_file, args.insecure_no_auth) {
        (Some(path), _) => Auth::from_file(path).map_err(CliError::AuthFile)?,
        (None, _) => {
            tracing::warn!("serving WITHOUT authentication (--insecure-no-auth)");
            Auth::Disabled
        }
    };
    let auth = if args.node_token_review {
        let client = args
            .kube
            .client()
            .await
            .map_err(CliError::NodeTokenReview)?;
        let review = NodeReview::new(
            Box::new(KubeReviewer::new(client)),
            &args.node_service_account,
            &args.node_token_audience,
        );
        tracing::info!(
            service_account = %args.node_service_account,
            audience = %args.node_token_audience,
            "node tokens not in the auth file are reviewed by the Kubernetes API (TokenReview)"
        );
        auth.with_node_review(review).map_err(CliError::AuthFile)?
    } else {
        auth
    };
    let unbound = auth.unbound_node_tokens();
    if unbound > 0 {
        tracing::warn!(
            tokens = unbound,
            "the auth file has unbound `node` tokens: each may allocate, detach and gc for EVERY \
             node, so one node's copy can free every node's addresses; give each node its own \
             (`node:<node-name> TOKEN`)"
        );
    }
    let running = start(ServerOptions {
        listen: args.listen,
        store,
        auth,
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
        default_cooldown: args.default_cooldown,
        max_in_flight: args.max_in_flight as usize,
        http: args.http,
    })
    .await?;
    if let Some(path) = &args.ready_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, running.addr.to_string()).map_err(CliError::ReadyFile)?;
        std::fs::rename(&tmp, path).map_err(CliError::ReadyFile)?;
    }
    let why = nethouse_runtime::shutdown::signal().await;
    tracing::info!(signal = why, "shutting down: finishing in-flight requests");
    running
        .stop(DrainArgs {
            shutdown_delay: args.shutdown_delay,
            shutdown_grace: args.shutdown_grace,
        })
        .await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{STORE_FILE, check_store_file};
    use crate::cli::{Cli, CliError, Command};
    use crate::store::embedded::EmbeddedStore;

    #[test]
    fn an_empty_store_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_store_file(dir.path()).is_ok(), "no file: a new store");
        let path = dir.path().join(STORE_FILE);
        std::fs::write(&path, b"").unwrap();
        let e = check_store_file(dir.path()).unwrap_err();
        assert!(
            matches!(&e, CliError::EmptyStore { path: p } if *p == path),
            "{e}"
        );
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn the_checked_file_is_the_stores() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.path(), dir.path().join(STORE_FILE));
        drop(store);
        assert!(
            check_store_file(dir.path()).is_ok(),
            "a real store is not empty"
        );
    }

    fn parse(extra: &[&str]) -> Result<super::ServeArgs, String> {
        let args = [
            "nethouse",
            "serve",
            "--data-dir",
            "/d",
            "--insecure-no-auth",
        ];
        Cli::try_parse_from(args.iter().chain(extra))
            .map(|c| match c.command {
                Command::Serve(s) => s,
                other => panic!("parsed as {other:?}"),
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn node_token_review_flags() {
        let with_auth = |extra: &[&str]| {
            let args = ["nethouse", "serve", "--data-dir", "/d", "--auth-file", "/a"];
            Cli::try_parse_from(args.iter().chain(extra))
                .map(|c| match c.command {
                    Command::Serve(s) => s,
                    other => panic!("parsed as {other:?}"),
                })
                .map_err(|e| e.to_string())
        };
        let a = with_auth(&[]).unwrap();
        assert!(!a.node_token_review);
        let a = with_auth(&["--node-token-review"]).unwrap();
        assert!(a.node_token_review);
        assert_eq!(
            a.node_service_account.to_string(),
            "nethouse-system/nethouse-cni"
        );
        assert_eq!(a.node_token_audience, "nethouse");
        let e = with_auth(&["--node-service-account", "nethouse-cni"]).unwrap_err();
        assert!(
            e.contains("--node-service-account") && e.contains("NAMESPACE/NAME"),
            "{e}"
        );
        let e = parse(&["--node-token-review"]).unwrap_err();
        assert!(e.contains("--insecure-no-auth"), "{e}");
    }

    #[test]
    fn flags_are_checked_and_named() {
        let a = parse(&[]).unwrap();
        assert_eq!(
            a.max_in_flight as usize,
            crate::server::DEFAULT_MAX_IN_FLIGHT
        );
        assert_eq!(parse(&["--max-in-flight", "8"]).unwrap().max_in_flight, 8);
        for (bad, flag) in [
            (&["--max-in-flight", "0"][..], "--max-in-flight"),
            (&["--max-in-flight", "many"][..], "--max-in-flight"),
            (
                &["--default-cooldown", "5 parsecs"][..],
                "--default-cooldown",
            ),
            (&["--listen", "nowhere"][..], "--listen"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(flag), "{bad:?}: {e}");
        }
    }
}
