//! The simulated `ServiceRegistry` service of one node (Register, Deregister,
//! ListServices). Writes follow the Raft view like pipeline writes, but the
//! registry's responses have no error field, so a refusal is a gRPC status:
//! UNAVAILABLE "not leader; leader is 2 at ..." or "no quorum: ...", and
//! NOT_FOUND for deregistering an unknown service. Reads are served by any node.
//! Not affected by the RouterAdmin UNIMPLEMENTED switch.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use conveyor_router_contract::proto::registry::service_registry_server::ServiceRegistry;
use conveyor_router_contract::proto::registry::{
    DeregisterRequest, DeregisterResponse, ListServicesRequest, ListServicesResponse, RegisterRequest,
    RegisterResponse,
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

#[tonic::async_trait]
impl ServiceRegistry for RegistryService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        self.shared.gate(self.node, "Register").await?;
        let node = self.node;
        let request = request.into_inner();
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
        match self.shared.write(node, |state| state.deregister(node, &service_id)).await? {
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
        let services = self.shared.state().list_services(request.type_filter(), &request.label_selector);
        Ok(Response::new(ListServicesResponse { services }))
    }
}
