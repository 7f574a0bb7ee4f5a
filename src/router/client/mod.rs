//! [`RouterClient`]: the operator's client of a router cluster.
//!
//! # Guarantees
//!
//! - **Deadlines.** Every call carries `grpc-timeout` = [`ClientOptions::call_timeout`]
//!   and is also cut off locally after that time, so a peer that accepted the TCP
//!   connection and then went silent cannot hang a reconcile. Connecting is
//!   bounded by [`ClientOptions::connect_timeout`].
//! - **Channels.** One HTTP/2 channel per member endpoint, created on first use and
//!   reused by every later call; a channel whose member was unreachable or timed
//!   out is dropped and rebuilt on the next call.
//! - **Leader routing.** Everything except [`Router::member_status`] goes to the Raft
//!   leader: found by asking every member for `GetClusterStatus` at once (the first
//!   member that says it is the leader, or the leader address a follower names),
//!   and cached per member set. A cached leader that answers "not leader" or fails
//!   is forgotten; a "not leader" answer that names the leader is followed at once.
//!   If the router does not serve `RouterAdmin` (so there is no `GetClusterStatus`),
//!   registry calls try the members in turn.
//! - **Retries.** Transient errors (unreachable, deadline, not leader, no quorum)
//!   are retried with exponential backoff and jitter, at most
//!   [`ClientOptions::max_attempts`] attempts and no new attempt after
//!   [`ClientOptions::max_retry_time`]; then [`RouterError::Exhausted`] carries the
//!   last error. Permanent and unimplemented errors are returned at once.
//! - **Exactly once.** A retried write never fails or duplicates because an earlier
//!   attempt landed and only its answer was lost:
//!   - create: "already exists" is answered by reading the pipeline back; if the
//!     stored config is this submission (equal, or same id and
//!     [`METADATA_GENERATION`](super::mapping::METADATA_GENERATION)) the create
//!     succeeded, and the router's log holds exactly one accepted create;
//!   - update: carries the full config, so applying it twice leaves the same state
//!     (the router's version may then advance twice);
//!   - delete / deregister: "not found" is success; enable/disable are idempotent;
//!   - register: an upsert keyed by service id.

mod calls;
mod connection;
mod leader;
mod leased;
mod metrics;
mod summaries;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::Channel;

use super::error::RouterError;
use super::proto::common::ServiceType;
use super::proto::registry::{HeartbeatRequest, RegisterRequest, RegisterResponse, RegisteredService};
use super::proto::router::router_admin_client::RouterAdminClient;
use super::proto::router::{
    GetClusterStatusRequest, GetClusterStatusResponse, GetPipelineResponse, PipelineConfig,
};
use connection::{lock, with_deadline};
use leader::members_key;
pub use leased::HeartbeatAnswers;
pub use metrics::CallMetrics;
pub use summaries::Summaries;

/// gRPC endpoints (`host:port`) of a router cluster's members, e.g. pod IPs.
pub type Members = [String];

/// What the controllers need from a router cluster. Implemented by
/// [`RouterClient`]; tests may substitute their own.
#[async_trait::async_trait]
pub trait Router: Send + Sync + 'static {
    /// One member's view of the cluster: exactly one call to that member, with the
    /// deadline, no retry (the health poll wants per-member truth).
    async fn member_status(&self, member: &str) -> Result<GetClusterStatusResponse, RouterError>;
    /// Submits a new pipeline; returns the router's pipeline id. Creating a
    /// pipeline the router already holds with this very config is a success.
    async fn create_pipeline(&self, members: &Members, config: PipelineConfig)
    -> Result<String, RouterError>;
    /// Replaces a pipeline's config; returns the router's version of it.
    async fn update_pipeline(&self, members: &Members, config: PipelineConfig) -> Result<u64, RouterError>;
    /// Deletes a pipeline; deleting an absent pipeline is a success.
    async fn delete_pipeline(
        &self,
        members: &Members,
        pipeline_id: &str,
        force: bool,
    ) -> Result<(), RouterError>;
    /// The stored config and status of a pipeline; `None` when the router has none.
    async fn get_pipeline(
        &self,
        members: &Members,
        pipeline_id: &str,
    ) -> Result<Option<GetPipelineResponse>, RouterError>;
    /// Every pipeline the router holds, disabled ones included, each as its
    /// id and summary (decoded one at a time: the whole list is not kept).
    async fn list_pipelines(&self, members: &Members) -> Result<Summaries, RouterError>;
    /// Enables or (without draining) disables a pipeline.
    async fn set_pipeline_enabled(
        &self,
        members: &Members,
        pipeline_id: &str,
        enabled: bool,
    ) -> Result<(), RouterError>;
    /// Registers (upserts) a service.
    async fn register(
        &self,
        members: &Members,
        request: RegisterRequest,
    ) -> Result<RegisterResponse, RouterError>;
    /// Deregisters a service; deregistering an unknown service is a success.
    async fn deregister(&self, members: &Members, service_id: &str) -> Result<(), RouterError>;
    /// Registered services of one type (`ServiceType::Unspecified`: all).
    async fn list_services(
        &self,
        members: &Members,
        type_filter: ServiceType,
    ) -> Result<Vec<RegisteredService>, RouterError>;
    /// Registers (upserts) a service in one member's own registry: one call, no
    /// leader routing, no retry (for routers whose registry is per member).
    async fn register_on_member(
        &self,
        member: &str,
        request: RegisterRequest,
    ) -> Result<RegisterResponse, RouterError>;
    /// The registrations one member's own registry holds (one call, no retry).
    async fn list_services_on_member(&self, member: &str) -> Result<Vec<RegisteredService>, RouterError>;
    /// Deregisters a service from one member's own registry; not held there is a success.
    async fn deregister_on_member(&self, member: &str, service_id: &str) -> Result<(), RouterError>;
    /// Opens one member's `Heartbeat` stream: each request sent on `requests`
    /// gets one answer, in order. UNIMPLEMENTED when the router has no leases.
    async fn heartbeat(
        &self,
        member: &str,
        requests: futures::channel::mpsc::UnboundedReceiver<HeartbeatRequest>,
    ) -> Result<HeartbeatAnswers, RouterError>;
    /// Adds the implementation's own metrics, if any, to the operator's registry.
    fn register_metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}
}

/// Deadlines and retry budget of a [`RouterClient`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Deadline of every single gRPC call (default 3 s).
    pub call_timeout: Duration,
    /// Deadline of establishing a connection (default 1 s).
    pub connect_timeout: Duration,
    /// Attempts per operation, the first included (default 5).
    pub max_attempts: usize,
    /// No new attempt starts after this much time since the first (default 10 s).
    pub max_retry_time: Duration,
    /// First backoff delay (default 100 ms); doubles per retry, plus jitter.
    pub min_backoff: Duration,
    /// Largest backoff delay before jitter (default 2 s).
    pub max_backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(1),
            max_attempts: 5,
            max_retry_time: Duration::from_secs(10),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Most entries either cache keeps; beyond it the cache starts afresh, so member
/// sets and endpoints of long-gone pods cannot accumulate.
const MAX_CACHED: usize = 1024;

/// The [`Router`] implementation over gRPC (see the module docs for guarantees).
pub struct RouterClient {
    options: ClientOptions,
    /// One channel per member endpoint.
    channels: Mutex<HashMap<String, Channel>>,
    /// Known leader endpoint per member set (key: [`members_key`]).
    leaders: Mutex<HashMap<String, String>>,
    metrics: CallMetrics,
}

impl RouterClient {
    /// A client with no open connections; channels are made on first use.
    pub fn new(options: ClientOptions) -> Self {
        Self {
            options,
            channels: Mutex::default(),
            leaders: Mutex::default(),
            metrics: CallMetrics::default(),
        }
    }

    /// The options the client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The leader endpoint cached for `members`, if any (for tests and diagnostics).
    pub fn cached_leader(&self, members: &Members) -> Option<String> {
        lock(&self.leaders).get(&members_key(members)).cloned()
    }

    /// The calls' counters and latencies.
    pub fn metrics(&self) -> &CallMetrics {
        &self.metrics
    }
}

#[async_trait::async_trait]
impl Router for RouterClient {
    async fn member_status(&self, member: &str) -> Result<GetClusterStatusResponse, RouterError> {
        self.unary(member, "GetClusterStatus", |channel, timeout| async move {
            RouterAdminClient::new(channel)
                .get_cluster_status(with_deadline(GetClusterStatusRequest {}, timeout))
                .await
        })
        .await
    }

    async fn create_pipeline(
        &self,
        members: &Members,
        config: PipelineConfig,
    ) -> Result<String, RouterError> {
        self.on_leader(members, "CreatePipeline", |member| {
            let config = config.clone();
            async move { self.create_on(&member, config).await }
        })
        .await
    }

    async fn update_pipeline(&self, members: &Members, config: PipelineConfig) -> Result<u64, RouterError> {
        self.on_leader(members, "UpdatePipeline", |member| {
            let config = config.clone();
            async move { self.update_on(&member, config).await }
        })
        .await
    }

    async fn delete_pipeline(
        &self,
        members: &Members,
        pipeline_id: &str,
        force: bool,
    ) -> Result<(), RouterError> {
        self.on_leader(members, "DeletePipeline", |member| async move {
            self.delete_on(&member, pipeline_id, force).await
        })
        .await
    }

    async fn get_pipeline(
        &self,
        members: &Members,
        pipeline_id: &str,
    ) -> Result<Option<GetPipelineResponse>, RouterError> {
        self.on_leader(
            members,
            "GetPipeline",
            |member| async move { self.get_on(&member, pipeline_id).await },
        )
        .await
    }

    async fn set_pipeline_enabled(
        &self,
        members: &Members,
        pipeline_id: &str,
        enabled: bool,
    ) -> Result<(), RouterError> {
        let method = if enabled { "EnablePipeline" } else { "DisablePipeline" };
        self.on_leader(members, method, |member| async move {
            self.set_enabled_on(&member, pipeline_id, enabled).await
        })
        .await
    }

    async fn register(
        &self,
        members: &Members,
        request: RegisterRequest,
    ) -> Result<RegisterResponse, RouterError> {
        self.on_leader(members, "Register", |member| {
            let request = request.clone();
            async move { self.register_on(&member, request).await }
        })
        .await
    }

    async fn deregister(&self, members: &Members, service_id: &str) -> Result<(), RouterError> {
        self.on_leader(members, "Deregister", |member| async move {
            self.deregister_on(&member, service_id).await
        })
        .await
    }

    async fn list_pipelines(&self, members: &Members) -> Result<Summaries, RouterError> {
        self.on_leader(
            members,
            "ListPipelines",
            |member| async move { self.list_pipelines_on(&member).await },
        )
        .await
    }

    async fn list_services(
        &self,
        members: &Members,
        type_filter: ServiceType,
    ) -> Result<Vec<RegisteredService>, RouterError> {
        self.on_leader(members, "ListServices", |member| async move {
            self.list_services_on(&member, type_filter).await
        })
        .await
    }

    async fn register_on_member(
        &self,
        member: &str,
        request: RegisterRequest,
    ) -> Result<RegisterResponse, RouterError> {
        self.register_on(member, request).await
    }

    async fn deregister_on_member(&self, member: &str, service_id: &str) -> Result<(), RouterError> {
        self.deregister_on(member, service_id).await
    }

    async fn list_services_on_member(&self, member: &str) -> Result<Vec<RegisteredService>, RouterError> {
        self.list_services_on(member, ServiceType::Unspecified).await
    }

    async fn heartbeat(
        &self,
        member: &str,
        requests: futures::channel::mpsc::UnboundedReceiver<HeartbeatRequest>,
    ) -> Result<HeartbeatAnswers, RouterError> {
        self.open_heartbeat(member, requests).await
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }
}
