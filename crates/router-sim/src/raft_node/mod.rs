//! One router node per process, a real Raft member ([openraft]): the mode of
//! `conveyor-router-sim` launched with the router's command line
//! ([`launch`](super::launch)). Nodes started with each other in their
//! `--peers` form one cluster over the network; `RouterAdmin` and
//! `ServiceRegistry` are served from the replicated state machine on
//! `--listen-addr`, Raft on `--raft-addr`.
//!
//! - Formation: the lowest id of a node's `--peers` (itself included), holding
//!   no Raft state and hearing of no peer that does, initialises a cluster of
//!   itself; the others are added by the leader as they announce themselves.
//! - Membership follows the `--peers` lists ([`membership`]).
//! - Writes go to the leader; others refuse them as the simulated cluster does
//!   ("not leader; leader is 2 at <client address>", "no quorum: ...").
//! - Vote, log and snapshot live in `--data-dir` ([`storage`]), so a process
//!   restarted in place rejoins with its log.

mod api;
mod directory;
mod machine;
mod membership;
mod network;
mod status;
mod storage;
mod tasks;
mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Instant, SystemTime};

use tokio::task::JoinHandle;

pub use storage::OpenError;

use self::directory::Directory;
use self::machine::Replicated;
use self::network::Network;
use self::types::{Member, Raft};
use conveyor_router_contract::config::RouterConfig;

/// How a node is started: the router's command line, read.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: u64,
    /// Where clients reach this node (`--listen-addr`, or the Raft address's IP
    /// on its port when it listens on every interface).
    pub api: String,
    pub listen: SocketAddr,
    pub raft: SocketAddr,
    /// `--peers`, this node's own entry included when listed.
    pub peers: BTreeMap<u64, String>,
    pub data_dir: PathBuf,
    pub settings: RouterConfig,
    /// Serve `RouterAdmin` (else it answers UNIMPLEMENTED, as the public router does).
    pub router_admin: bool,
    /// Keep registrations in this node's own leased registry, with this
    /// lease, as the public router does (else in the replicated state).
    pub lease_ttl: Option<std::time::Duration>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Storage(#[from] OpenError),
    #[error("openraft refused the configuration: {0}")]
    Config(#[from] Box<openraft::ConfigError>),
    #[error("openraft failed to start: {0}")]
    Raft(#[from] openraft::error::Fatal<u64>),
    #[error("listening on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// What the services and tasks of one node share.
pub(crate) struct Core {
    pub id: u64,
    pub member: Member,
    pub peers: BTreeMap<u64, String>,
    pub raft: Raft,
    pub state: Arc<RwLock<Replicated>>,
    pub directory: Arc<Mutex<Directory>>,
    pub network: Network,
    pub router_admin: bool,
    pub leased: Option<Mutex<crate::leases::LeasedRegistry>>,
}

impl Core {
    /// The ids of `--peers`, this node included.
    pub fn peer_ids(&self) -> BTreeSet<u64> {
        self.peers.keys().copied().chain([self.id]).collect()
    }

    /// The other nodes heard from lately, with when (as wall-clock time).
    pub fn live(&self) -> BTreeMap<u64, SystemTime> {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let directory = self.directory.lock().unwrap_or_else(PoisonError::into_inner);
        directory
            .live(now)
            .keys()
            .filter(|id| **id != self.id)
            .filter_map(|id| {
                let heard = directory.last_heard(*id)?;
                Some((*id, wall.checked_sub(now.saturating_duration_since(heard))?))
            })
            .collect()
    }

    pub fn metrics(&self) -> types::Metrics {
        self.raft.metrics().borrow().clone()
    }
}

/// Removes lapsed registrations from the leased registry a quarter of a lease apart.
async fn clean_up_lapsed_leases(core: Arc<Core>, ttl: std::time::Duration) {
    let mut ticks = tokio::time::interval(ttl / 4);
    loop {
        ticks.tick().await;
        if let Some(registry) = &core.leased {
            let lapsed = registry.lock().unwrap_or_else(PoisonError::into_inner).cleanup(Instant::now());
            for service_id in lapsed {
                tracing::info!(%service_id, "lease lapsed; registration removed");
            }
        }
    }
}

/// A running node.
pub struct RaftNode {
    core: Arc<Core>,
    tasks: Vec<JoinHandle<()>>,
}

fn openraft_config(settings: &RouterConfig) -> Result<openraft::Config, Box<openraft::ConfigError>> {
    let cluster = &settings.cluster;
    openraft::Config {
        cluster_name: "conveyor-router-sim".to_owned(),
        election_timeout_min: cluster.election_timeout_min_ms,
        election_timeout_max: cluster.election_timeout_max_ms,
        heartbeat_interval: cluster.heartbeat_interval_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1000),
        ..openraft::Config::default()
    }
    .validate()
    .map_err(Box::new)
}

impl RaftNode {
    /// Opens the data directory, starts Raft and serves both ports.
    pub async fn start(config: NodeConfig) -> Result<RaftNode, StartError> {
        let log = storage::LogStore::open(&config.data_dir, config.id)?;
        let machine = storage::StateMachine::open(&config.data_dir, config.id)?;
        let state = machine.state();
        let network = Network::default();
        let settings = Arc::new(openraft_config(&config.settings)?);
        let raft = Raft::new(config.id, settings, network.clone(), log, machine).await?;
        let own_raft = config.peers.get(&config.id).cloned().unwrap_or_else(|| config.raft.to_string());
        let core = Arc::new(Core {
            id: config.id,
            member: Member { raft: own_raft, api: config.api.clone() },
            peers: config.peers.clone(),
            raft,
            state,
            directory: Arc::default(),
            network,
            router_admin: config.router_admin,
            leased: config.lease_ttl.map(|ttl| Mutex::new(crate::leases::LeasedRegistry::new(ttl))),
        });
        if core.peer_ids().len() == 1 {
            tasks::lead_alone(&core).await;
        }
        let raft_server = tasks::serve_raft(core.clone(), config.raft)
            .map_err(|source| StartError::Listen { addr: config.raft, source })?;
        let api_server = api::serve(core.clone(), config.listen)
            .map_err(|source| StartError::Listen { addr: config.listen, source })?;
        let mut tasks = vec![
            raft_server,
            api_server,
            tokio::spawn(tasks::announce(core.clone())),
            tokio::spawn(tasks::initialise(core.clone())),
            tokio::spawn(tasks::manage_membership(core.clone())),
        ];
        if let Some(ttl) = config.lease_ttl {
            tasks.push(tokio::spawn(clean_up_lapsed_leases(core.clone(), ttl)));
        }
        Ok(RaftNode { core, tasks })
    }

    pub fn id(&self) -> u64 {
        self.core.id
    }

    /// Stops serving and stops Raft.
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Err(error) = self.core.raft.shutdown().await {
            tracing::warn!(%error, "Raft did not stop cleanly");
        }
    }
}
