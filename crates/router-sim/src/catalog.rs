//! What a router stores, without any notion of who may write: pipelines and
//! registered services, with the checks and answers of each write. Pure and
//! deterministic (the time of a write is passed in), so the simulated cluster
//! ([`SimState`](super::state::SimState)) and the replicated state machine of
//! a real Raft member ([`raft_node`](super::raft_node)) apply the same writes
//! the same way. Refusals are the message a router puts in `error`.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use conveyor_router_contract::proto::common::{HealthStatus, ServiceType};
use conveyor_router_contract::proto::registry::{
    RegisterRequest, RegisterResponse, RegisteredService, ServiceHealth,
};
use conveyor_router_contract::proto::router::{
    GetMetricsResponse, GetPipelineResponse, ListPipelinesResponse, PipelineConfig, PipelineStatus,
    StageStatus,
};

/// A stored pipeline: the submitted config and the status the router reports.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StoredPipeline {
    pub config: PipelineConfig,
    pub status: PipelineStatus,
}

/// Pipelines and services, and the counter registration ids are drawn from.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Catalog {
    pub pipelines: BTreeMap<String, StoredPipeline>,
    /// Registered services and their registration ids, by service id.
    pub services: BTreeMap<String, (RegisteredService, String)>,
    pub next_registration: u64,
}

impl Catalog {
    /// The answer to `GetPipeline`.
    pub fn get_pipeline(&self, pipeline_id: &str) -> GetPipelineResponse {
        match self.pipelines.get(pipeline_id) {
            Some(stored) => GetPipelineResponse {
                found: true,
                config: Some(stored.config.clone()),
                status: Some(stored.status.clone()),
            },
            None => GetPipelineResponse { found: false, config: None, status: None },
        }
    }

    /// The answer to `GetMetrics`: the `wanted` ones (all when empty) of the
    /// counts and the member's `term` and `commit_index`.
    pub fn metrics(&self, wanted: &[String], term: u64, commit_index: u64) -> GetMetricsResponse {
        let all = [
            ("pipelines", self.pipelines.len() as f64),
            ("services", self.services.len() as f64),
            ("term", term as f64),
            ("commit_index", commit_index as f64),
        ];
        let metrics = all
            .into_iter()
            .filter(|(name, _)| wanted.is_empty() || wanted.iter().any(|wanted| wanted == name))
            .map(|(name, value)| (name.to_string(), value))
            .collect();
        GetMetricsResponse { metrics }
    }

    /// The answer to `ListPipelines`.
    pub fn list_pipelines(&self, include_disabled: bool) -> ListPipelinesResponse {
        let pipelines = self
            .pipelines
            .values()
            .filter(|stored| include_disabled || stored.status.enabled)
            .map(|stored| stored.config.clone())
            .collect();
        ListPipelinesResponse { pipelines }
    }

    /// Refuses a create that cannot be applied.
    pub fn check_create(&self, config: &PipelineConfig) -> Result<(), String> {
        if config.id.is_empty() {
            return Err("invalid config: id is empty".to_string());
        }
        if self.pipelines.contains_key(&config.id) {
            return Err(format!("pipeline {} already exists", config.id));
        }
        Ok(())
    }

    pub fn create_pipeline(&mut self, config: PipelineConfig, now: SystemTime) -> Result<String, String> {
        self.check_create(&config)?;
        let status = PipelineStatus {
            enabled: config.enabled,
            version: 1,
            created_at: Some(now.into()),
            updated_at: Some(now.into()),
            stage_statuses: fresh_stage_statuses(&config, &HashMap::new()),
        };
        let id = config.id.clone();
        self.pipelines.insert(id.clone(), StoredPipeline { config, status });
        Ok(id)
    }

    pub fn check_update(&self, pipeline_id: &str, config: &PipelineConfig) -> Result<(), String> {
        if config.id != pipeline_id {
            return Err(format!(
                "invalid request: pipeline_id {pipeline_id} differs from config.id {}",
                config.id
            ));
        }
        self.pipeline(pipeline_id).map(|_| ())
    }

    /// Replaces a pipeline's config; returns its new version.
    pub fn update_pipeline(
        &mut self,
        pipeline_id: &str,
        config: PipelineConfig,
        now: SystemTime,
    ) -> Result<u64, String> {
        self.check_update(pipeline_id, &config)?;
        let stored = self.pipeline_mut(pipeline_id)?;
        stored.status.version += 1;
        stored.status.enabled = config.enabled;
        stored.status.updated_at = Some(now.into());
        stored.status.stage_statuses = fresh_stage_statuses(&config, &stored.status.stage_statuses);
        stored.config = config;
        Ok(stored.status.version)
    }

    /// Without `force`, a pipeline holding buffered records is kept.
    pub fn check_delete(&self, pipeline_id: &str, force: bool) -> Result<(), String> {
        let buffered = buffered_records(self.pipeline(pipeline_id)?);
        if buffered > 0 && !force {
            return Err(format!(
                "pipeline {pipeline_id} holds {buffered} buffered records; delete with force"
            ));
        }
        Ok(())
    }

    pub fn delete_pipeline(&mut self, pipeline_id: &str, force: bool) -> Result<(), String> {
        self.check_delete(pipeline_id, force)?;
        self.pipelines.remove(pipeline_id);
        Ok(())
    }

    /// Enables or disables a pipeline; returns the records still buffered in it.
    pub fn set_enabled(&mut self, pipeline_id: &str, enabled: bool, now: SystemTime) -> Result<u64, String> {
        let stored = self.pipeline_mut(pipeline_id)?;
        stored.config.enabled = enabled;
        stored.status.enabled = enabled;
        stored.status.updated_at = Some(now.into());
        Ok(buffered_records(stored))
    }

    pub fn check_register(request: &RegisterRequest) -> Result<(), String> {
        match &request.identity {
            None => Err("invalid request: identity is missing".to_string()),
            Some(identity) if identity.service_id.is_empty() => {
                Err("invalid request: identity.service_id is empty".to_string())
            }
            Some(_) => Ok(()),
        }
    }

    /// Registers (upserts) a service; a re-registration keeps its registration id.
    pub fn register(
        &mut self,
        request: RegisterRequest,
        now: SystemTime,
    ) -> Result<RegisterResponse, String> {
        Self::check_register(&request)?;
        let identity = request.identity.ok_or("invalid request: identity is missing")?;
        let registration_id = match self.services.get(&identity.service_id) {
            Some((_, registration_id)) => registration_id.clone(),
            None => {
                self.next_registration += 1;
                format!("reg-{}", self.next_registration)
            }
        };
        let service = RegisteredService {
            identity: Some(identity.clone()),
            endpoint: request.endpoint,
            metadata: request.metadata,
            health: Some(ServiceHealth {
                status: HealthStatus::Healthy.into(),
                message: String::new(),
                components: HashMap::new(),
            }),
            registered_at: Some(now.into()),
            last_heartbeat: Some(now.into()),
            assigned_partitions: Vec::new(),
        };
        self.services.insert(identity.service_id, (service, registration_id.clone()));
        Ok(RegisterResponse {
            success: true,
            lease_id: format!("lease-{registration_id}"),
            registration_id,
            lease_ttl: Some(prost_types::Duration { seconds: 30, nanos: 0 }),
            initial_credits: 1000,
        })
    }

    /// Deregisters a service; false when it was not registered.
    pub fn deregister(&mut self, service_id: &str) -> bool {
        self.services.remove(service_id).is_some()
    }

    /// Registered services of `type_filter` (Unspecified: all) carrying every label of `selector`.
    pub fn list_services(
        &self,
        type_filter: ServiceType,
        selector: &HashMap<String, String>,
    ) -> Vec<RegisteredService> {
        self.services
            .values()
            .map(|(service, _)| service)
            .filter(|service| {
                type_filter == ServiceType::Unspecified
                    || service
                        .identity
                        .as_ref()
                        .is_some_and(|identity| identity.service_type() == type_filter)
            })
            .filter(|service| {
                let labels = service.metadata.as_ref().map(|metadata| &metadata.labels);
                selector.iter().all(|(key, value)| labels.and_then(|labels| labels.get(key)) == Some(value))
            })
            .cloned()
            .collect()
    }

    pub fn set_stage_status(&mut self, pipeline_id: &str, stage_id: &str, status: StageStatus) -> bool {
        match self.pipelines.get_mut(pipeline_id) {
            Some(stored) => {
                stored.status.stage_statuses.insert(stage_id.to_string(), status);
                true
            }
            None => false,
        }
    }

    pub fn pipeline(&self, pipeline_id: &str) -> Result<&StoredPipeline, String> {
        self.pipelines.get(pipeline_id).ok_or_else(|| format!("pipeline {pipeline_id} not found"))
    }

    fn pipeline_mut(&mut self, pipeline_id: &str) -> Result<&mut StoredPipeline, String> {
        self.pipelines.get_mut(pipeline_id).ok_or_else(|| format!("pipeline {pipeline_id} not found"))
    }
}

/// One status per stage of `config`, keeping the statistics of stages that stay.
fn fresh_stage_statuses(
    config: &PipelineConfig,
    old: &HashMap<String, StageStatus>,
) -> HashMap<String, StageStatus> {
    config
        .stages
        .iter()
        .map(|stage| (stage.id.clone(), old.get(&stage.id).copied().unwrap_or_default()))
        .collect()
}

fn buffered_records(stored: &StoredPipeline) -> u64 {
    stored.status.stage_statuses.values().map(|stage| stage.records_buffered).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_answer_the_names_asked_for_or_all() {
        let catalog = Catalog::default();
        let all = catalog.metrics(&[], 7, 42).metrics;
        assert_eq!(all.len(), 4);
        assert_eq!((all["term"], all["commit_index"], all["pipelines"]), (7.0, 42.0, 0.0));
        let asked = catalog.metrics(&["term".to_owned(), "unknown".to_owned()], 7, 42).metrics;
        assert_eq!(asked.into_iter().collect::<Vec<_>>(), [("term".to_owned(), 7.0)]);
    }
}
