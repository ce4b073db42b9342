//! The stop signal: SIGTERM is what the kubelet sends a container, Ctrl-C what a person does.

/// Resolves on SIGTERM or SIGINT and says which, for the log line.
pub async fn signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            // Without a SIGTERM handler the process would die at once on SIGTERM: say so, and
            // still honour Ctrl-C.
            tracing::warn!(error = %e, "no SIGTERM handler; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
