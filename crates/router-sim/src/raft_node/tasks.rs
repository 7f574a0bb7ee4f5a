//! What a node does besides answering: serve Raft, announce itself to its
//! peers, initialise the cluster when it is the one to, and (as leader)
//! carry out membership [`plan`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use openraft::{ChangeMembers, ServerState};
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_stream::wrappers::TcpListenerStream;

use super::Core;
use super::directory::{ANNOUNCE_EVERY, Announcement};
use super::membership::{Inputs, Step, plan};
use super::network::{self, Transport, wire::raft_transport_server::RaftTransportServer};
use super::status::View;

/// How long the node that initialises waits to hear whether a peer already holds a cluster.
const INITIALISE_AFTER: Duration = Duration::from_secs(1);
/// How long one membership change may take before the leader plans again.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` (reusable at once after a restart) and listens.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListenerStream> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(TcpListenerStream::new(socket.listen(1024)?))
}

pub fn serve_raft(core: Arc<Core>, addr: SocketAddr) -> std::io::Result<JoinHandle<()>> {
    let incoming = listen(addr)?;
    let transport = Transport { raft: core.raft.clone(), directory: core.directory.clone() };
    Ok(tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(RaftTransportServer::new(transport))
            .serve_with_incoming(incoming)
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "Raft transport stopped");
        }
    }))
}

fn ticker(every: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    ticker
}

/// Tells every peer and every member who this node is, every [`ANNOUNCE_EVERY`].
pub async fn announce(core: Arc<Core>) {
    let mut ticker = ticker(ANNOUNCE_EVERY);
    loop {
        ticker.tick().await;
        let announcement = Announcement {
            id: core.id,
            member: core.member.clone(),
            peers: core.peer_ids(),
            initialized: core.raft.is_initialized().await.unwrap_or(false),
        };
        let metrics = core.metrics();
        let members =
            metrics.membership_config.membership().nodes().map(|(id, member)| (*id, member.raft.clone()));
        let targets: BTreeSet<String> = core
            .peers
            .iter()
            .map(|(id, address)| (*id, address.clone()))
            .chain(members)
            .filter(|(id, _)| *id != core.id)
            .map(|(_, address)| address)
            .collect();
        for target in targets {
            let (clients, announcement) = (core.network.clients.clone(), announcement.clone());
            tokio::spawn(async move {
                if let Err(error) = network::announce(&clients, &target, &announcement).await {
                    tracing::debug!(%error, "announcement not delivered");
                }
            });
        }
    }
}

/// A node given no other peers: initialises its one-node cluster if it holds
/// no Raft state, and waits (bounded) until it leads, so that it answers as
/// the leader from its first call.
pub async fn lead_alone(core: &Core) {
    if !core.raft.is_initialized().await.unwrap_or(true) {
        let members = BTreeMap::from([(core.id, core.member.clone())]);
        if let Err(error) = core.raft.initialize(members).await {
            tracing::warn!(%error, "could not initialise the cluster");
        }
    }
    if let Err(error) = core.raft.wait(Some(CHANGE_TIMEOUT)).current_leader(core.id, "leading alone").await {
        tracing::warn!(%error, "not leading alone yet");
    }
}

/// Initialises a cluster of this node alone when it is the lowest id of its
/// `--peers`, holds no Raft state, and no peer says it belongs to a cluster
/// (a node given no other peers does so at once).
pub async fn initialise(core: Arc<Core>) {
    if core.peer_ids().first() != Some(&core.id) {
        return;
    }
    let alone = core.peer_ids().len() == 1;
    let started = Instant::now();
    let mut ticker = ticker(ANNOUNCE_EVERY);
    loop {
        ticker.tick().await;
        if core.raft.is_initialized().await.unwrap_or(true) {
            return;
        }
        let peer_in_cluster = {
            let directory = core.directory.lock().unwrap_or_else(PoisonError::into_inner);
            directory.live(Instant::now()).values().any(|heard| heard.initialized && heard.id != core.id)
        };
        if peer_in_cluster {
            tracing::info!("a peer already belongs to a cluster: waiting to be added");
            return;
        }
        if alone || started.elapsed() >= INITIALISE_AFTER {
            let members = BTreeMap::from([(core.id, core.member.clone())]);
            match core.raft.initialize(members).await {
                Ok(()) => tracing::info!(node = core.id, "initialised a cluster of this node"),
                Err(error) => tracing::warn!(%error, "could not initialise the cluster"),
            }
            return;
        }
    }
}

/// As leader with a quorum, takes one membership step at a time.
pub async fn manage_membership(core: Arc<Core>) {
    let mut ticker = ticker(ANNOUNCE_EVERY * 2);
    loop {
        ticker.tick().await;
        let metrics = core.metrics();
        let live = core.live();
        let view = View { metrics: &metrics, live: &live, now: std::time::SystemTime::now() };
        if metrics.state != ServerState::Leader || view.leader() != Some(core.id) {
            continue;
        }
        let step = {
            let directory = core.directory.lock().unwrap_or_else(PoisonError::into_inner);
            let mut heard = directory.live(Instant::now());
            heard.remove(&core.id);
            plan(&Inputs {
                own: core.id,
                own_peers: &core.peer_ids(),
                live: &heard,
                membership: metrics.membership_config.membership(),
                matched: &metrics.replication.clone().unwrap_or_default(),
                last_log_index: metrics.last_log_index.unwrap_or(0),
            })
        };
        if let Some(step) = step {
            tracing::info!(?step, "membership step");
            match tokio::time::timeout(CHANGE_TIMEOUT, take(&core, step)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "membership step failed"),
                Err(_) => tracing::warn!("membership step did not commit in time"),
            }
        }
    }
}

async fn take(core: &Core, step: Step) -> Result<(), String> {
    let raft = &core.raft;
    let changed = match step {
        Step::Settle(voters) => raft.change_membership(ChangeMembers::ReplaceAllVoters(voters), false).await,
        Step::RemoveVoters(ids) => raft.change_membership(ChangeMembers::RemoveVoters(ids), false).await,
        Step::RemoveLearners(ids) => raft.change_membership(ChangeMembers::RemoveNodes(ids), false).await,
        Step::Update(id, member) => {
            raft.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, member)])), true).await
        }
        Step::AddLearner(id, member) => raft.add_learner(id, member, false).await,
        Step::Promote(id) => {
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await
        }
    };
    changed.map(|_| ()).map_err(|error| error.to_string())
}
