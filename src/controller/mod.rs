//! Wires the kinds' controllers to the API server on top of the runtime:
//! discovers what the server serves, starts the shared watch caches, and runs
//! every controller until shutdown.

mod http;
mod startup;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::task::JoinHandle;

pub use startup::{StartupError, ensure_crds_installed};

use crate::router::{ClientOptions, Router, RouterClient};
use crate::router_cluster::build::{CLUSTER_LABEL, FIELD_MANAGER};
use crate::runtime::cache::{Selectors, Watches};
use crate::runtime::policy::PdbApi;
use crate::runtime::{Context, Timing, reconciler};
use crate::service::controller as service;

/// Settings of the `run` subcommand.
#[derive(Clone, Debug, clap::Args)]
pub struct Settings {
    /// Only watch this namespace (default: all namespaces).
    #[arg(long, env = "CONVEYOR_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Deadline of every gRPC call to a router, e.g. 3s or 500ms.
    #[arg(long, env = "CONVEYOR_ROUTER_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub router_timeout: Duration,
    /// How often a settled router cluster's health is polled.
    #[arg(long, env = "CONVEYOR_HEALTH_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub health_interval: Duration,
    /// How often each pipeline's stage figures are read from the router (the
    /// one per-pipeline router read; status moves with them at most this often).
    #[arg(long, env = "CONVEYOR_STATS_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub stats_interval: Duration,
    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz.
    #[arg(long, env = "CONVEYOR_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    pub http_address: std::net::SocketAddr,
}

/// Connects with the kubeconfig (or in-cluster config), checks the CRDs and
/// runs every controller until SIGINT or SIGTERM.
pub async fn run(settings: Settings) -> Result<(), StartupError> {
    // Both rustls providers can end up compiled in through dependencies; pick
    // ring explicitly so building a client never panics at run time.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default().await.map_err(StartupError::Connect)?;
    ensure_crds_installed(&client).await?;
    let router =
        RouterClient::new(ClientOptions { call_timeout: settings.router_timeout, ..Default::default() });
    let timing = Timing {
        health_interval: settings.health_interval,
        stats_interval: settings.stats_interval,
        ..Default::default()
    };
    let operator = Operator::new(client, Arc::new(router), timing, settings.namespace.clone())
        .with_http(settings.http_address);
    let shutdown = shutdown_signal();
    tracing::info!(namespace = settings.namespace.as_deref().unwrap_or("<all>"), "operator started");
    operator.run(shutdown).await?;
    tracing::info!("operator stopped");
    Ok(())
}

/// How long in-flight reconciles may run on after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Which objects the operator watches besides its own resources.
fn selectors() -> Selectors {
    Selectors {
        owned: format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"),
        pods: CLUSTER_LABEL.to_owned(),
    }
}

/// Every controller of the operator, sharing one context and one set of caches.
pub struct Operator {
    client: Client,
    router: Arc<dyn Router>,
    timing: Timing,
    namespace: Option<String>,
    http: Option<std::net::SocketAddr>,
}

impl Operator {
    pub fn new(
        client: Client,
        router: Arc<dyn Router>,
        timing: Timing,
        namespace: Option<String>,
    ) -> Operator {
        Operator { client, router, timing, namespace, http: None }
    }

    /// Also serve /metrics, /healthz and /readyz on `address`.
    pub fn with_http(self, address: std::net::SocketAddr) -> Operator {
        Operator { http: Some(address), ..self }
    }

    /// Discovers the server's API versions and sets up the caches (not yet running).
    async fn prepare(self) -> Result<(Arc<Context>, Watches), StartupError> {
        let pdb_api = PdbApi::discover(&self.client).await.map_err(StartupError::Discovery)?;
        let (watches, cache) = Watches::new(&self.client, self.namespace.as_deref(), pdb_api, &selectors());
        let ctx = Arc::new(Context::new(self.client, self.router, self.timing, cache));
        Ok((ctx, watches))
    }

    /// Runs until `shutdown` resolves, then lets in-flight reconciles finish
    /// for at most `SHUTDOWN_GRACE`. (kube-runtime's graceful shutdown waits
    /// forever if it comes before the first watch list completed.)
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    ) -> Result<(), StartupError> {
        use futures::FutureExt;
        let http_address = self.http;
        let (ctx, watches) = self.prepare().await?;
        let shutdown = shutdown.shared();
        if let Some(address) = http_address {
            let server =
                http::serve(address, ctx.clone(), shutdown.clone()).await.map_err(StartupError::Http)?;
            tokio::spawn(server);
        }
        let clusters = crate::router_cluster::controller::controller(&watches, &ctx.cache);
        let (cache, watched) = (&ctx.cache, &watches.router_clusters);
        let referrers = &watches.pipelines;
        let sources = service::controller(&watches.sources, cache.sources.clone(), watched, referrers);
        let transforms =
            service::controller(&watches.transforms, cache.transforms.clone(), watched, referrers);
        let sinks = service::controller(&watches.sinks, cache.sinks.clone(), watched, referrers);
        let pipelines = crate::pipeline::controller::controller(&watches, cache);
        // One task per controller, so a busy kind never holds up another; the
        // set aborts them all when dropped.
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(reconciler::drive(clusters, ctx.clone(), shutdown.clone()));
        tasks.spawn(reconciler::drive(sources, ctx.clone(), shutdown.clone()));
        tasks.spawn(reconciler::drive(transforms, ctx.clone(), shutdown.clone()));
        tasks.spawn(reconciler::drive(sinks, ctx.clone(), shutdown.clone()));
        tasks.spawn(reconciler::drive(pipelines, ctx.clone(), shutdown.clone()));
        let controllers = async move { while tasks.join_next().await.is_some() {} };
        let deadline = async {
            shutdown.await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            _ = controllers => {}
            _ = watches.run() => {}
            _ = deadline => tracing::warn!(grace = ?SHUTDOWN_GRACE, "reconciles still running at shutdown; stopping anyway"),
        }
        Ok(())
    }

    /// A context whose caches are filled and kept current by a background
    /// task, for calling a reconciler directly (tests, tools).
    pub async fn detached_context(self) -> Result<(Arc<Context>, JoinHandle<()>), StartupError> {
        let (ctx, watches) = self.prepare().await?;
        let task = tokio::spawn(watches.run());
        ctx.cache.ready().await;
        Ok((ctx, task))
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so no signal is lost.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).expect("installing a SIGTERM handler cannot fail on unix");
    let mut interrupt =
        signal(SignalKind::interrupt()).expect("installing a SIGINT handler cannot fail on unix");
    async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Settings;
    use clap::Parser;
    use std::time::Duration;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    #[test]
    fn durations_parse_with_units_and_default_sensibly() {
        let defaults = Cli::try_parse_from(["operator"]).unwrap().settings;
        assert_eq!(defaults.router_timeout, Duration::from_secs(3));
        assert_eq!(defaults.health_interval, Duration::from_secs(10));
        let set = Cli::try_parse_from(["operator", "--router-timeout", "250ms", "--health-interval", "2m"])
            .unwrap();
        assert_eq!(set.settings.router_timeout, Duration::from_millis(250));
        assert_eq!(set.settings.health_interval, Duration::from_secs(120));
        assert!(Cli::try_parse_from(["operator", "--router-timeout", "fast"]).is_err());
        assert!(Cli::try_parse_from(["operator", "--router-timeout", "3"]).is_err());
    }
}
