//! The replicated state machine's pure part: applying a command to the
//! catalog, and the snapshot image (the catalog, the last applied log id and
//! the membership, as JSON).

use serde::{Deserialize, Serialize};

use super::types::{Command, LogId, Outcome, StoredMembership, Write};
use crate::catalog::{Catalog, StoredPipeline};
use conveyor_router_contract::proto::registry::RegisteredService;
use conveyor_router_contract::proto::router::{PipelineConfig, PipelineStatus};

/// What the state machine holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Replicated {
    pub catalog: Catalog,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// Applies one write; a refused write changes nothing and says why.
pub fn apply(catalog: &mut Catalog, command: Command) -> Outcome {
    let Command { at, write } = command;
    let result = match write {
        Write::CreatePipeline(config) => catalog.create_pipeline(config, at).map(Outcome::Created),
        Write::UpdatePipeline { id, config } => {
            catalog.update_pipeline(&id, config, at).map(Outcome::Version)
        }
        Write::DeletePipeline { id, force } => catalog.delete_pipeline(&id, force).map(|()| Outcome::Deleted),
        Write::SetEnabled { id, enabled } => catalog.set_enabled(&id, enabled, at).map(Outcome::Buffered),
        Write::Register(request) => catalog.register(request, at).map(Outcome::Registered),
        Write::Deregister { id } => Ok(Outcome::Deregistered(catalog.deregister(&id))),
    };
    result.unwrap_or_else(Outcome::Refused)
}

#[derive(Serialize, Deserialize)]
struct Image {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    pipelines: Vec<PipelineImage>,
    services: Vec<ServiceImage>,
    next_registration: u64,
}

#[derive(Serialize, Deserialize)]
struct PipelineImage {
    #[serde(with = "super::types::proto_bytes")]
    config: PipelineConfig,
    #[serde(with = "super::types::proto_bytes")]
    status: PipelineStatus,
}

#[derive(Serialize, Deserialize)]
struct ServiceImage {
    #[serde(with = "super::types::proto_bytes")]
    service: RegisteredService,
    registration_id: String,
}

/// The snapshot bytes of `state`.
pub fn encode(state: &Replicated) -> Vec<u8> {
    let catalog = &state.catalog;
    let image = Image {
        last_applied: state.last_applied,
        membership: state.membership.clone(),
        pipelines: catalog
            .pipelines
            .values()
            .map(|stored| PipelineImage { config: stored.config.clone(), status: stored.status.clone() })
            .collect(),
        services: catalog
            .services
            .values()
            .map(|(service, registration_id)| ServiceImage {
                service: service.clone(),
                registration_id: registration_id.clone(),
            })
            .collect(),
        next_registration: catalog.next_registration,
    };
    serde_json::to_vec(&image).unwrap_or_default()
}

/// The state a snapshot holds.
pub fn decode(bytes: &[u8]) -> Result<Replicated, serde_json::Error> {
    let image: Image = serde_json::from_slice(bytes)?;
    let mut catalog = Catalog { next_registration: image.next_registration, ..Catalog::default() };
    for PipelineImage { config, status } in image.pipelines {
        catalog.pipelines.insert(config.id.clone(), StoredPipeline { config, status });
    }
    for ServiceImage { service, registration_id } in image.services {
        let id = service.identity.as_ref().map(|identity| identity.service_id.clone()).unwrap_or_default();
        catalog.services.insert(id, (service, registration_id));
    }
    Ok(Replicated { catalog, last_applied: image.last_applied, membership: image.membership })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use conveyor_router_contract::proto::common::ServiceIdentity;
    use conveyor_router_contract::proto::registry::RegisterRequest;

    fn command(write: Write) -> Command {
        Command { at: SystemTime::UNIX_EPOCH + Duration::from_secs(7), write }
    }

    #[test]
    fn writes_apply_identically_and_refusals_change_nothing() {
        let config = PipelineConfig { id: "ns/p".into(), enabled: true, ..Default::default() };
        let mut one = Catalog::default();
        let mut two = Catalog::default();
        for catalog in [&mut one, &mut two] {
            assert_eq!(
                apply(catalog, command(Write::CreatePipeline(config.clone()))),
                Outcome::Created("ns/p".into())
            );
        }
        assert_eq!(one, two, "the same command gives the same state on every member");
        let again = apply(&mut one, command(Write::CreatePipeline(config)));
        assert_eq!(again, Outcome::Refused("pipeline ns/p already exists".into()));
        assert_eq!(one, two);
        let missing = apply(&mut one, command(Write::DeletePipeline { id: "ns/q".into(), force: true }));
        assert_eq!(missing, Outcome::Refused("pipeline ns/q not found".into()));
    }

    #[test]
    fn a_snapshot_restores_the_catalog() {
        let mut state = Replicated::default();
        let config = PipelineConfig { id: "ns/p".into(), ..Default::default() };
        apply(&mut state.catalog, command(Write::CreatePipeline(config)));
        let identity = ServiceIdentity { service_id: "ns/s".into(), ..Default::default() };
        let register = RegisterRequest { identity: Some(identity), ..Default::default() };
        apply(&mut state.catalog, command(Write::Register(register)));
        state.last_applied = Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 9));
        assert_eq!(decode(&encode(&state)).unwrap(), state);
        assert!(decode(b"{\"truncated").is_err());
    }
}
