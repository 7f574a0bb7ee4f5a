//! Wires the kinds' controllers to the API server on top of the runtime:
//! starts the shared watch caches and runs every controller until shutdown.

mod http;
pub mod leader;
mod startup;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::task::JoinHandle;

pub use startup::{StartupError, ensure_crds_installed};

use leader::{Elector, Leadership, LeaseConfig, Role};

use crate::router::{ClientOptions, Router, RouterClient};
use crate::router_cluster::build::{CLUSTER_LABEL, FIELD_MANAGER};
use crate::runtime::cache::{Selectors, Watches};
use crate::runtime::namespaces::Namespaces;
use crate::runtime::{Context, Timing, reconciler};
use crate::service::controller as service;

/// Settings of the `run` subcommand.
#[derive(Clone, Debug, clap::Args)]
pub struct Settings {
    /// Only watch these namespaces, comma-separated or the flag repeated
    /// (default: all namespaces). With a list, namespaced RBAC (a Role in
    /// each) is all the operator needs besides reading the CRDs.
    #[arg(long = "namespace", env = "CONVEYOR_WATCH_NAMESPACE", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Deadline of every Kubernetes API request (reads, writes, the lease):
    /// an API server that stops answering fails the request, and the object
    /// is retried with backoff instead of waiting forever. Not watches: they
    /// stay open by design, and a silent one is restarted (see `api_clients`).
    #[arg(long, env = "CONVEYOR_API_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub api_timeout: Duration,
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
    /// Reconciles of one kind running at once (0: unbounded).
    #[arg(long, env = "CONVEYOR_MAX_CONCURRENT_RECONCILES", default_value_t = 32)]
    pub max_concurrent_reconciles: u16,
    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz.
    #[arg(long, env = "CONVEYOR_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    pub http_address: std::net::SocketAddr,
    /// Run as one of several replicas: only the holder of a
    /// coordination.k8s.io/v1 Lease runs the controllers, the others stand by.
    #[arg(long, env = "CONVEYOR_LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_election: bool,
    /// How long a leader's claim on the Lease lasts after its last renewal
    /// (written to the Lease in whole seconds, rounded up).
    #[arg(long, env = "CONVEYOR_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// How long a leader keeps trying to renew before it stops leading (and exits).
    #[arg(long, env = "CONVEYOR_RENEW_DEADLINE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby tries to take the Lease.
    #[arg(long, env = "CONVEYOR_RETRY_PERIOD", default_value = "2s", value_parser = humantime::parse_duration)]
    pub retry_period: Duration,
    /// Name of the Lease.
    #[arg(long, env = "CONVEYOR_LEASE_NAME", default_value = "conveyor-etl-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (default: POD_NAMESPACE, else the watched
    /// namespace, else `default`).
    #[arg(long, env = "CONVEYOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
}

impl Settings {
    /// The namespaces to watch.
    pub fn watched(&self) -> Namespaces {
        Namespaces::from_list(&self.namespaces)
    }

    /// The Lease to elect a leader on, when leader election is on. The
    /// identity is POD_NAME, else the host name and a random suffix.
    pub fn lease(&self) -> Option<LeaseConfig> {
        self.leader_election.then(|| LeaseConfig {
            name: self.lease_name.clone(),
            namespace: lease_namespace(
                self.lease_namespace.as_deref(),
                std::env::var("POD_NAMESPACE").ok().as_deref(),
                self.watched().first(),
            ),
            identity: leader::default_identity(),
            lease_duration: self.lease_duration,
            renew_deadline: self.renew_deadline,
            retry_period: self.retry_period,
        })
    }
}

/// The flag, else the pod's namespace, else the watched one, else `default`.
fn lease_namespace(flag: Option<&str>, pod: Option<&str>, watched: Option<&str>) -> String {
    [flag, pod, watched].into_iter().flatten().find(|name| !name.is_empty()).unwrap_or("default").to_owned()
}

/// The operator's client. kube's default client retries 429, 503 and 504
/// answers inside the call, with backoff, for minutes; but a 429 to an
/// eviction is a disruption budget's answer, and a reconcile waiting inside
/// a call holds its object. Without that layer every error comes back at
/// once and the reconciler's own backoff (jittered, capped) retries.
pub fn client_without_hidden_retries(mut config: kube::Config) -> Result<Client, kube::Error> {
    config.default_retry = false;
    Client::try_from(config)
}

/// How long a watch connection may go without a byte before it is dropped.
/// The API server ends every watch within 290 s (kube's default
/// `timeoutSeconds`) and kube's watcher restarts one that sends nothing for
/// 295 s; this bounds what that idle timeout does not cover, such as the
/// initial list of a watch, on a connection that went dead.
pub const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(300);

/// The operator's two clients, both without hidden retries: `requests` for
/// every call that expects an answer, each bounded by `request_timeout`
/// (connect, send and every read); `watches` for the watch caches, whose
/// streams stay open and quiet for minutes by design.
pub struct ApiClients {
    pub requests: Client,
    pub watches: Client,
}

pub fn api_clients(config: kube::Config, request_timeout: Duration) -> Result<ApiClients, kube::Error> {
    let mut requests = config.clone();
    requests.read_timeout = Some(request_timeout);
    requests.write_timeout = Some(request_timeout);
    requests.connect_timeout =
        Some(requests.connect_timeout.map_or(request_timeout, |t| t.min(request_timeout)));
    let mut watches = config;
    watches.read_timeout = Some(WATCH_READ_TIMEOUT);
    Ok(ApiClients {
        requests: client_without_hidden_retries(requests)?,
        watches: client_without_hidden_retries(watches)?,
    })
}

/// Connects with the kubeconfig (or in-cluster config), checks the CRDs and
/// runs every controller until SIGINT or SIGTERM.
pub async fn run(settings: Settings) -> Result<(), StartupError> {
    // Both rustls providers can end up compiled in through dependencies; pick
    // ring explicitly so building a client never panics at run time.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = kube::Config::infer()
        .await
        .map_err(|error| StartupError::Connect(kube::Error::InferConfig(error)))?;
    let clients = api_clients(config, settings.api_timeout).map_err(StartupError::Connect)?;
    let client = clients.requests;
    ensure_crds_installed(&client).await?;
    let router =
        RouterClient::new(ClientOptions { call_timeout: settings.router_timeout, ..Default::default() });
    let timing = Timing {
        health_interval: settings.health_interval,
        stats_interval: settings.stats_interval,
        max_concurrent_reconciles: settings.max_concurrent_reconciles,
        ..Default::default()
    };
    let mut operator = Operator::new(client, Arc::new(router), timing, settings.watched())
        .with_http(settings.http_address)
        .with_watch_client(clients.watches);
    if let Some(lease) = settings.lease() {
        lease.validate().map_err(StartupError::LeaderElection)?;
        operator = operator.with_leader_election(lease);
    }
    let shutdown = shutdown_signal();
    tracing::info!(namespaces = %settings.watched(), "operator started");
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
    namespaces: Namespaces,
    http: Option<std::net::SocketAddr>,
    lease: Option<LeaseConfig>,
    /// The client the watch caches use, when not `client`.
    watch_client: Option<Client>,
}

impl Operator {
    pub fn new(
        client: Client,
        router: Arc<dyn Router>,
        timing: Timing,
        namespaces: impl Into<Namespaces>,
    ) -> Operator {
        let namespaces = namespaces.into();
        Operator { client, router, timing, namespaces, http: None, lease: None, watch_client: None }
    }

    /// Watch with `client` (see [`api_clients`]); every other call uses the
    /// client given to [`Operator::new`].
    pub fn with_watch_client(self, client: Client) -> Operator {
        Operator { watch_client: Some(client), ..self }
    }

    /// Also serve /metrics, /healthz and /readyz on `address`.
    pub fn with_http(self, address: std::net::SocketAddr) -> Operator {
        Operator { http: Some(address), ..self }
    }

    /// Run the controllers only while holding the Lease `lease`.
    pub fn with_leader_election(self, lease: LeaseConfig) -> Operator {
        Operator { lease: Some(lease), ..self }
    }

    /// Sets up the caches (not yet running) and the context, with the state
    /// each kind registers.
    fn prepare(self) -> (Arc<Context>, Watches) {
        let watch_client = self.watch_client.as_ref().unwrap_or(&self.client);
        let (watches, cache) = Watches::new(watch_client, &self.namespaces, &selectors());
        let mut ctx = Context::new(self.client, self.router, self.timing, cache);
        crate::router_cluster::controller::register(&mut ctx);
        crate::service::controller::register(&mut ctx);
        (Arc::new(ctx), watches)
    }

    /// Runs until `shutdown` resolves, then lets in-flight reconciles finish
    /// for at most `SHUTDOWN_GRACE`. (kube-runtime's graceful shutdown waits
    /// forever if it comes before the first watch list completed.)
    ///
    /// With leader election, first stands by until this replica holds the
    /// Lease (a shutdown meanwhile just returns), then renews it while the
    /// controllers run, and releases it once they drained. A leader that
    /// cannot renew stops at once with [`StartupError::LeaseLost`].
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    ) -> Result<(), StartupError> {
        use futures::FutureExt;
        let http_address = self.http;
        let elector = self.lease.clone().map(|lease| Elector::new(self.client.clone(), lease));
        let leadership = Leadership::new(if elector.is_some() { Role::Standby } else { Role::Sole });
        let (ctx, watches) = self.prepare();
        ctx.metrics.set_leading(leadership.is_active());
        let shutdown = shutdown.shared();
        if let Some(address) = http_address {
            let server = http::serve(address, ctx.clone(), leadership.clone(), shutdown.clone())
                .await
                .map_err(StartupError::Http)?;
            tokio::spawn(server);
        }
        let Some(elector) = elector else {
            run_controllers(&ctx, watches, shutdown).await;
            return Ok(());
        };
        let lease = elector.config();
        tracing::info!(lease = %lease.name, namespace = %lease.namespace, identity = %lease.identity, "leader election on; standing by until this replica holds the lease");
        let acquired = tokio::select! {
            acquired = elector.acquire() => acquired,
            _ = shutdown.clone() => return Ok(()),
        };
        leadership.set(Role::Leader);
        ctx.metrics.set_leading(true);
        tokio::select! {
            _ = run_controllers(&ctx, watches, shutdown) => {}
            lost = elector.keep_renewing(acquired) => {
                leadership.set(Role::Standby);
                ctx.metrics.set_leading(false);
                tracing::error!(error = %lost, "stopped leading; stopping the controllers and exiting");
                return Err(StartupError::LeaseLost(lost));
            }
        }
        leadership.set(Role::Standby);
        ctx.metrics.set_leading(false);
        match tokio::time::timeout(lease.renew_deadline, elector.release()).await {
            Ok(Ok(true)) => tracing::info!(lease = %lease.name, "released the lease"),
            Ok(Ok(false)) => tracing::warn!(lease = %lease.name, "the lease was no longer ours to release"),
            Ok(Err(error)) => {
                tracing::warn!(lease = %lease.name, %error, "cannot release the lease; it expires by itself")
            }
            Err(_) => {
                tracing::warn!(lease = %lease.name, "releasing the lease timed out; it expires by itself")
            }
        }
        Ok(())
    }

    /// A context whose caches are filled and kept current by a background
    /// task, for calling a reconciler directly (tests, tools).
    pub async fn detached_context(self) -> (Arc<Context>, JoinHandle<()>) {
        let (ctx, watches) = self.prepare();
        let task = tokio::spawn(watches.run());
        ctx.cache.ready().await;
        (ctx, task)
    }
}

/// Runs every controller on the watches until `shutdown`, then lets
/// in-flight reconciles finish for at most `SHUTDOWN_GRACE`.
async fn run_controllers(
    ctx: &Arc<Context>,
    watches: Watches,
    shutdown: futures::future::Shared<impl Future<Output = ()> + Send + Sync + 'static>,
) {
    let clusters = crate::router_cluster::controller::controller(&watches, &ctx.cache);
    let cache = &ctx.cache;
    let watched = || (&watches.router_clusters, cache.router_clusters.clone());
    let referrers = &watches.pipelines;
    let sources = service::controller(&watches.sources, cache.sources.clone(), watched(), referrers);
    let transforms = service::controller(&watches.transforms, cache.transforms.clone(), watched(), referrers);
    let sinks = service::controller(&watches.sinks, cache.sinks.clone(), watched(), referrers);
    let pipelines = crate::pipeline::controller::controller(&watches, ctx);
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
        assert_eq!(defaults.api_timeout, Duration::from_secs(30));
        assert_eq!(defaults.router_timeout, Duration::from_secs(3));
        assert_eq!(defaults.health_interval, Duration::from_secs(10));
        let set = Cli::try_parse_from(["operator", "--router-timeout", "250ms", "--health-interval", "2m"])
            .unwrap();
        assert_eq!(set.settings.router_timeout, Duration::from_millis(250));
        assert_eq!(set.settings.health_interval, Duration::from_secs(120));
        assert!(Cli::try_parse_from(["operator", "--router-timeout", "fast"]).is_err());
        assert!(Cli::try_parse_from(["operator", "--router-timeout", "3"]).is_err());
    }

    #[test]
    fn leader_election_is_off_by_default_with_client_go_timings() {
        let defaults = Cli::try_parse_from(["operator"]).unwrap().settings;
        assert!(!defaults.leader_election);
        assert_eq!(defaults.lease(), None);
        assert_eq!(defaults.lease_duration, Duration::from_secs(15));
        assert_eq!(defaults.renew_deadline, Duration::from_secs(10));
        assert_eq!(defaults.retry_period, Duration::from_secs(2));
        assert_eq!(defaults.lease_name, "conveyor-etl-operator");
        let on = Cli::try_parse_from([
            "operator",
            "--leader-election",
            "--lease-duration",
            "3s",
            "--renew-deadline",
            "2s",
            "--retry-period",
            "500ms",
            "--lease-namespace",
            "ops",
        ])
        .unwrap()
        .settings;
        let lease = on.lease().expect("leader election on");
        assert_eq!(lease.namespace, "ops");
        assert_eq!(lease.retry_period, Duration::from_millis(500));
        assert_eq!(lease.validate(), Ok(()));
        // The manifests pass the switch as CONVEYOR_LEADER_ELECTION="true"/"false".
        assert!(
            Cli::try_parse_from(["operator", "--leader-election", "true"]).unwrap().settings.leader_election
        );
        assert!(
            !Cli::try_parse_from(["operator", "--leader-election", "false"])
                .unwrap()
                .settings
                .leader_election
        );
    }

    #[test]
    fn the_lease_namespace_is_the_flag_else_the_pods_else_the_watched_else_default() {
        use super::lease_namespace;
        assert_eq!(lease_namespace(Some("a"), Some("b"), Some("c")), "a");
        assert_eq!(lease_namespace(None, Some("b"), Some("c")), "b");
        assert_eq!(lease_namespace(None, Some(""), Some("c")), "c");
        assert_eq!(lease_namespace(None, None, None), "default");
    }
}
