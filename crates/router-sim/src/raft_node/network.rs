//! Raft between router nodes over their `--raft-addr` port: a small gRPC
//! service (`proto/sim_raft.proto`) carrying openraft's messages as JSON.
//! Peers are dialled by the address their `--peers` entry gives, a DNS name
//! in a pod that may not resolve yet: the name is resolved at each connect,
//! and a failed connect is retried by openraft (with backoff) or by the next
//! announcement.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use super::directory::{Announcement, Directory};
use super::types::{Member, Raft, TypeConfig};

/// The generated transport (`conveyor_sim.raft`).
pub mod wire {
    tonic::include_proto!("conveyor_sim.raft");
}

use wire::Json;
use wire::raft_transport_client::RaftTransportClient;
use wire::raft_transport_server::RaftTransport;

/// How long a connect to a peer may take (an address that vanished with its pod never answers).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Lazily connected clients by address, shared by openraft's connections and the announcer.
#[derive(Clone, Debug, Default)]
pub struct Clients {
    by_address: Arc<Mutex<HashMap<String, RaftTransportClient<Channel>>>>,
}

impl Clients {
    /// A client of `address` (`host:port`); `None` when it is no address at all.
    pub fn get(&self, address: &str) -> Option<RaftTransportClient<Channel>> {
        let mut clients = self.by_address.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(address) {
            return Some(client.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}")).ok()?;
        let channel = endpoint.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true).connect_lazy();
        let client = RaftTransportClient::new(channel);
        clients.insert(address.to_owned(), client.clone());
        Some(client)
    }
}

fn encode<T: Serialize>(value: &T) -> Json {
    Json { body: serde_json::to_vec(value).unwrap_or_default() }
}

fn decode<T: DeserializeOwned>(json: &Json) -> Result<T, serde_json::Error> {
    serde_json::from_slice(&json.body)
}

/// Why a call to a peer failed before it answered.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{address} is not a host:port address")]
    BadAddress { address: String },
    #[error("{address}: {status}")]
    Status { address: String, status: Status },
    #[error("{address} answered what is not a Raft message: {source}")]
    Garbled { address: String, source: serde_json::Error },
}

/// What openraft sees of one peer.
pub struct Peer {
    target: u64,
    address: String,
    clients: Clients,
}

/// The kinds of call the transport carries.
#[derive(Clone, Copy)]
enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
    Announce,
}

/// One call: the request as JSON, the answer (an openraft `Result`) decoded.
async fn call<Q: Serialize, A: DeserializeOwned>(
    clients: &Clients,
    address: &str,
    method: Method,
    message: &Q,
    timeout: Duration,
) -> Result<A, CallError> {
    let mut client =
        clients.get(address).ok_or_else(|| CallError::BadAddress { address: address.to_owned() })?;
    let mut request = Request::new(encode(message));
    request.set_timeout(timeout);
    let answered = match method {
        Method::AppendEntries => client.append_entries(request).await,
        Method::Vote => client.vote(request).await,
        Method::InstallSnapshot => client.install_snapshot(request).await,
        Method::Announce => client.announce(request).await,
    };
    let json = answered.map_err(|status| CallError::Status { address: address.to_owned(), status })?;
    decode(json.get_ref()).map_err(|source| CallError::Garbled { address: address.to_owned(), source })
}

impl Peer {
    async fn rpc<Q, A, E>(
        &self,
        method: Method,
        message: &Q,
        option: &RPCOption,
    ) -> Result<A, RPCError<u64, Member, RaftError<u64, E>>>
    where
        Q: Serialize,
        A: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<A, RaftError<u64, E>> =
            call(&self.clients, &self.address, method, message, option.hard_ttl()).await.map_err(
                |error| match error {
                    CallError::Garbled { .. } => RPCError::Network(NetworkError::new(&error)),
                    _ => RPCError::Unreachable(Unreachable::new(&error)),
                },
            )?;
        answer.map_err(|error| RPCError::RemoteError(RemoteError::new(self.target, error)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        self.rpc(Method::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, Member, RaftError<u64, InstallSnapshotError>>>
    {
        self.rpc(Method::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        self.rpc(Method::Vote, &rpc, &option).await
    }
}

/// openraft's connection factory: one [`Peer`] per member, on the shared clients.
#[derive(Clone, Debug, Default)]
pub struct Network {
    pub clients: Clients,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &Member) -> Peer {
        Peer { target, address: node.raft.clone(), clients: self.clients.clone() }
    }
}

/// Tells `address` who this node is; the peer answers nothing of note.
pub async fn announce(
    clients: &Clients,
    address: &str,
    announcement: &Announcement,
) -> Result<(), CallError> {
    call(clients, address, Method::Announce, announcement, CONNECT_TIMEOUT).await
}

/// The server side: hands each message to openraft, or records an announcement.
pub struct Transport {
    pub raft: Raft,
    pub directory: Arc<Mutex<Directory>>,
}

fn parse<T: DeserializeOwned>(request: &Request<Json>) -> Result<T, Status> {
    decode(request.get_ref())
        .map_err(|error| Status::invalid_argument(format!("not a Raft message: {error}")))
}

#[tonic::async_trait]
impl RaftTransport for Transport {
    async fn append_entries(&self, request: Request<Json>) -> Result<Response<Json>, Status> {
        let answer = self.raft.append_entries(parse(&request)?).await;
        Ok(Response::new(encode(&answer)))
    }

    async fn vote(&self, request: Request<Json>) -> Result<Response<Json>, Status> {
        let answer = self.raft.vote(parse(&request)?).await;
        Ok(Response::new(encode(&answer)))
    }

    async fn install_snapshot(&self, request: Request<Json>) -> Result<Response<Json>, Status> {
        let answer = self.raft.install_snapshot(parse(&request)?).await;
        Ok(Response::new(encode(&answer)))
    }

    async fn announce(&self, request: Request<Json>) -> Result<Response<Json>, Status> {
        let announcement: Announcement = parse(&request)?;
        self.directory.lock().unwrap_or_else(PoisonError::into_inner).heard(announcement, Instant::now());
        Ok(Response::new(encode(&())))
    }
}
