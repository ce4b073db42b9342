use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = nethouse::cli::Cli::parse();
    if let Err(e) = nethouse::cli::run(cli).await {
        eprintln!("nethouse: {e:#}");
        std::process::exit(1);
    }
}
