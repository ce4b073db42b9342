//! One log set-up for every binary: structured lines on stderr (stdout may belong to someone
//! else), text for people or JSON for log pipelines, the level from `RUST_LOG` (default info).

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(clap::Args, Clone, Debug)]
pub struct LogArgs {
    /// Log lines as `text` or `json`.
    #[arg(long, env = "NETHOUSE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Installs the global subscriber; a second call (tests that start several components in
    /// one process) keeps the first.
    pub fn init(&self) {
        init(self.log_format)
    }
}

pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: a log file or collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
