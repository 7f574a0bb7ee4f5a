//! The `EtlPipeline` kind: a pipeline submitted to a router cluster.
//!
//! A reconcile reads as observe (`observe`: the caches, and the cluster's
//! pipelines from one shared `ListPipelines` per health interval) → assess
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
pub mod orphans;
mod reconcile;
pub mod stages;
pub mod submit;

pub use reconcile::REFERENCES_RESOLVED;

/// A router cluster's pipelines by id, as one `ListPipelines` returned them.
pub type PipelineIndex = std::collections::HashMap<String, crate::router::PipelineConfig>;

#[cfg(test)]
mod tests;
