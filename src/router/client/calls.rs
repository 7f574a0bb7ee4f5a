//! The per-member requests (`*_on`): one call to one member, its answer interpreted.

use std::collections::HashMap;

use http::uri::PathAndQuery;
use tonic::GrpcMethod;

use super::RouterClient;
use super::connection::with_deadline;
use super::summaries::{Summaries, SummaryCodec};
use crate::router::error::{RouterError, from_refusal};
use crate::router::mapping::same_submission;
use crate::router::proto::common::ServiceType;
use crate::router::proto::registry::service_registry_client::ServiceRegistryClient;
use crate::router::proto::registry::{
    DeregisterRequest, ListServicesRequest, RegisterRequest, RegisterResponse, RegisteredService,
};
use crate::router::proto::router::router_admin_client::RouterAdminClient;
use crate::router::proto::router::{
    CreatePipelineRequest, DeletePipelineRequest, DisablePipelineRequest, EnablePipelineRequest,
    GetPipelineRequest, GetPipelineResponse, ListPipelinesRequest, PipelineConfig, UpdatePipelineRequest,
};

/// Largest list answer taken (tonic's default is 4 MiB, which a
/// `ListPipelines` of about 8,000 pipelines outgrows; 64 MiB holds over
/// 100,000). The lists are the only answers that grow with the cluster.
pub const LIST_RESPONSE_LIMIT: usize = 64 * 1024 * 1024;

/// The router's admin service, as its generated client names it.
const ROUTER_ADMIN: &str = "conveyor_etl.router.RouterAdmin";

impl RouterClient {
    pub(super) async fn create_on(
        &self,
        member: &str,
        config: PipelineConfig,
    ) -> Result<String, RouterError> {
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

    pub(super) async fn update_on(&self, member: &str, config: PipelineConfig) -> Result<u64, RouterError> {
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

    pub(super) async fn delete_on(
        &self,
        member: &str,
        pipeline_id: &str,
        force: bool,
    ) -> Result<(), RouterError> {
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

    pub(super) async fn get_on(
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

    pub(super) async fn set_enabled_on(
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

    pub(super) async fn register_on(
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

    pub(super) async fn deregister_on(&self, member: &str, service_id: &str) -> Result<(), RouterError> {
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

    pub(super) async fn list_services_on(
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
                ServiceRegistryClient::new(channel)
                    .max_decoding_message_size(LIST_RESPONSE_LIMIT)
                    .list_services(with_deadline(request, timeout))
                    .await
            })
            .await?;
        Ok(response.services)
    }

    /// `RouterAdmin.ListPipelines` as the generated client calls it, with the
    /// answer decoded into summaries one pipeline at a time.
    pub(super) async fn list_pipelines_on(&self, member: &str) -> Result<Summaries, RouterError> {
        let request = ListPipelinesRequest { include_disabled: true };
        self.unary(member, "ListPipelines", |channel, timeout| async move {
            let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(LIST_RESPONSE_LIMIT);
            grpc.ready().await.map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
            let mut request = with_deadline(request, timeout);
            request.extensions_mut().insert(GrpcMethod::new(ROUTER_ADMIN, "ListPipelines"));
            let path = PathAndQuery::from_static("/conveyor_etl.router.RouterAdmin/ListPipelines");
            grpc.unary(request, path, SummaryCodec).await
        })
        .await
    }
}
