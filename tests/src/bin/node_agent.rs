//! `nethouse-node-agent`: one simulated node for the demo (tests run the agent in-process).
//! Kill it with SIGKILL to simulate a dead host: heartbeats stop, its namespaces stay, no DEL.

use std::path::PathBuf;

use clap::Parser;
use nethouse_e2e::agent::{Agent, AgentConfig};

#[derive(Parser, Debug)]
#[command(about = "A simulated Kubernetes node that runs pods through the real CNI chain")]
struct Args {
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Node name.
    #[arg(long)]
    node: String,
    /// Network zone (the node's nethouse.io/network-zone label).
    #[arg(long)]
    zone: String,
    /// NetHouse URL(s) for nethouse-cni.
    #[arg(long, required = true)]
    nethouse: Vec<String>,
    #[arg(long)]
    nethouse_token_file: Option<PathBuf>,
    /// CNI_PATH: where Debian's bridge and nethouse-cni are.
    #[arg(long)]
    cni_path: String,
    #[arg(long, default_value = "default")]
    cluster: String,
    /// Prefix of namespaces and bridges (≤ 8 characters).
    #[arg(long, default_value = "nhd")]
    prefix: String,
    /// Index of this node among the demo's nodes (names its bridge).
    #[arg(long, default_value_t = 0)]
    index: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("info")
        .init();
    let args = Args::parse();
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    let mut agent = Agent::new(
        client,
        AgentConfig {
            nethouse_urls: args.nethouse,
            nethouse_token_file: args.nethouse_token_file,
            cni_path: args.cni_path,
            cluster: args.cluster,
            prefix: args.prefix,
        },
    );
    agent.skip_indexes(args.index);
    agent.add_node(&args.node, &args.zone).await?;
    tokio::signal::ctrl_c().await?;
    // A graceful stop removes what the node created; SIGKILL (a dead host) does not.
    agent.shutdown();
    Ok(())
}
