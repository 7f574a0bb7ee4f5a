//! Wires the kinds' reconcilers to the API server and runs them until shutdown.

mod startup;

use std::time::Duration;

use kube::Client;

pub use startup::{Error, ensure_crds_installed};

/// Settings of the `run` subcommand.
#[derive(Clone, Debug, clap::Args)]
pub struct Settings {
    /// Only watch this namespace (default: all namespaces).
    #[arg(long, env = "CONVEYOR_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Deadline of every gRPC call to a router, e.g. 3s or 500ms.
    #[arg(long, env = "CONVEYOR_ROUTER_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub router_timeout: Duration,
}

/// Parses `500ms`, `3s` or `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let invalid = || format!("`{text}` is not a duration like 3s or 500ms");
    let value: u64 = number.parse().map_err(|_| invalid())?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        _ => Err(invalid()),
    }
}

/// Connects with the kubeconfig (or in-cluster config), checks the CRDs and
/// runs every controller until SIGINT or SIGTERM.
pub async fn run(settings: Settings) -> Result<(), Error> {
    // Both rustls providers can end up compiled in through dependencies; pick
    // ring explicitly so building a client never panics at run time.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default().await.map_err(Error::Connect)?;
    ensure_crds_installed(&client).await?;
    tracing::info!(namespace = settings.namespace.as_deref().unwrap_or("<all>"), "operator started");
    shutdown_signal().await;
    tracing::info!("operator stopping");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).expect("installing a SIGTERM handler cannot fail on unix");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3").is_err());
        assert!(parse_duration("3h").is_err());
    }
}
