//! The Conveyor ETL router's contract, as both sides of it use it: the
//! operator's client and the router simulator's server.
//!
//! - [`proto`]: code generated from the repository's `proto/*.proto`,
//!   byte-compatible with the router's wire contract (packages
//!   `conveyor_etl.common`, `conveyor_etl.router`, `conveyor_etl.registry`).
//! - [`config`]: the public router's configuration file, which the operator
//!   writes and the simulator reads.

pub mod config;

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
