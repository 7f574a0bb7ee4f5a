//! The router's gRPC contract and the operator's client of it.
//!
//! - [`proto`] and [`config`]: the router's wire contract and configuration
//!   file, from the `conveyor-router-contract` crate (shared with the simulator).
//! - [`mapping`]: pure functions turning the operator's resources into messages.
//! - [`RouterClient`]: the [`Router`] implementation the controllers use
//!   (channel cache, deadlines, leader discovery, bounded retries).
//! - [`RouterError`]: what can go wrong, classified for conditions and metrics.

pub mod client;
pub mod error;
pub mod mapping;

pub use conveyor_router_contract::{config, proto};

pub use client::{ClientOptions, Members, Router, RouterClient};
pub use error::{ErrorClass, RouterError};
pub use mapping::{EndpointError, ServiceKind};
pub use proto::common::{Endpoint, ServiceIdentity, ServiceType};
pub use proto::registry::{RegisterRequest, RegisterResponse, RegisteredService};
pub use proto::router::{
    ClusterHealth, GetClusterStatusResponse, GetPipelineResponse, NodeRole, NodeStatus, PipelineConfig,
    PipelineStatus, StageStatus,
};
