//! The router's gRPC contract and the operator's client of it.
//!
//! - [`proto`]: code generated from `proto/*.proto`, byte-compatible with the
//!   router's wire contract (packages `conveyor_etl.common`, `conveyor_etl.router`,
//!   `conveyor_etl.registry`).
//! - [`mapping`]: pure functions turning the operator's resources into messages.
//! - [`RouterClient`]: the [`Router`] implementation the controllers use
//!   (channel cache, deadlines, leader discovery, bounded retries).
//! - [`RouterError`]: what can go wrong, classified for conditions and metrics.
//! - [`config`]: the public router's configuration file, which the operator
//!   writes and the simulator reads.

pub mod client;
pub mod config;
pub mod error;
pub mod mapping;

/// Generated message and service types.
pub mod proto {
    /// `conveyor_etl.common`: service identity, endpoint, enums.
    pub mod common {
        tonic::include_proto!("conveyor_etl.common");
    }
    /// `conveyor_etl.router`: the `RouterAdmin` service (pipelines, cluster status).
    pub mod router {
        tonic::include_proto!("conveyor_etl.router");
    }
    /// `conveyor_etl.registry`: the `ServiceRegistry` service (the methods the operator uses).
    pub mod registry {
        tonic::include_proto!("conveyor_etl.registry");
    }
}

pub use client::{ClientOptions, Members, Router, RouterClient};
pub use error::{ErrorClass, RouterError};
pub use mapping::{EndpointError, ServiceKind};
pub use proto::common::{Endpoint, ServiceIdentity, ServiceType};
pub use proto::registry::{RegisterRequest, RegisterResponse, RegisteredService};
pub use proto::router::{
    ClusterHealth, GetClusterStatusResponse, GetPipelineResponse, NodeRole, NodeStatus, PipelineConfig,
    PipelineStatus, StageStatus,
};
