//! Everything the simulated cluster stores: the Raft view, pipelines, services,
//! the mutation log and the test switches. Writes are checked against the Raft
//! view (only the leader of a cluster with quorum accepts them), committed, and
//! logged. Refusals are returned as the message a router would put in `error`.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use crate::router::proto::common::{HealthStatus, ServiceType};
use crate::router::proto::registry::{RegisterRequest, RegisterResponse, RegisteredService, ServiceHealth};
use crate::router::proto::router::{PipelineConfig, PipelineStatus, StageStatus};

use super::log::Mutation;
use super::raft::RaftView;

/// A stored pipeline: the submitted config and the status the router reports.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StoredPipeline {
    pub config: PipelineConfig,
    pub status: PipelineStatus,
}

/// State shared by every node of a simulated cluster (behind one mutex).
#[derive(Debug, Default)]
pub(crate) struct SimState {
    pub raft: RaftView,
    pub pipelines: BTreeMap<String, StoredPipeline>,
    /// Registered services and their registration ids, by service id.
    pub services: BTreeMap<String, (RegisteredService, String)>,
    pub log: Vec<Mutation>,
    /// Every RouterAdmin method answers UNIMPLEMENTED.
    pub admin_unimplemented: bool,
    /// The node that accepts the next write crashes before answering.
    pub crash_after_next_write: bool,
    /// Calls received per method (counted before any partition or delay).
    pub calls: HashMap<&'static str, u64>,
    /// The `traceparent` of the latest calls (method, value; empty when absent), oldest first.
    pub traceparents: std::collections::VecDeque<(String, String)>,
    next_registration: u64,
}

impl SimState {
    /// Checks that `node` may write, then commits and logs `method` on `target`.
    fn accept(&mut self, node: u64, method: &'static str, target: &str) -> Result<(), String> {
        if let Some(refusal) = self.raft.write_refusal(node) {
            return Err(refusal);
        }
        let index = self.raft.commit();
        self.log.push(Mutation { index, term: self.raft.term, node, method, target: target.to_string() });
        Ok(())
    }

    fn refuse_unless_writable(&self, node: u64) -> Result<(), String> {
        self.raft.write_refusal(node).map_or(Ok(()), Err)
    }

    pub fn create_pipeline(&mut self, node: u64, config: PipelineConfig) -> Result<String, String> {
        self.refuse_unless_writable(node)?;
        if config.id.is_empty() {
            return Err("invalid config: id is empty".to_string());
        }
        if self.pipelines.contains_key(&config.id) {
            return Err(format!("pipeline {} already exists", config.id));
        }
        self.accept(node, "CreatePipeline", &config.id)?;
        let now = SystemTime::now();
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

    pub fn update_pipeline(
        &mut self,
        node: u64,
        pipeline_id: &str,
        config: PipelineConfig,
    ) -> Result<u64, String> {
        self.refuse_unless_writable(node)?;
        if config.id != pipeline_id {
            return Err(format!(
                "invalid request: pipeline_id {pipeline_id} differs from config.id {}",
                config.id
            ));
        }
        if !self.pipelines.contains_key(pipeline_id) {
            return Err(format!("pipeline {pipeline_id} not found"));
        }
        self.accept(node, "UpdatePipeline", pipeline_id)?;
        let stored =
            self.pipelines.get_mut(pipeline_id).ok_or_else(|| format!("pipeline {pipeline_id} not found"))?;
        stored.status.version += 1;
        stored.status.enabled = config.enabled;
        stored.status.updated_at = Some(SystemTime::now().into());
        stored.status.stage_statuses = fresh_stage_statuses(&config, &stored.status.stage_statuses);
        stored.config = config;
        Ok(stored.status.version)
    }

    /// Deletes a pipeline. Without `force`, a pipeline holding buffered records is kept.
    pub fn delete_pipeline(&mut self, node: u64, pipeline_id: &str, force: bool) -> Result<(), String> {
        self.refuse_unless_writable(node)?;
        let stored =
            self.pipelines.get(pipeline_id).ok_or_else(|| format!("pipeline {pipeline_id} not found"))?;
        let buffered = buffered_records(stored);
        if buffered > 0 && !force {
            return Err(format!(
                "pipeline {pipeline_id} holds {buffered} buffered records; delete with force"
            ));
        }
        self.accept(node, "DeletePipeline", pipeline_id)?;
        self.pipelines.remove(pipeline_id);
        Ok(())
    }

    /// Enables or disables a pipeline; returns the records still buffered in it.
    pub fn set_enabled(&mut self, node: u64, pipeline_id: &str, enabled: bool) -> Result<u64, String> {
        self.refuse_unless_writable(node)?;
        if !self.pipelines.contains_key(pipeline_id) {
            return Err(format!("pipeline {pipeline_id} not found"));
        }
        self.accept(node, if enabled { "EnablePipeline" } else { "DisablePipeline" }, pipeline_id)?;
        let stored =
            self.pipelines.get_mut(pipeline_id).ok_or_else(|| format!("pipeline {pipeline_id} not found"))?;
        stored.config.enabled = enabled;
        stored.status.enabled = enabled;
        stored.status.updated_at = Some(SystemTime::now().into());
        Ok(buffered_records(stored))
    }

    /// Registers (upserts) a service; a re-registration keeps its registration id.
    pub fn register(&mut self, node: u64, request: RegisterRequest) -> Result<RegisterResponse, String> {
        self.refuse_unless_writable(node)?;
        let identity = request.identity.ok_or("invalid request: identity is missing")?;
        if identity.service_id.is_empty() {
            return Err("invalid request: identity.service_id is empty".to_string());
        }
        self.accept(node, "Register", &identity.service_id)?;
        let registration_id = match self.services.get(&identity.service_id) {
            Some((_, registration_id)) => registration_id.clone(),
            None => {
                self.next_registration += 1;
                format!("reg-{}", self.next_registration)
            }
        };
        let now = SystemTime::now();
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

    /// Deregisters a service; `Ok(false)` when it was not registered.
    pub fn deregister(&mut self, node: u64, service_id: &str) -> Result<bool, String> {
        self.refuse_unless_writable(node)?;
        if !self.services.contains_key(service_id) {
            return Ok(false);
        }
        self.accept(node, "Deregister", service_id)?;
        self.services.remove(service_id);
        Ok(true)
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
    use std::net::SocketAddr;

    use super::*;
    use crate::router::proto::common::ServiceIdentity;
    use crate::router::proto::router::Stage;
    use crate::sim::member::Member;

    fn state() -> SimState {
        let mut state = SimState::default();
        for id in 1..=3u8 {
            state.raft.members.insert(id.into(), Member::new(SocketAddr::from(([127, 0, 0, id + 1], 50051))));
        }
        state.raft.elect();
        state
    }

    fn config(id: &str) -> PipelineConfig {
        let stage = |id: &str| Stage { id: id.into(), ..Stage::default() };
        PipelineConfig {
            id: id.into(),
            stages: vec![stage("source"), stage("sink")],
            enabled: true,
            ..Default::default()
        }
    }

    #[test]
    fn pipelines_version_on_every_update_and_log_each_write() {
        let mut state = state();
        assert_eq!(state.create_pipeline(1, config("ns/p")), Ok("ns/p".into()));
        assert_eq!(state.create_pipeline(1, config("ns/p")), Err("pipeline ns/p already exists".into()));
        assert_eq!(state.update_pipeline(1, "ns/p", config("ns/p")), Ok(2));
        assert_eq!(state.update_pipeline(1, "ns/p", config("ns/p")), Ok(3));
        assert_eq!(state.set_enabled(1, "ns/p", false), Ok(0));
        assert!(!state.pipelines["ns/p"].status.enabled);
        let methods: Vec<_> = state.log.iter().map(|m| (m.index, m.method)).collect();
        assert_eq!(
            methods,
            [(1, "CreatePipeline"), (2, "UpdatePipeline"), (3, "UpdatePipeline"), (4, "DisablePipeline")]
        );
        assert_eq!(state.raft.commit_index, 4);
    }

    #[test]
    fn followers_refuse_writes_naming_the_leader() {
        let mut state = state();
        let refusal = state.create_pipeline(2, config("ns/p")).unwrap_err();
        assert_eq!(refusal, "not leader; leader is 1 at 127.0.0.2:50051");
        assert!(state.log.is_empty());
    }

    #[test]
    fn delete_needs_force_while_records_are_buffered() {
        let mut state = state();
        state.create_pipeline(1, config("ns/p")).unwrap();
        let buffered = StageStatus { records_buffered: 5, ..StageStatus::default() };
        assert!(state.set_stage_status("ns/p", "sink", buffered));
        assert!(state.delete_pipeline(1, "ns/p", false).unwrap_err().contains("force"));
        assert_eq!(state.delete_pipeline(1, "ns/p", true), Ok(()));
        assert_eq!(state.delete_pipeline(1, "ns/p", true), Err("pipeline ns/p not found".into()));
    }

    #[test]
    fn register_upserts_and_keeps_the_registration_id() {
        let mut state = state();
        let request = |service_type: ServiceType| RegisterRequest {
            identity: Some(ServiceIdentity {
                service_id: "ns/src".into(),
                service_type: service_type.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let first = state.register(1, request(ServiceType::Source)).unwrap();
        let second = state.register(1, request(ServiceType::Source)).unwrap();
        assert_eq!(first.registration_id, second.registration_id);
        assert_eq!(state.list_services(ServiceType::Source, &HashMap::new()).len(), 1);
        assert_eq!(state.list_services(ServiceType::Sink, &HashMap::new()).len(), 0);
        let selector = HashMap::from([("team".to_string(), "a".to_string())]);
        assert_eq!(state.list_services(ServiceType::Unspecified, &selector).len(), 0);
        assert_eq!(state.deregister(1, "ns/src"), Ok(true));
        assert_eq!(state.deregister(1, "ns/src"), Ok(false));
    }
}
