//! [`SimCluster`]: the handle tests and the demo binary use to run a simulated
//! router cluster and to inject failures; [`Shared`]: the state its nodes share.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use conveyor_router_contract::proto::common::ServiceType;
use conveyor_router_contract::proto::registry::RegisteredService;
use conveyor_router_contract::proto::router::{PipelineConfig, PipelineStatus, StageStatus};

use super::log::Mutation;
use super::member::{Member, Partition};
use super::node::NodeServer;
use super::state::SimState;
use super::{RegistryMode, SimOptions};

/// What a call to a node meets before it is served.
enum Gate {
    /// Served, after the node's extra delay if it is slowed.
    Pass(Option<Duration>),
    /// The node is partitioned in [`Partition::Hang`]: wait until the mode
    /// changes (the caller's deadline ends it first).
    Hang,
    /// Failed at once as UNAVAILABLE, with this message.
    Unavailable(&'static str),
}

/// State shared by the nodes, the handle and the election task.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<SimState>,
    /// Bumped on every change of membership or node health; wakes the election
    /// task and calls hanging on a partitioned node.
    changes: watch::Sender<u64>,
    servers: Mutex<HashMap<u64, NodeServer>>,
    options: SimOptions,
}

impl Shared {
    pub fn state(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn servers(&self) -> MutexGuard<'_, HashMap<u64, NodeServer>> {
        self.servers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a change to the Raft view, steps a leader down if it lost its
    /// standing, and tells the election task and hanging calls.
    fn change<T>(&self, apply: impl FnOnce(&mut SimState) -> T) -> T {
        let result = {
            let mut state = self.state();
            let result = apply(&mut state);
            if state.raft.check_leader() {
                tracing::info!(term = state.raft.term, "simulated leader stepped down");
            }
            result
        };
        self.changes.send_modify(|version| *version += 1);
        result
    }

    /// Counts the call, then holds it while the node is partitioned in
    /// [`Partition::Hang`] and delays it while the node is slowed. A stopped or
    /// removed node, or one partitioned in [`Partition::Refuse`], fails it as
    /// UNAVAILABLE; one partitioned in [`Partition::PeersOnly`] serves it.
    pub async fn gate(&self, node: u64, method: &'static str) -> Result<(), tonic::Status> {
        let mut changes = self.changes.subscribe();
        *self.state().calls.entry(method).or_default() += 1;
        loop {
            let gate = match self.state().raft.members.get_mut(&node) {
                Some(member) if !member.up => Gate::Unavailable("is not serving"),
                Some(member) => match member.isolation.map(|isolation| isolation.mode) {
                    Some(Partition::Hang) => Gate::Hang,
                    Some(Partition::Refuse) => Gate::Unavailable("is partitioned: connection refused"),
                    Some(Partition::PeersOnly) | None => {
                        let late =
                            if method == "GetClusterStatus" { member.late_health_poll.take() } else { None };
                        Gate::Pass(late.max(member.slow))
                    }
                },
                None => Gate::Unavailable("is not serving"),
            };
            match gate {
                Gate::Pass(delay) => {
                    if let Some(delay) = delay {
                        tokio::time::sleep(delay).await;
                    }
                    return Ok(());
                }
                Gate::Unavailable(why) => {
                    return Err(tonic::Status::unavailable(format!("node {node} {why}")));
                }
                Gate::Hang => {
                    if changes.changed().await.is_err() {
                        return Err(tonic::Status::unavailable(format!("node {node} is shutting down")));
                    }
                }
            }
        }
    }

    /// In leased mode, runs `apply` on the state for `node`'s own registry;
    /// `None` in replicated mode.
    pub fn leased<T>(
        &self,
        node: u64,
        apply: impl FnOnce(&mut SimState, u64) -> Result<T, String>,
    ) -> Option<Result<T, String>> {
        let mut state = self.state();
        state.lease_ttl?;
        Some(apply(&mut state, node))
    }

    /// Fails a call in flight (a heartbeat stream) once `node` stopped or
    /// is partitioned from its clients.
    pub fn still_serving(&self, node: u64) -> Result<(), tonic::Status> {
        let state = self.state();
        match state.raft.members.get(&node) {
            Some(member) if member.up => match member.isolation.map(|isolation| isolation.mode) {
                Some(Partition::Hang | Partition::Refuse) => {
                    Err(tonic::Status::unavailable(format!("node {node} is partitioned")))
                }
                Some(Partition::PeersOnly) | None => Ok(()),
            },
            _ => Err(tonic::Status::unavailable(format!("node {node} is not serving"))),
        }
    }

    /// Remembers the trace context a call arrived with (the latest 10,000).
    pub fn record_traceparent(&self, method: &str, traceparent: Option<&str>) {
        let mut state = self.state();
        if state.traceparents.len() >= 10_000 {
            state.traceparents.pop_front();
        }
        state.traceparents.push_back((method.to_owned(), traceparent.unwrap_or_default().to_owned()));
    }

    /// Runs a write on the shared state. If the write was accepted and a crash was
    /// requested, the node goes down before answering: the write is committed but
    /// the caller never hears so (the lost-response case a client must survive).
    pub async fn write<T>(
        &self,
        node: u64,
        write: impl FnOnce(&mut SimState) -> Result<T, String>,
    ) -> Result<Result<T, String>, tonic::Status> {
        let (result, crash) = {
            let mut state = self.state();
            let result = write(&mut state);
            let crash = result.is_ok() && std::mem::take(&mut state.crash_after_next_write);
            (result, crash)
        };
        if crash {
            tracing::info!(node, "simulated node crashes after committing a write, before answering");
            self.stop(node).await;
            return Err(tonic::Status::unavailable(format!("node {node} crashed")));
        }
        Ok(result)
    }

    async fn stop(&self, node: u64) {
        self.change(|state| {
            if let Some(member) = state.raft.members.get_mut(&node) {
                member.up = false;
            }
            // A leased registry lives in the node's memory only.
            state.leased.remove(&node);
        });
        let server = self.servers().remove(&node);
        if let Some(server) = server {
            server.stop().await;
        }
    }
}

/// A simulated router cluster: each node serves `RouterAdmin` and `ServiceRegistry`
/// on its own address and answers from its own belief in the simulated Raft view
/// (see [`super::raft`]). Dropping the handle stops every node.
#[derive(Debug)]
pub struct SimCluster {
    shared: Arc<Shared>,
    elections: JoinHandle<()>,
    /// Removes lapsed registrations in leased mode.
    cleanup: Option<JoinHandle<()>>,
}

impl SimCluster {
    /// Starts one node per `(raft id, address)` (port 0 binds any free port; see
    /// [`SimCluster::addr`]) and elects the lowest id leader of term 1.
    pub async fn start(nodes: Vec<(u64, SocketAddr)>, options: SimOptions) -> io::Result<SimCluster> {
        let (changes, _) = watch::channel(0);
        let lease_ttl = match options.registry {
            RegistryMode::Replicated => None,
            RegistryMode::Leased { ttl } => Some(ttl),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(SimState { lease_ttl, ..SimState::default() }),
            changes,
            servers: Mutex::default(),
            options: options.clone(),
        });
        for (id, addr) in nodes {
            start_member(&shared, id, addr, Member::new)?;
        }
        if let Some(leader) = shared.change(|state| state.raft.elect()) {
            tracing::info!(leader, term = 1, "simulated cluster elected its first leader");
        }
        let elections = tokio::spawn(run_elections(shared.clone()));
        let cleanup = lease_ttl.map(|ttl| tokio::spawn(clean_up_lapsed_leases(shared.clone(), ttl)));
        Ok(SimCluster { shared, elections, cleanup })
    }

    /// A new voter joins the membership (and counts for quorum from now on).
    pub async fn add_node(&self, id: u64, addr: SocketAddr) -> io::Result<()> {
        start_member(&self.shared, id, addr, Member::new)?;
        self.shared.change(|_| ());
        Ok(())
    }

    /// A new learner joins the membership: it serves, replicates and reports
    /// `NODE_ROLE_LEARNER`, but never votes, never leads and does not count for
    /// quorum.
    pub async fn add_learner(&self, id: u64, addr: SocketAddr) -> io::Result<()> {
        start_member(&self.shared, id, addr, Member::learner)?;
        self.shared.change(|_| ());
        Ok(())
    }

    /// Makes a learner a voter (counting for quorum from now on). False if `id`
    /// is not a learner.
    pub fn promote_learner(&self, id: u64) -> bool {
        self.shared.change(|state| state.raft.promote(id))
    }

    /// A member leaves the membership; its server stops.
    pub async fn remove_node(&self, id: u64) {
        self.shared.change(|state| state.raft.members.remove(&id));
        let server = self.shared.servers().remove(&id);
        if let Some(server) = server {
            server.stop().await;
        }
    }

    /// Stops a node: its listener closes (connection refused) and its open
    /// connections are cut; it counts as down for quorum.
    pub async fn stop_node(&self, id: u64) {
        self.shared.stop(id).await;
    }

    /// Restarts a stopped node on the same address.
    pub async fn restart_node(&self, id: u64) -> io::Result<()> {
        let addr =
            self.addr(id).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no node {id}")))?;
        if self.shared.servers().contains_key(&id) {
            return Ok(());
        }
        let (server, _) = NodeServer::start(id, addr, self.shared.clone())?;
        self.shared.servers().insert(id, server);
        self.shared.change(|state| {
            if let Some(member) = state.raft.members.get_mut(&id) {
                member.up = true;
            }
        });
        Ok(())
    }

    /// Partitions a node in [`Partition::Hang`]: calls to it hang until the
    /// caller's deadline, and it is out of quorum.
    pub fn partition_node(&self, id: u64) {
        self.partition_node_with(id, Partition::Hang);
    }

    /// Cuts a node off from its peers: it is out of quorum and keeps the term,
    /// leader and commit index it believes now (an isolated leader still claims
    /// its old term, but refuses writes for want of quorum). `mode` says what its
    /// clients meet; a later call only changes the mode.
    pub fn partition_node_with(&self, id: u64, mode: Partition) {
        self.shared.change(|state| state.raft.partition(id, mode));
    }

    /// Ends a node's partition, whatever its mode: it catches up with the
    /// cluster's term, leader and commit index, and calls still hanging on it are
    /// then served.
    pub fn heal_node(&self, id: u64) {
        self.shared.change(|state| state.raft.heal(id));
    }

    /// Delays every call to a node by `delay` (zero: no delay).
    pub fn slow_node(&self, id: u64, delay: Duration) {
        self.shared.change(|state| {
            if let Some(member) = state.raft.members.get_mut(&id) {
                member.slow = (!delay.is_zero()).then_some(delay);
            }
        });
    }

    /// The next `GetClusterStatus` to a node is answered `delay` late; later
    /// ones are served as before.
    pub fn answer_next_health_poll_late(&self, id: u64, delay: Duration) {
        if let Some(member) = self.shared.state().raft.members.get_mut(&id) {
            member.late_health_poll = Some(delay);
        }
    }

    /// The whole cluster restarted with empty state, as after every node lost
    /// its disk: every node stops, the pipelines and services are forgotten,
    /// then every node starts again on its address and a leader is elected.
    /// The mutation log and the Raft indices go on (what was accepted before
    /// stays in the log).
    pub async fn restart_empty(&self) -> io::Result<()> {
        let ids: Vec<u64> = self.shared.state().raft.members.keys().copied().collect();
        for &id in &ids {
            self.stop_node(id).await;
        }
        {
            let mut state = self.shared.state();
            state.catalog.pipelines.clear();
            state.catalog.services.clear();
            state.leased.clear();
        }
        for id in ids {
            self.restart_node(id).await?;
        }
        Ok(())
    }

    /// Makes every `RouterAdmin` method answer UNIMPLEMENTED (`ServiceRegistry` keeps working).
    pub fn set_router_admin_unimplemented(&self, on: bool) {
        self.shared.state().admin_unimplemented = on;
    }

    /// The node that accepts the next write commits it and then crashes before
    /// answering (stopped, as by [`SimCluster::stop_node`]).
    pub fn crash_after_next_write(&self) {
        self.shared.state().crash_after_next_write = true;
    }

    /// Hands leadership to a reachable member for a new term. False if it cannot lead.
    pub fn transfer_leadership(&self, id: u64) -> bool {
        self.shared.change(|state| state.raft.transfer_leadership(id))
    }

    /// What a member believes: `(term, leader_id)`, leader 0 when it knows none.
    /// A partitioned member's belief is the one it was cut off with; `None` if
    /// `id` is not a member.
    pub fn view_of(&self, id: u64) -> Option<(u64, u64)> {
        let state = self.shared.state();
        state.raft.members.contains_key(&id).then(|| {
            let belief = state.raft.belief_of(id);
            (belief.term, belief.leader.unwrap_or(0))
        })
    }

    /// The current leader (the majority's), if any.
    pub fn leader(&self) -> Option<u64> {
        self.shared.state().raft.leader
    }

    /// The current term (the majority's).
    pub fn term(&self) -> u64 {
        self.shared.state().raft.term
    }

    /// The commit index (advances on every accepted write).
    pub fn commit_index(&self) -> u64 {
        self.shared.state().raft.commit_index
    }

    /// The address a node listens on.
    pub fn addr(&self, id: u64) -> Option<SocketAddr> {
        self.shared.state().raft.members.get(&id).map(|member| member.addr)
    }

    /// Every member's gRPC endpoint (`host:port`), in id order.
    pub fn endpoints(&self) -> Vec<String> {
        self.shared.state().raft.members.values().map(|member| member.addr.to_string()).collect()
    }

    /// Every mutating call accepted so far, in commit order.
    pub fn mutation_log(&self) -> Vec<Mutation> {
        self.shared.state().log.clone()
    }

    /// The `traceparent` each of the latest calls of `method` carried ("" when none), oldest first.
    pub fn traceparents(&self, method: &str) -> Vec<String> {
        let state = self.shared.state();
        state.traceparents.iter().filter(|(m, _)| m == method).map(|(_, value)| value.clone()).collect()
    }

    /// How many calls of every method the nodes received (served or not).
    pub fn total_calls(&self) -> u64 {
        self.shared.state().calls.values().sum()
    }

    /// How many calls of `method` the nodes received (served or not).
    pub fn call_count(&self, method: &str) -> u64 {
        self.shared.state().calls.get(method).copied().unwrap_or(0)
    }

    /// How many calls of each method the nodes received (served or not).
    pub fn call_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.shared.state().calls.iter().map(|(method, n)| ((*method).to_owned(), *n)).collect()
    }

    /// A stored pipeline's config and status.
    pub fn pipeline(&self, id: &str) -> Option<(PipelineConfig, PipelineStatus)> {
        self.shared
            .state()
            .catalog
            .pipelines
            .get(id)
            .map(|stored| (stored.config.clone(), stored.status.clone()))
    }

    /// The live registrations node `id` holds in leased mode (empty otherwise).
    pub fn services_on(&self, id: u64) -> Vec<RegisteredService> {
        let state = self.shared.state();
        let registry = state.leased.get(&id);
        let all = Default::default();
        registry.map(|r| r.list(Instant::now(), ServiceType::Unspecified, &all)).unwrap_or_default()
    }

    /// Heartbeat messages received by every node so far (a stream carries many).
    pub fn heartbeats(&self) -> u64 {
        self.shared.state().heartbeats
    }

    /// Every registered service (of the replicated registry).
    pub fn services(&self) -> Vec<RegisteredService> {
        self.shared.state().catalog.services.values().map(|(service, _)| service.clone()).collect()
    }

    /// A pipeline's stage figures as `GetPipeline` reports them now.
    pub fn stage_figures(&self, id: &str) -> std::collections::HashMap<String, StageStatus> {
        let answer = self.shared.state().get_pipeline(id, std::time::SystemTime::now());
        answer.status.map(|status| status.stage_statuses).unwrap_or_default()
    }

    /// Sets records (and errors) flowing through every stage of every
    /// pipeline from now on: `GetPipeline`'s figures advance at these rates.
    pub fn set_flow(&self, rates: crate::Rates) {
        self.shared.state().set_flow(rates, std::time::SystemTime::now());
    }

    /// Sets the statistics `GetPipeline` reports for one stage. False if the pipeline is unknown.
    pub fn set_stage_status(&self, pipeline_id: &str, stage_id: &str, status: StageStatus) -> bool {
        self.shared.state().set_stage_status(pipeline_id, stage_id, status)
    }

    /// Stops every node and the election task.
    pub async fn shutdown(self) {
        self.elections.abort();
        if let Some(cleanup) = &self.cleanup {
            cleanup.abort();
        }
        let servers: Vec<NodeServer> = self.shared.servers().drain().map(|(_, server)| server).collect();
        for server in servers {
            server.stop().await;
        }
    }
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        self.elections.abort();
        if let Some(cleanup) = &self.cleanup {
            cleanup.abort();
        }
        // Without an await the listeners close when their tasks are next polled.
        for (_, server) in self.shared.servers().drain() {
            server.abort();
        }
    }
}

/// Starts node `id`'s server and adds it as `member(address it listens on)`.
fn start_member(
    shared: &Arc<Shared>,
    id: u64,
    addr: SocketAddr,
    member: fn(SocketAddr) -> Member,
) -> io::Result<()> {
    if shared.state().raft.members.contains_key(&id) {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("node {id} is already a member")));
    }
    let (server, local) = NodeServer::start(id, addr, shared.clone())?;
    shared.servers().insert(id, server);
    shared.state().raft.members.insert(id, member(local));
    Ok(())
}

/// Removes lapsed registrations from every node's leased registry, a
/// quarter of a lease after another (as the public router's cleanup does;
/// lookups skip them before that).
async fn clean_up_lapsed_leases(shared: Arc<Shared>, ttl: Duration) {
    let mut ticks = tokio::time::interval(ttl / 4);
    loop {
        ticks.tick().await;
        let now = Instant::now();
        let mut state = shared.state();
        for (node, registry) in &mut state.leased {
            for service_id in registry.cleanup(now) {
                tracing::info!(node, %service_id, "lease lapsed; registration removed");
            }
        }
    }
}

/// Elects a new leader `election_delay` after the cluster finds itself without
/// one while holding quorum. Woken by every change, never polling.
async fn run_elections(shared: Arc<Shared>) {
    let mut changes = shared.changes.subscribe();
    loop {
        if shared.state().raft.needs_election() {
            tokio::time::sleep(shared.options.election_delay).await;
            let elected = shared.change(|state| state.raft.elect().map(|leader| (leader, state.raft.term)));
            if let Some((leader, term)) = elected {
                tracing::info!(leader, term, "simulated cluster elected a leader");
            }
            continue;
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}
