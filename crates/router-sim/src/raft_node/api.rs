//! `RouterAdmin` and `ServiceRegistry` of a Raft node, on `--listen-addr`.
//! Reads answer from this node's state machine (any member, as in the
//! simulated cluster); writes are proposed to Raft on the leader and answered
//! once applied. Refusals take the simulated cluster's forms: RouterAdmin
//! answers `success=false` with the message, ServiceRegistry a gRPC status
//! (UNAVAILABLE for "not leader; leader is 2 at ..." and "no quorum: ...").

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use openraft::error::{ClientWriteError, RaftError};
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};

use super::Core;
use super::status::{View, not_leader};
use super::tasks::listen;
use super::types::{Command, Outcome, Write};
use crate::registry::refusal_status;
use conveyor_router_contract::proto::registry::service_registry_server::{
    ServiceRegistry, ServiceRegistryServer,
};
use conveyor_router_contract::proto::registry::{
    DeregisterRequest, DeregisterResponse, HeartbeatRequest, HeartbeatResponse, ListServicesRequest,
    ListServicesResponse, RegisterRequest, RegisterResponse,
};
use conveyor_router_contract::proto::router::router_admin_server::{RouterAdmin, RouterAdminServer};
use conveyor_router_contract::proto::router::{
    CreatePipelineRequest, CreatePipelineResponse, DeletePipelineRequest, DeletePipelineResponse,
    DisablePipelineRequest, DisablePipelineResponse, EnablePipelineRequest, EnablePipelineResponse,
    GetClusterStatusRequest, GetClusterStatusResponse, GetMetricsRequest, GetMetricsResponse,
    GetPipelineRequest, GetPipelineResponse, ListPipelinesRequest, ListPipelinesResponse,
    UpdatePipelineRequest, UpdatePipelineResponse,
};

/// How long a write may wait to be committed (a leader that just lost its quorum never commits it).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn serve(core: Arc<Core>, addr: SocketAddr) -> std::io::Result<JoinHandle<()>> {
    let incoming = listen(addr)?;
    let service = Api(core);
    Ok(tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(RouterAdminServer::new(service.clone()))
            .add_service(ServiceRegistryServer::new(service))
            .serve_with_incoming(incoming)
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "router API stopped");
        }
    }))
}

#[derive(Clone)]
struct Api(Arc<Core>);

impl Api {
    fn view<T>(&self, answer: impl FnOnce(&View<'_>) -> T) -> T {
        let metrics = self.0.metrics();
        let live = self.0.live();
        answer(&View { metrics: &metrics, live: &live, now: SystemTime::now() })
    }

    /// Proposes `write` on the leader; the outcome once applied, or why not.
    async fn write(&self, write: Write) -> Result<Outcome, String> {
        if let Some(refusal) = self.view(|view| view.write_refusal()) {
            return Err(refusal);
        }
        let method = write.method();
        let command = Command { at: SystemTime::now(), write };
        match tokio::time::timeout(WRITE_TIMEOUT, self.0.raft.client_write(command)).await {
            Ok(Ok(response)) => match response.data {
                Outcome::Refused(message) => Err(message),
                outcome => Ok(outcome),
            },
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
                Err(match forward.leader_id {
                    Some(leader) => {
                        not_leader(leader, forward.leader_node.as_ref().map(|node| node.api.as_str()))
                    }
                    None => "not leader; leader unknown (election in progress)".to_owned(),
                })
            }
            Ok(Err(error)) => Err(format!("no quorum: {method} not committed: {error}")),
            Err(_) => Err(format!("no quorum: {method} not committed within {WRITE_TIMEOUT:?}")),
        }
    }

    fn admin(&self, method: &str) -> Result<(), Status> {
        if self.0.router_admin {
            Ok(())
        } else {
            Err(Status::unimplemented(format!("RouterAdmin.{method} is not served by this router build")))
        }
    }
}

fn unexpected(outcome: &Outcome) -> String {
    format!("internal error: unexpected outcome {outcome:?}")
}

#[tonic::async_trait]
impl RouterAdmin for Api {
    async fn create_pipeline(
        &self,
        request: Request<CreatePipelineRequest>,
    ) -> Result<Response<CreatePipelineResponse>, Status> {
        self.admin("CreatePipeline")?;
        let config = request.into_inner().config.unwrap_or_default();
        let response = match self.write(Write::CreatePipeline(config)).await {
            Ok(Outcome::Created(pipeline_id)) => {
                CreatePipelineResponse { success: true, pipeline_id, error: String::new() }
            }
            other => CreatePipelineResponse {
                success: false,
                pipeline_id: String::new(),
                error: other.map_or_else(|error| error, |outcome| unexpected(&outcome)),
            },
        };
        Ok(Response::new(response))
    }

    async fn update_pipeline(
        &self,
        request: Request<UpdatePipelineRequest>,
    ) -> Result<Response<UpdatePipelineResponse>, Status> {
        self.admin("UpdatePipeline")?;
        let UpdatePipelineRequest { pipeline_id, config } = request.into_inner();
        let write = Write::UpdatePipeline { id: pipeline_id, config: config.unwrap_or_default() };
        let response = match self.write(write).await {
            Ok(Outcome::Version(version)) => {
                UpdatePipelineResponse { success: true, version, error: String::new() }
            }
            other => UpdatePipelineResponse {
                success: false,
                version: 0,
                error: other.map_or_else(|error| error, |outcome| unexpected(&outcome)),
            },
        };
        Ok(Response::new(response))
    }

    async fn delete_pipeline(
        &self,
        request: Request<DeletePipelineRequest>,
    ) -> Result<Response<DeletePipelineResponse>, Status> {
        self.admin("DeletePipeline")?;
        let DeletePipelineRequest { pipeline_id, force } = request.into_inner();
        let response = match self.write(Write::DeletePipeline { id: pipeline_id, force }).await {
            Ok(Outcome::Deleted) => DeletePipelineResponse { success: true, error: String::new() },
            other => DeletePipelineResponse {
                success: false,
                error: other.map_or_else(|error| error, |outcome| unexpected(&outcome)),
            },
        };
        Ok(Response::new(response))
    }

    async fn get_pipeline(
        &self,
        request: Request<GetPipelineRequest>,
    ) -> Result<Response<GetPipelineResponse>, Status> {
        self.admin("GetPipeline")?;
        let pipeline_id = request.into_inner().pipeline_id;
        let state = self.0.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(Response::new(state.catalog.get_pipeline(&pipeline_id)))
    }

    async fn list_pipelines(
        &self,
        request: Request<ListPipelinesRequest>,
    ) -> Result<Response<ListPipelinesResponse>, Status> {
        self.admin("ListPipelines")?;
        let include_disabled = request.into_inner().include_disabled;
        let state = self.0.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(Response::new(state.catalog.list_pipelines(include_disabled)))
    }

    async fn enable_pipeline(
        &self,
        request: Request<EnablePipelineRequest>,
    ) -> Result<Response<EnablePipelineResponse>, Status> {
        self.admin("EnablePipeline")?;
        let id = request.into_inner().pipeline_id;
        let response = match self.write(Write::SetEnabled { id, enabled: true }).await {
            Ok(Outcome::Buffered(_)) => EnablePipelineResponse { success: true, error: String::new() },
            other => EnablePipelineResponse {
                success: false,
                error: other.map_or_else(|error| error, |outcome| unexpected(&outcome)),
            },
        };
        Ok(Response::new(response))
    }

    async fn disable_pipeline(
        &self,
        request: Request<DisablePipelineRequest>,
    ) -> Result<Response<DisablePipelineResponse>, Status> {
        self.admin("DisablePipeline")?;
        let id = request.into_inner().pipeline_id;
        let response = match self.write(Write::SetEnabled { id, enabled: false }).await {
            Ok(Outcome::Buffered(pending_records)) => {
                DisablePipelineResponse { success: true, pending_records, error: String::new() }
            }
            other => DisablePipelineResponse {
                success: false,
                pending_records: 0,
                error: other.map_or_else(|error| error, |outcome| unexpected(&outcome)),
            },
        };
        Ok(Response::new(response))
    }

    async fn get_cluster_status(
        &self,
        _request: Request<GetClusterStatusRequest>,
    ) -> Result<Response<GetClusterStatusResponse>, Status> {
        self.admin("GetClusterStatus")?;
        Ok(Response::new(self.view(|view| view.status())))
    }

    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        self.admin("GetMetrics")?;
        let wanted = request.into_inner().metric_names;
        let status = self.view(|view| view.status());
        let state = self.0.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(Response::new(state.catalog.metrics(&wanted, status.term, status.commit_index)))
    }
}

#[tonic::async_trait]
impl ServiceRegistry for Api {
    type HeartbeatStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<HeartbeatResponse, Status>> + Send>>;

    async fn heartbeat(
        &self,
        request: Request<tonic::Streaming<HeartbeatRequest>>,
    ) -> Result<Response<Self::HeartbeatStream>, Status> {
        use futures::StreamExt;
        if self.0.leased.is_none() {
            return Err(Status::unimplemented(
                "ServiceRegistry.Heartbeat is not served: this simulator's registry is replicated through Raft, without leases",
            ));
        }
        let core = self.0.clone();
        let answers = request.into_inner().map(move |request| {
            let request = request?;
            let mut registry =
                core.leased.as_ref().expect("leased").lock().unwrap_or_else(PoisonError::into_inner);
            let renewed = registry.heartbeat(&request.service_id, Instant::now());
            Ok(HeartbeatResponse {
                acknowledged: renewed.is_some(),
                next_heartbeat_deadline: renewed
                    .map(|ttl| prost_types::Duration::try_from(ttl).unwrap_or_default()),
                commands: Vec::new(),
            })
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        if let Some(registry) = &self.0.leased {
            let mut registry = registry.lock().unwrap_or_else(PoisonError::into_inner);
            let answer = registry.register(request.into_inner(), Instant::now());
            return answer.map(Response::new).map_err(refusal_status);
        }
        match self.write(Write::Register(request.into_inner())).await {
            Ok(Outcome::Registered(response)) => Ok(Response::new(response)),
            Ok(outcome) => Err(Status::internal(unexpected(&outcome))),
            Err(message) => Err(refusal_status(message)),
        }
    }

    async fn deregister(
        &self,
        request: Request<DeregisterRequest>,
    ) -> Result<Response<DeregisterResponse>, Status> {
        let id = request.into_inner().service_id;
        if let Some(registry) = &self.0.leased {
            let held =
                registry.lock().unwrap_or_else(PoisonError::into_inner).deregister(&id, Instant::now());
            return match held {
                true => Ok(Response::new(DeregisterResponse { success: true, pending_records: 0 })),
                false => Err(Status::not_found(format!("service {id} is not registered"))),
            };
        }
        match self.write(Write::Deregister { id: id.clone() }).await {
            Ok(Outcome::Deregistered(true)) => {
                Ok(Response::new(DeregisterResponse { success: true, pending_records: 0 }))
            }
            Ok(Outcome::Deregistered(false)) => {
                Err(Status::not_found(format!("service {id} is not registered")))
            }
            Ok(outcome) => Err(Status::internal(unexpected(&outcome))),
            Err(message) => Err(refusal_status(message)),
        }
    }

    async fn list_services(
        &self,
        request: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        let request = request.into_inner();
        if let Some(registry) = &self.0.leased {
            let registry = registry.lock().unwrap_or_else(PoisonError::into_inner);
            let services = registry.list(Instant::now(), request.type_filter(), &request.label_selector);
            return Ok(Response::new(ListServicesResponse { services }));
        }
        let state = self.0.state.read().unwrap_or_else(PoisonError::into_inner);
        let services = state.catalog.list_services(request.type_filter(), &request.label_selector);
        Ok(Response::new(ListServicesResponse { services }))
    }
}
