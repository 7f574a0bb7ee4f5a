//! The simulated `RouterAdmin` service of one node: a thin gRPC adapter over
//! [`SimState`](super::state::SimState). Writes refused by the Raft view answer
//! `success=false` with the router's message ("not leader; leader is 2 at ...",
//! "no quorum: ...", "pipeline x already exists", "pipeline x not found").
//! `GetClusterStatus` and the `term`/`commit_index` metrics answer from this
//! node's own belief, which a partitioned node keeps from before it was cut off.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use conveyor_router_contract::proto::router::router_admin_server::RouterAdmin;
use conveyor_router_contract::proto::router::{
    CreatePipelineRequest, CreatePipelineResponse, DeletePipelineRequest, DeletePipelineResponse,
    DisablePipelineRequest, DisablePipelineResponse, EnablePipelineRequest, EnablePipelineResponse,
    GetClusterStatusRequest, GetClusterStatusResponse, GetMetricsRequest, GetMetricsResponse,
    GetPipelineRequest, GetPipelineResponse, ListPipelinesRequest, ListPipelinesResponse,
    UpdatePipelineRequest, UpdatePipelineResponse,
};

use super::cluster::Shared;

/// `RouterAdmin` as served by simulated node `node`.
#[derive(Debug)]
pub(crate) struct AdminService {
    node: u64,
    shared: Arc<Shared>,
}

impl AdminService {
    pub fn new(node: u64, shared: Arc<Shared>) -> Self {
        Self { node, shared }
    }

    /// Partition/slow gate, then the UNIMPLEMENTED switch.
    async fn enter(&self, method: &'static str) -> Result<(), Status> {
        self.shared.gate(self.node, method).await?;
        if self.shared.state().admin_unimplemented {
            return Err(Status::unimplemented(format!(
                "RouterAdmin.{method} is not served by this router build"
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl RouterAdmin for AdminService {
    async fn create_pipeline(
        &self,
        request: Request<CreatePipelineRequest>,
    ) -> Result<Response<CreatePipelineResponse>, Status> {
        self.enter("CreatePipeline").await?;
        let config = request.into_inner().config.unwrap_or_default();
        let node = self.node;
        let response = match self.shared.write(node, |state| state.create_pipeline(node, config)).await? {
            Ok(pipeline_id) => CreatePipelineResponse { success: true, pipeline_id, error: String::new() },
            Err(error) => CreatePipelineResponse { success: false, pipeline_id: String::new(), error },
        };
        Ok(Response::new(response))
    }

    async fn update_pipeline(
        &self,
        request: Request<UpdatePipelineRequest>,
    ) -> Result<Response<UpdatePipelineResponse>, Status> {
        self.enter("UpdatePipeline").await?;
        let UpdatePipelineRequest { pipeline_id, config } = request.into_inner();
        let node = self.node;
        let config = config.unwrap_or_default();
        let response =
            match self.shared.write(node, |state| state.update_pipeline(node, &pipeline_id, config)).await? {
                Ok(version) => UpdatePipelineResponse { success: true, version, error: String::new() },
                Err(error) => UpdatePipelineResponse { success: false, version: 0, error },
            };
        Ok(Response::new(response))
    }

    async fn delete_pipeline(
        &self,
        request: Request<DeletePipelineRequest>,
    ) -> Result<Response<DeletePipelineResponse>, Status> {
        self.enter("DeletePipeline").await?;
        let DeletePipelineRequest { pipeline_id, force } = request.into_inner();
        let node = self.node;
        let response =
            match self.shared.write(node, |state| state.delete_pipeline(node, &pipeline_id, force)).await? {
                Ok(()) => DeletePipelineResponse { success: true, error: String::new() },
                Err(error) => DeletePipelineResponse { success: false, error },
            };
        Ok(Response::new(response))
    }

    async fn get_pipeline(
        &self,
        request: Request<GetPipelineRequest>,
    ) -> Result<Response<GetPipelineResponse>, Status> {
        self.enter("GetPipeline").await?;
        let pipeline_id = request.into_inner().pipeline_id;
        Ok(Response::new(self.shared.state().get_pipeline(&pipeline_id, std::time::SystemTime::now())))
    }

    async fn list_pipelines(
        &self,
        request: Request<ListPipelinesRequest>,
    ) -> Result<Response<ListPipelinesResponse>, Status> {
        self.enter("ListPipelines").await?;
        let include_disabled = request.into_inner().include_disabled;
        Ok(Response::new(self.shared.state().catalog.list_pipelines(include_disabled)))
    }

    async fn enable_pipeline(
        &self,
        request: Request<EnablePipelineRequest>,
    ) -> Result<Response<EnablePipelineResponse>, Status> {
        self.enter("EnablePipeline").await?;
        let pipeline_id = request.into_inner().pipeline_id;
        let node = self.node;
        let response =
            match self.shared.write(node, |state| state.set_enabled(node, &pipeline_id, true)).await? {
                Ok(_) => EnablePipelineResponse { success: true, error: String::new() },
                Err(error) => EnablePipelineResponse { success: false, error },
            };
        Ok(Response::new(response))
    }

    async fn disable_pipeline(
        &self,
        request: Request<DisablePipelineRequest>,
    ) -> Result<Response<DisablePipelineResponse>, Status> {
        self.enter("DisablePipeline").await?;
        let pipeline_id = request.into_inner().pipeline_id;
        let node = self.node;
        let response =
            match self.shared.write(node, |state| state.set_enabled(node, &pipeline_id, false)).await? {
                Ok(pending_records) => {
                    DisablePipelineResponse { success: true, pending_records, error: String::new() }
                }
                Err(error) => DisablePipelineResponse { success: false, pending_records: 0, error },
            };
        Ok(Response::new(response))
    }

    async fn get_cluster_status(
        &self,
        _request: Request<GetClusterStatusRequest>,
    ) -> Result<Response<GetClusterStatusResponse>, Status> {
        self.enter("GetClusterStatus").await?;
        Ok(Response::new(self.shared.state().raft.status(self.node)))
    }

    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        self.enter("GetMetrics").await?;
        let wanted = request.into_inner().metric_names;
        let state = self.shared.state();
        let belief = state.raft.belief_of(self.node);
        Ok(Response::new(state.catalog.metrics(&wanted, belief.term, belief.commit_index)))
    }
}
