//! The `EtlPipeline` kind: a pipeline submitted to a router cluster.
//!
//! A reconcile reads as observe (`observe`: the caches, with the services it
//! names read as the runtime's `references::ServiceResource`, and the
//! cluster's pipelines from the runtime's `router_pipelines`: one
//! `ListPipelines` per health interval, shared by the cluster's pipelines and
//! its orphan sweep) → assess
//! (`assess`: one event and the one router call that fixes the router's copy)
//! → machine (`machine`, specified in `states.md`) → submit (`submit`: looked
//! up first, read back after) → status (`reconcile`), written only when it
//! changed. Deletion removes the pipeline from the router in the runtime's
//! finalizer.

pub mod assess;
pub mod conditions;
pub mod controller;
pub mod machine;
pub mod observation;
pub mod observe;
mod reconcile;
pub mod remove;
pub mod stages;
pub mod submit;

pub use reconcile::REFERENCES_RESOLVED;

#[cfg(test)]
mod tests;
