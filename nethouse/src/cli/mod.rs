//! The `nethouse` command line: `serve`, and the operator commands that talk to a server.

mod error;
pub mod migrate;
mod ops;
pub mod serve;
pub mod store_args;
pub mod table;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use error::CliError;

#[derive(Parser, Debug)]
#[command(
    name = "nethouse",
    version,
    about = "NetHouse: the IPAM service that owns every pod IP"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process; boxing the big variant would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the NetHouse server.
    Serve(serve::ServeArgs),
    /// Manage subnets (controller token).
    #[command(subcommand)]
    Subnet(SubnetCmd),
    /// Inspect and release leases.
    #[command(subcommand)]
    Lease(LeaseCmd),
    /// Show zones and what a new lease could get in each.
    #[command(subcommand)]
    Zone(ZoneCmd),
    /// The store itself, with NetHouse stopped.
    #[command(subcommand)]
    Store(StoreCmd),
}

#[derive(Subcommand, Debug)]
pub enum StoreCmd {
    /// Copy the embedded store into etcd (--to etcd) or etcd into a new embedded store
    /// (--to embedded), verified key by key; a target holding any NetHouse key is refused.
    Migrate(migrate::MigrateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// NetHouse server URL(s), comma-separated, tried in order.
    #[arg(
        long,
        env = "NETHOUSE_SERVER",
        default_value = "http://127.0.0.1:7420",
        global = true
    )]
    pub server: String,
    /// File holding the bearer token.
    #[arg(long, env = "NETHOUSE_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// The bearer token itself (prefer --token-file: arguments show in `ps`).
    #[arg(long, env = "NETHOUSE_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA bundle for an https server.
    #[arg(long, env = "NETHOUSE_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table", global = true)]
    pub output: Output,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

// Parsed once per process; boxing the big variant would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum SubnetCmd {
    /// Add a subnet to a network zone.
    Add {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        zone: String,
        #[arg(long)]
        cidr: String,
        /// Gateway address, or `none`. Default: the first host address.
        #[arg(long)]
        gateway: Option<String>,
        /// Name of the subnet. Default: the CIDR with `/` replaced by `-`.
        #[arg(long)]
        name: Option<String>,
        /// Address, range A-B or CIDR never to hand out (repeatable).
        #[arg(long)]
        exclude: Vec<String>,
        /// Route `DST` or `DST,GW` (repeatable).
        #[arg(long)]
        route: Vec<String>,
        #[arg(long = "dns-server")]
        dns_server: Vec<String>,
        #[arg(long = "dns-search")]
        dns_search: Vec<String>,
        #[arg(long = "dns-domain")]
        dns_domain: Option<String>,
        /// Cooldown of released addresses, e.g. 5m (default: the server's).
        #[arg(long, value_parser = nethouse_api::duration::parse_duration)]
        cooldown: Option<std::time::Duration>,
    },
    /// List subnets with their usage.
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove a subnet (refused while it has leases).
    #[command(alias = "remove")]
    Rm {
        #[command(flatten)]
        conn: Conn,
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum LeaseCmd {
    /// List leases.
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        zone: Option<String>,
        #[arg(long)]
        subnet: Option<String>,
        #[arg(long)]
        node: Option<String>,
        #[arg(long, value_parser = ["fixed", "ephemeral"])]
        kind: Option<String>,
        #[arg(long)]
        namespace: Option<String>,
        #[arg(long)]
        cluster: Option<String>,
        /// Only fixed leases whose pod is not running.
        #[arg(long)]
        retained: bool,
    },
    /// Show one lease: by IP, or by NAMESPACE/POD (of --cluster).
    Show {
        #[command(flatten)]
        conn: Conn,
        target: String,
        #[arg(long, default_value = "default")]
        cluster: String,
    },
    /// Release the fixed lease of NAMESPACE/POD (controller token).
    Release {
        #[command(flatten)]
        conn: Conn,
        target: String,
        #[arg(long, default_value = "default")]
        cluster: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ZoneCmd {
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Subnet(cmd) => ops::subnet(cmd).await,
        Command::Lease(cmd) => ops::lease(cmd).await,
        Command::Zone(cmd) => ops::zone(cmd).await,
        Command::Store(StoreCmd::Migrate(args)) => migrate::run(args).await,
    }
}
