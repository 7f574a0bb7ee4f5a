//! conveyor-etl-operator: runs Conveyor ETL router clusters, pipelines and
//! services on Kubernetes.
//!
//! Layout: `crd` holds the resource types; each kind has its own module with
//! its state machine, its reconciler and their tests (`router_cluster`,
//! `pipeline`, and `service` for the three service kinds); `router` is the
//! gRPC client of the router; `intern` keeps one copy of the texts cached
//! objects and router reads repeat; `runtime` is what every kind stands on
//! (context, caches, errors, finalizer, status, retries, and what kinds
//! share: reference lookups, the router's per-cluster snapshots, the orphan
//! sweep); `controller` wires the kinds to the API server on top, each kind
//! registering its own state with the context. A kind depends on the
//! runtime, never on another kind. The router's wire
//! contract and the telemetry set-up are crates of their own
//! (`crates/router-contract`, `crates/telemetry`); the router simulator, the
//! test bed with the demo, the benchmark and the chaos suite live beside them
//! in `crates/` and are not part of the operator.

pub mod controller;
pub mod crd;
pub mod intern;
pub mod pipeline;
pub mod router;
pub mod router_cluster;
pub mod runtime;
pub mod service;

pub use conveyor_telemetry as telemetry;
