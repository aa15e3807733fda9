//! One shutdown mechanism for every long-running part.
//!
//! A [`CancellationToken`] is handed to each `run(config, shutdown)` function. The first
//! SIGINT/SIGTERM cancels it (a graceful drain); a second signal exits the process at once.

pub use tokio_util::sync::CancellationToken;

/// Returns a token cancelled on the first SIGINT or SIGTERM; the second one exits with 130.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let child = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::warn!("shutdown requested: draining (press Ctrl-C again to exit at once)");
        child.cancel();
        wait_for_signal().await;
        tracing::error!("second signal: exiting without draining");
        std::process::exit(130);
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
