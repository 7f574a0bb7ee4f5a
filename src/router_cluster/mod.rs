//! The `EtlRouterCluster` kind: a Raft cluster of router nodes.
//!
//! A reconcile reads as observe (`observe`: the caches and one health poll
//! per ready pod, or, for a router without `RouterAdmin`, one shared
//! `ServiceRegistry` check per health interval) → validate (`validate`) →
//! assess (`assess`, and `assess_pods` when health comes from the pods: the
//! one event and the next safe step) → machine (`machine`: the next phase) → act
//! (`act`: apply what `build` describes and changed, take one roll step) →
//! status (`status`: written only on change, an Event per transition); a
//! Ready cluster then has the runtime sweep its orphaned router pipelines
//! (`runtime::orphans`). `reconcile` strings them together on the shared
//! runtime; `controller` registers the kind's own state (the pods whose
//! router serves no `RouterAdmin`) with the context; `states.md` at the
//! repository root is the machine's specification.

pub mod act;
pub mod assess;
mod assess_pods;
pub mod build;
pub mod conditions;
pub mod controller;
pub mod machine;
pub mod observation;
pub mod observe;
pub mod reconcile;
pub mod status;
pub mod validate;

#[cfg(test)]
mod tests;
