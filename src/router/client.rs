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

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tonic::transport::Channel;

use super::error::{RouterError, from_refusal, from_status, service_of};
use super::mapping::same_submission;
use super::proto::common::ServiceType;
use super::proto::registry::service_registry_client::ServiceRegistryClient;
use super::proto::registry::{
    DeregisterRequest, ListServicesRequest, RegisterRequest, RegisterResponse, RegisteredService,
};
use super::proto::router::router_admin_client::RouterAdminClient;
use super::proto::router::{
    ClusterHealth, CreatePipelineRequest, DeletePipelineRequest, DisablePipelineRequest,
    EnablePipelineRequest, GetClusterStatusRequest, GetClusterStatusResponse, GetPipelineRequest,
    GetPipelineResponse, PipelineConfig, UpdatePipelineRequest,
};

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
}

impl RouterClient {
    /// A client with no open connections; channels are made on first use.
    pub fn new(options: ClientOptions) -> Self {
        Self { options, channels: Mutex::default(), leaders: Mutex::default() }
    }

    /// The options the client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The leader endpoint cached for `members`, if any (for tests and diagnostics).
    pub fn cached_leader(&self, members: &Members) -> Option<String> {
        lock(&self.leaders).get(&members_key(members)).cloned()
    }

    fn channel(&self, member: &str) -> Result<Channel, RouterError> {
        let mut channels = lock(&self.channels);
        if let Some(channel) = channels.get(member) {
            return Ok(channel.clone());
        }
        let invalid = |message: String| RouterError::InvalidMember { member: member.to_string(), message };
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{member}"))
            .map_err(|error| invalid(error.to_string()))?
            .connect_timeout(self.options.connect_timeout)
            .timeout(self.options.call_timeout)
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        if channels.len() >= MAX_CACHED {
            channels.clear();
        }
        channels.insert(member.to_string(), channel.clone());
        Ok(channel)
    }

    fn evict_channel(&self, member: &str) {
        lock(&self.channels).remove(member);
    }

    fn remember_leader(&self, key: &str, leader: &str) {
        let mut leaders = lock(&self.leaders);
        if leaders.len() >= MAX_CACHED && !leaders.contains_key(key) {
            leaders.clear();
        }
        leaders.insert(key.to_string(), leader.to_string());
    }

    fn forget_leader(&self, key: &str) {
        lock(&self.leaders).remove(key);
    }

    /// One unary call to `member`, bounded by the call deadline. A member that was
    /// unreachable or timed out loses its channel, so the next call reconnects.
    async fn unary<T, F, Fut>(&self, member: &str, method: &'static str, call: F) -> Result<T, RouterError>
    where
        F: FnOnce(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let channel = self.channel(member)?;
        let timeout = self.options.call_timeout;
        let error = match tokio::time::timeout(timeout, call(channel, timeout)).await {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status)) => from_status(member, method, timeout, &status),
            Err(_elapsed) => RouterError::DeadlineExceeded { member: member.to_string(), method, timeout },
        };
        if matches!(error, RouterError::Unavailable { .. } | RouterError::DeadlineExceeded { .. }) {
            self.evict_channel(member);
        }
        tracing::debug!(member, method, %error, "router call failed");
        Err(error)
    }

    /// Runs `op` on the leader of `members`, retrying transient failures with
    /// backoff within the budget of [`ClientOptions`].
    async fn on_leader<T, F, Fut>(
        &self,
        members: &Members,
        method: &'static str,
        op: F,
    ) -> Result<T, RouterError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, RouterError>>,
    {
        if members.is_empty() {
            return Err(RouterError::NoMembers);
        }
        let key = members_key(members);
        let started = Instant::now();
        let attempts = AtomicUsize::new(0);
        let budget = self.options.max_retry_time;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.options.min_backoff)
            .with_max_delay(self.options.max_backoff)
            .with_max_times(self.options.max_attempts.saturating_sub(1))
            .with_jitter();
        let result = (|| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            self.attempt_on_leader(members, &key, method, &op).await
        })
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|error: &RouterError| error.is_transient() && started.elapsed() < budget)
        .notify(|error, delay| tracing::debug!(method, %error, ?delay, "retrying router call"))
        .await;
        match result {
            Err(error) if error.is_transient() => Err(RouterError::Exhausted {
                attempts: attempts.load(Ordering::Relaxed),
                last: Box::new(error),
            }),
            other => other,
        }
    }

    /// One attempt: the cached or discovered leader, following a not-leader hint.
    async fn attempt_on_leader<T, F, Fut>(
        &self,
        members: &Members,
        key: &str,
        method: &'static str,
        op: &F,
    ) -> Result<T, RouterError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, RouterError>>,
    {
        let cached = lock(&self.leaders).get(key).cloned();
        let leader = match cached {
            Some(leader) => leader,
            None => match self.discover_leader(members).await {
                Ok(leader) => {
                    self.remember_leader(key, &leader);
                    leader
                }
                Err(RouterError::Unimplemented { .. }) if service_of(method) == "ServiceRegistry" => {
                    return self.try_members_in_turn(members, key, op).await;
                }
                Err(error) => return Err(error),
            },
        };
        self.call_following_hint(key, &leader, op).await
    }

    /// Calls `op` on `member`; when it answers "not leader" and names the leader,
    /// calls the leader at once. Remembers whoever accepted; forgets the cached
    /// leader on any transient failure.
    async fn call_following_hint<T, F, Fut>(&self, key: &str, member: &str, op: &F) -> Result<T, RouterError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, RouterError>>,
    {
        let (target, result) = match op(member.to_string()).await {
            Err(RouterError::NotLeader { leader: Some(hint), .. }) if hint != member => {
                tracing::debug!(member, leader = %hint, "following the not-leader hint");
                let result = op(hint.clone()).await;
                (hint, result)
            }
            other => (member.to_string(), other),
        };
        match &result {
            Ok(_) => self.remember_leader(key, &target),
            Err(error) if error.is_transient() => self.forget_leader(key),
            Err(_) => {}
        }
        result
    }

    /// For routers without `GetClusterStatus`: each member in turn until one accepts.
    async fn try_members_in_turn<T, F, Fut>(
        &self,
        members: &Members,
        key: &str,
        op: &F,
    ) -> Result<T, RouterError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, RouterError>>,
    {
        let mut last = RouterError::NoMembers;
        for member in members {
            match self.call_following_hint(key, member, op).await {
                Err(error) if error.is_transient() => last = error,
                other => return other,
            }
        }
        Err(last)
    }

    /// Asks every member for its cluster status at once and returns the leader's
    /// endpoint: the first member that says it is the leader, or the address of the
    /// leader a member names (preferring one of `members`). Without a leader the
    /// error says why: no quorum, an election in progress, `RouterAdmin` not
    /// served, or the members could not be reached.
    async fn discover_leader(&self, members: &Members) -> Result<String, RouterError> {
        let mut answers: FuturesUnordered<_> =
            members.iter().map(|member| async move { (member, self.member_status(member).await) }).collect();
        let mut named_leader: Option<String> = None;
        let mut no_quorum = None;
        let mut electing = None;
        let mut unimplemented = None;
        let mut unreachable = None;
        while let Some((member, answer)) = answers.next().await {
            match answer {
                Ok(status) if status.leader_id != 0 && status.node_id == status.leader_id => {
                    return Ok(member.clone());
                }
                Ok(status) if status.leader_id != 0 => {
                    let address = status
                        .nodes
                        .iter()
                        .find(|node| node.node_id == status.leader_id && !node.address.is_empty())
                        .map(|node| node.address.clone());
                    if let Some(address) = address {
                        if members.contains(&address) {
                            return Ok(address);
                        }
                        named_leader.get_or_insert(address);
                    }
                }
                Ok(status) if status.health() == ClusterHealth::Unhealthy => {
                    no_quorum.get_or_insert(RouterError::NoQuorum {
                        member: member.clone(),
                        message: "member reports CLUSTER_HEALTH_UNHEALTHY and no leader".to_string(),
                    });
                }
                Ok(_) => {
                    electing.get_or_insert(RouterError::NotLeader { member: member.clone(), leader: None });
                }
                Err(error @ RouterError::Unimplemented { .. }) => unimplemented = Some(error),
                Err(error) => unreachable = Some(error),
            }
        }
        if let Some(address) = named_leader {
            return Ok(address);
        }
        Err(no_quorum.or(electing).or(unimplemented).or(unreachable).unwrap_or(RouterError::NoMembers))
    }

    async fn create_on(&self, member: &str, config: PipelineConfig) -> Result<String, RouterError> {
        let request = CreatePipelineRequest { config: Some(config.clone()) };
        let response = self
            .unary(member, "CreatePipeline", |channel, timeout| async move {
                RouterAdminClient::new(channel).create_pipeline(with_deadline(request, timeout)).await
            })
            .await?;
        if response.success {
            return Ok(if response.pipeline_id.is_empty() { config.id } else { response.pipeline_id });
        }
        match from_refusal(member, "CreatePipeline", &response.error) {
            RouterError::AlreadyExists { .. } => self.confirm_own_create(member, config).await,
            error => Err(error),
        }
    }

    /// After "already exists": our own earlier attempt may have landed with its
    /// answer lost. If the stored pipeline is this submission, the create succeeded.
    async fn confirm_own_create(&self, member: &str, config: PipelineConfig) -> Result<String, RouterError> {
        match self.get_on(member, &config.id).await? {
            Some(GetPipelineResponse { config: Some(stored), .. }) if same_submission(&stored, &config) => {
                tracing::debug!(pipeline = %config.id, "create already applied; treating as success");
                Ok(config.id)
            }
            _ => Err(RouterError::AlreadyExists {
                method: "CreatePipeline",
                message: format!("pipeline {} exists with a different configuration", config.id),
            }),
        }
    }

    async fn update_on(&self, member: &str, config: PipelineConfig) -> Result<u64, RouterError> {
        let request = UpdatePipelineRequest { pipeline_id: config.id.clone(), config: Some(config) };
        let response = self
            .unary(member, "UpdatePipeline", |channel, timeout| async move {
                RouterAdminClient::new(channel).update_pipeline(with_deadline(request, timeout)).await
            })
            .await?;
        if response.success {
            Ok(response.version)
        } else {
            Err(from_refusal(member, "UpdatePipeline", &response.error))
        }
    }

    async fn delete_on(&self, member: &str, pipeline_id: &str, force: bool) -> Result<(), RouterError> {
        let request = DeletePipelineRequest { pipeline_id: pipeline_id.to_string(), force };
        let response = self
            .unary(member, "DeletePipeline", |channel, timeout| async move {
                RouterAdminClient::new(channel).delete_pipeline(with_deadline(request, timeout)).await
            })
            .await;
        let error = match response {
            Ok(response) if response.success => return Ok(()),
            Ok(response) => from_refusal(member, "DeletePipeline", &response.error),
            Err(error) => error,
        };
        match error {
            RouterError::NotFound { .. } => Ok(()),
            error => Err(error),
        }
    }

    async fn get_on(
        &self,
        member: &str,
        pipeline_id: &str,
    ) -> Result<Option<GetPipelineResponse>, RouterError> {
        let request = GetPipelineRequest { pipeline_id: pipeline_id.to_string() };
        let response = self
            .unary(member, "GetPipeline", |channel, timeout| async move {
                RouterAdminClient::new(channel).get_pipeline(with_deadline(request, timeout)).await
            })
            .await;
        match response {
            Ok(response) if response.found => Ok(Some(response)),
            Ok(_) | Err(RouterError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn set_enabled_on(
        &self,
        member: &str,
        pipeline_id: &str,
        enabled: bool,
    ) -> Result<(), RouterError> {
        let pipeline_id = pipeline_id.to_string();
        let (success, error, method) = if enabled {
            let request = EnablePipelineRequest { pipeline_id };
            let response = self
                .unary(member, "EnablePipeline", |channel, timeout| async move {
                    RouterAdminClient::new(channel).enable_pipeline(with_deadline(request, timeout)).await
                })
                .await?;
            (response.success, response.error, "EnablePipeline")
        } else {
            let request = DisablePipelineRequest { pipeline_id, drain: false };
            let response = self
                .unary(member, "DisablePipeline", |channel, timeout| async move {
                    RouterAdminClient::new(channel).disable_pipeline(with_deadline(request, timeout)).await
                })
                .await?;
            (response.success, response.error, "DisablePipeline")
        };
        if success { Ok(()) } else { Err(from_refusal(member, method, &error)) }
    }

    async fn register_on(
        &self,
        member: &str,
        request: RegisterRequest,
    ) -> Result<RegisterResponse, RouterError> {
        let response = self
            .unary(member, "Register", |channel, timeout| async move {
                ServiceRegistryClient::new(channel).register(with_deadline(request, timeout)).await
            })
            .await?;
        if response.success { Ok(response) } else { Err(from_refusal(member, "Register", "")) }
    }

    async fn deregister_on(&self, member: &str, service_id: &str) -> Result<(), RouterError> {
        let request = DeregisterRequest {
            service_id: service_id.to_string(),
            registration_id: String::new(),
            graceful: true,
            drain_timeout: None,
        };
        let response = self
            .unary(member, "Deregister", |channel, timeout| async move {
                ServiceRegistryClient::new(channel).deregister(with_deadline(request, timeout)).await
            })
            .await;
        match response {
            Ok(response) if response.success => Ok(()),
            Ok(_) => Err(from_refusal(member, "Deregister", "")),
            Err(RouterError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn list_services_on(
        &self,
        member: &str,
        type_filter: ServiceType,
    ) -> Result<Vec<RegisteredService>, RouterError> {
        let request = ListServicesRequest {
            type_filter: type_filter.into(),
            label_selector: HashMap::new(),
            include_unhealthy: true,
        };
        let response = self
            .unary(member, "ListServices", |channel, timeout| async move {
                ServiceRegistryClient::new(channel).list_services(with_deadline(request, timeout)).await
            })
            .await?;
        Ok(response.services)
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
}

/// A request carrying `grpc-timeout`, so the router can give up when we do.
fn with_deadline<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

/// The leader-cache key of a member set: order-independent.
fn members_key(members: &Members) -> String {
    let mut sorted: Vec<&str> = members.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.join(",")
}

/// Locks a cache; a panic elsewhere while holding it leaves a map that is still valid.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_key_ignores_order_and_duplicates() {
        let a = ["10.0.0.2:50051".to_string(), "10.0.0.1:50051".to_string()];
        let b = ["10.0.0.1:50051".to_string(), "10.0.0.2:50051".to_string(), "10.0.0.1:50051".to_string()];
        assert_eq!(members_key(&a), members_key(&b));
        assert_ne!(members_key(&a), members_key(&a[..1]));
    }

    #[test]
    fn default_options_are_bounded() {
        let options = ClientOptions::default();
        assert_eq!(options.call_timeout, Duration::from_secs(3));
        assert_eq!(options.connect_timeout, Duration::from_secs(1));
        assert!(options.max_attempts >= 2 && options.min_backoff > Duration::ZERO);
        assert!(options.max_backoff >= options.min_backoff);
    }

    #[tokio::test]
    async fn invalid_member_is_a_permanent_error_without_a_call() {
        let client = RouterClient::new(ClientOptions::default());
        let error = client.member_status("not a host:1").await.unwrap_err();
        assert!(matches!(error, RouterError::InvalidMember { .. }), "{error:?}");
        let error = client.create_pipeline(&[], PipelineConfig::default()).await.unwrap_err();
        assert_eq!(error, RouterError::NoMembers);
    }
}
