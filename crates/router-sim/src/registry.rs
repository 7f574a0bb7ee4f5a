//! The simulated `ServiceRegistry` service of one node (Register, Deregister,
//! ListServices). Writes follow the Raft view like pipeline writes, but the
//! registry's responses have no error field, so a refusal is a gRPC status:
//! UNAVAILABLE "not leader; leader is 2 at ..." or "no quorum: ...", and
//! NOT_FOUND for deregistering an unknown service. Reads are served by any node.
//! Not affected by the RouterAdmin UNIMPLEMENTED switch. `Heartbeat` answers
//! UNIMPLEMENTED: a replicated registry has no leases.
//!
//! In [`RegistryMode::Leased`](crate::RegistryMode::Leased) every method is
//! served from the node's own leased registry ([`super::leases`]), by any
//! node, without Raft; `Heartbeat` renews leases, one answer per request in
//! order (`acknowledged=false` for a service the node does not hold), and the
//! stream is cut when the node stops or is partitioned.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt, future};
use tonic::{Request, Response, Status, Streaming};

use conveyor_router_contract::proto::registry::service_registry_server::ServiceRegistry;
use conveyor_router_contract::proto::registry::{
    DeregisterRequest, DeregisterResponse, HeartbeatRequest, HeartbeatResponse, ListServicesRequest,
    ListServicesResponse, RegisterRequest, RegisterResponse,
};

use super::cluster::Shared;

/// `ServiceRegistry` as served by simulated node `node`.
#[derive(Debug)]
pub(crate) struct RegistryService {
    node: u64,
    shared: Arc<Shared>,
}

impl RegistryService {
    pub fn new(node: u64, shared: Arc<Shared>) -> Self {
        Self { node, shared }
    }
}

/// A refusal message as the status a registry answers.
pub(crate) fn refusal_status(message: String) -> Status {
    if message.starts_with("invalid request") {
        Status::invalid_argument(message)
    } else {
        Status::unavailable(message)
    }
}

type HeartbeatAnswers = Pin<Box<dyn Stream<Item = Result<HeartbeatResponse, Status>> + Send>>;

/// The answer to one heartbeat from `node`'s leased registry.
fn renew(shared: &Shared, node: u64, request: &HeartbeatRequest) -> Result<HeartbeatResponse, Status> {
    shared.still_serving(node)?;
    let mut state = shared.state();
    state.heartbeats += 1;
    let registry = state.leased_registry(node).ok_or_else(|| Status::internal("no leased registry"))?;
    let renewed = registry.heartbeat(&request.service_id, Instant::now());
    Ok(HeartbeatResponse {
        acknowledged: renewed.is_some(),
        next_heartbeat_deadline: renewed.map(|ttl| prost_types::Duration::try_from(ttl).unwrap_or_default()),
        commands: Vec::new(),
    })
}

#[tonic::async_trait]
impl ServiceRegistry for RegistryService {
    type HeartbeatStream = HeartbeatAnswers;

    async fn heartbeat(
        &self,
        request: Request<Streaming<HeartbeatRequest>>,
    ) -> Result<Response<HeartbeatAnswers>, Status> {
        self.shared.gate(self.node, "Heartbeat").await?;
        if self.shared.state().lease_ttl.is_none() {
            return Err(Status::unimplemented(
                "ServiceRegistry.Heartbeat is not served: this simulator's registry is replicated through Raft, without leases",
            ));
        }
        let (node, shared) = (self.node, self.shared.clone());
        let answers = request.into_inner().map(move |request| renew(&shared, node, &request?));
        // An answer that is an error ends the stream (a stopped or partitioned node).
        let answers = answers.scan(false, |ended, answer| {
            let next = (!*ended).then(|| {
                *ended = answer.is_err();
                answer
            });
            future::ready(next)
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        self.shared.gate(self.node, "Register").await?;
        let node = self.node;
        let request = request.into_inner();
        if let Some(answer) = self.shared.leased(node, |state, node| {
            let service_id = request.identity.as_ref().map(|i| i.service_id.clone()).unwrap_or_default();
            let registry = state.leased_registry(node).expect("leased mode");
            let answer = registry.register(request.clone(), Instant::now());
            if answer.is_ok() {
                state.log_local(node, "Register", &service_id);
            }
            answer
        }) {
            return answer.map(Response::new).map_err(refusal_status);
        }
        let response = self.shared.write(node, |state| state.register(node, request)).await?;
        response.map(Response::new).map_err(refusal_status)
    }

    async fn deregister(
        &self,
        request: Request<DeregisterRequest>,
    ) -> Result<Response<DeregisterResponse>, Status> {
        self.shared.gate(self.node, "Deregister").await?;
        let node = self.node;
        let service_id = request.into_inner().service_id;
        let leased = self.shared.leased(node, |state, node| {
            let held =
                state.leased_registry(node).expect("leased mode").deregister(&service_id, Instant::now());
            if held {
                state.log_local(node, "Deregister", &service_id);
            }
            Ok(held)
        });
        let answer = match leased {
            Some(answer) => answer,
            None => self.shared.write(node, |state| state.deregister(node, &service_id)).await?,
        };
        match answer {
            Ok(true) => Ok(Response::new(DeregisterResponse { success: true, pending_records: 0 })),
            Ok(false) => Err(Status::not_found(format!("service {service_id} is not registered"))),
            Err(message) => Err(refusal_status(message)),
        }
    }

    async fn list_services(
        &self,
        request: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        self.shared.gate(self.node, "ListServices").await?;
        let request = request.into_inner();
        let (node, filter, selector) = (self.node, request.type_filter(), &request.label_selector);
        let leased = self.shared.leased(node, |state, node| {
            Ok(state.leased_registry(node).expect("leased mode").list(Instant::now(), filter, selector))
        });
        let services = match leased {
            Some(services) => services.map_err(refusal_status)?,
            None => self.shared.state().list_services(filter, selector),
        };
        Ok(Response::new(ListServicesResponse { services }))
    }
}
