//! conveyor-etl-operator: runs Conveyor ETL router clusters, pipelines and
//! services on Kubernetes.
//!
//! Layout: `crd` holds the resource types; each kind has its own module with
//! its state machine, its reconciler and their tests (`router_cluster`,
//! later `pipeline` and `service`); `router` is the gRPC client of the router
//! and `sim` a simulator of a router cluster; `runtime` is what every kind
//! stands on (context, caches, errors, finalizer, status, retries);
//! `controller` wires the kinds to the API server on top. `demo` (feature
//! `demo`, on by default) runs it all on one machine: a local control plane,
//! a fake kubelet with simulated router nodes, and the operator in-process.

pub mod controller;
pub mod crd;
#[cfg(feature = "demo")]
pub mod demo;
pub mod pipeline;
pub mod router;
pub mod router_cluster;
pub mod runtime;
pub mod service;
pub mod sim;
pub mod telemetry;
