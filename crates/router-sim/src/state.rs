//! Everything the simulated cluster stores: the Raft view, the catalog
//! (pipelines, services), the mutation log and the test switches. Writes are
//! checked against the Raft view (only the leader of a cluster with quorum
//! accepts them), then against the [`Catalog`], committed, and logged.
//! Refusals are returned as the message a router would put in `error`.

use std::collections::HashMap;
use std::time::SystemTime;

use conveyor_router_contract::proto::common::ServiceType;
use conveyor_router_contract::proto::registry::{RegisterRequest, RegisterResponse, RegisteredService};
use conveyor_router_contract::proto::router::{GetPipelineResponse, PipelineConfig, StageStatus};

use super::catalog::Catalog;
use super::flow::{Flow, Rates};
use super::log::Mutation;
use super::raft::RaftView;

/// State shared by every node of a simulated cluster (behind one mutex).
#[derive(Debug, Default)]
pub(crate) struct SimState {
    pub raft: RaftView,
    pub catalog: Catalog,
    pub log: Vec<Mutation>,
    /// Every RouterAdmin method answers UNIMPLEMENTED.
    pub admin_unimplemented: bool,
    /// The node that accepts the next write crashes before answering.
    pub crash_after_next_write: bool,
    /// Calls received per method (counted before any partition or delay).
    pub calls: HashMap<&'static str, u64>,
    /// The `traceparent` of the latest calls (method, value; empty when absent), oldest first.
    pub traceparents: std::collections::VecDeque<(String, String)>,
    /// In [`RegistryMode::Leased`](crate::RegistryMode::Leased): the lease
    /// ttl, and each serving node's own registry (dropped when it stops).
    pub lease_ttl: Option<std::time::Duration>,
    pub leased: std::collections::BTreeMap<u64, super::leases::LeasedRegistry>,
    /// Heartbeat messages received (a stream carries many).
    pub heartbeats: u64,
    /// Records flowing: moves the stage figures `GetPipeline` reports.
    pub flow: Option<Flow>,
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

    /// The registry of `node` in leased mode, created on first use.
    pub fn leased_registry(&mut self, node: u64) -> Option<&mut super::leases::LeasedRegistry> {
        let ttl = self.lease_ttl?;
        Some(self.leased.entry(node).or_insert_with(|| super::leases::LeasedRegistry::new(ttl)))
    }

    /// Logs a write a node applied to its own leased registry (no Raft commit: the index stays).
    pub fn log_local(&mut self, node: u64, method: &'static str, target: &str) {
        let (index, term) = (self.raft.commit_index, self.raft.term);
        self.log.push(Mutation { index, term, node, method, target: target.to_string() });
    }

    fn refuse_unless_writable(&self, node: u64) -> Result<(), String> {
        self.raft.write_refusal(node).map_or(Ok(()), Err)
    }

    pub fn create_pipeline(&mut self, node: u64, config: PipelineConfig) -> Result<String, String> {
        self.refuse_unless_writable(node)?;
        self.catalog.check_create(&config)?;
        self.accept(node, "CreatePipeline", &config.id)?;
        self.catalog.create_pipeline(config, SystemTime::now())
    }

    pub fn update_pipeline(
        &mut self,
        node: u64,
        pipeline_id: &str,
        config: PipelineConfig,
    ) -> Result<u64, String> {
        self.refuse_unless_writable(node)?;
        self.catalog.check_update(pipeline_id, &config)?;
        self.accept(node, "UpdatePipeline", pipeline_id)?;
        self.catalog.update_pipeline(pipeline_id, config, SystemTime::now())
    }

    /// Deletes a pipeline. Without `force`, a pipeline holding buffered records is kept.
    pub fn delete_pipeline(&mut self, node: u64, pipeline_id: &str, force: bool) -> Result<(), String> {
        self.refuse_unless_writable(node)?;
        self.catalog.check_delete(pipeline_id, force)?;
        self.accept(node, "DeletePipeline", pipeline_id)?;
        self.catalog.delete_pipeline(pipeline_id, force)
    }

    /// Enables or disables a pipeline; returns the records still buffered in it.
    pub fn set_enabled(&mut self, node: u64, pipeline_id: &str, enabled: bool) -> Result<u64, String> {
        self.refuse_unless_writable(node)?;
        self.catalog.pipeline(pipeline_id)?;
        self.accept(node, if enabled { "EnablePipeline" } else { "DisablePipeline" }, pipeline_id)?;
        self.catalog.set_enabled(pipeline_id, enabled, SystemTime::now())
    }

    /// Registers (upserts) a service; a re-registration keeps its registration id.
    pub fn register(&mut self, node: u64, request: RegisterRequest) -> Result<RegisterResponse, String> {
        self.refuse_unless_writable(node)?;
        Catalog::check_register(&request)?;
        let service_id =
            request.identity.as_ref().map(|identity| identity.service_id.clone()).unwrap_or_default();
        self.accept(node, "Register", &service_id)?;
        self.catalog.register(request, SystemTime::now())
    }

    /// Deregisters a service; `Ok(false)` when it was not registered.
    pub fn deregister(&mut self, node: u64, service_id: &str) -> Result<bool, String> {
        self.refuse_unless_writable(node)?;
        if !self.catalog.services.contains_key(service_id) {
            return Ok(false);
        }
        self.accept(node, "Deregister", service_id)?;
        Ok(self.catalog.deregister(service_id))
    }

    /// Registered services of `type_filter` (Unspecified: all) carrying every label of `selector`.
    pub fn list_services(
        &self,
        type_filter: ServiceType,
        selector: &HashMap<String, String>,
    ) -> Vec<RegisteredService> {
        self.catalog.list_services(type_filter, selector)
    }

    /// The answer to `GetPipeline` at `now`, with the flow's figures.
    pub fn get_pipeline(&self, pipeline_id: &str, now: SystemTime) -> GetPipelineResponse {
        let mut answer = self.catalog.get_pipeline(pipeline_id);
        if let (Some(flow), Some(status)) = (&self.flow, answer.status.as_mut()) {
            flow.advance(status, now);
        }
        answer
    }

    /// Sets the flow's rates from `now` on, keeping what flowed until then.
    pub fn set_flow(&mut self, rates: Rates, now: SystemTime) {
        if let Some(flow) = self.flow {
            for stored in self.catalog.pipelines.values_mut() {
                flow.settle(&mut stored.status, now);
            }
        }
        self.flow = Some(Flow { rates, since: now });
    }

    pub fn set_stage_status(&mut self, pipeline_id: &str, stage_id: &str, status: StageStatus) -> bool {
        self.catalog.set_stage_status(pipeline_id, stage_id, status)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::member::Member;
    use conveyor_router_contract::proto::common::ServiceIdentity;
    use conveyor_router_contract::proto::router::Stage;

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
        assert!(!state.catalog.pipelines["ns/p"].status.enabled);
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
