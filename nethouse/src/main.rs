// Start-up allocates one small object per string of every lease; mimalloc makes that (and
// the steady state) markedly cheaper than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = nethouse::cli::Cli::parse();
    if let Err(e) = nethouse::cli::run(cli).await {
        eprintln!("nethouse: {e:#}");
        std::process::exit(1);
    }
}
