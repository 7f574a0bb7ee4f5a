//! The kind-agnostic runtime every kind's controller stands on.
//!
//! Dependencies point one way: `runtime` knows the resource types (`crd`) and
//! the router client, never a kind's module; each kind (`router_cluster`,
//! `pipeline`, `service`) builds on it and on no other kind; `controller`
//! wires the kinds to the API server on top.
//!
//! What lives here: the shared [`Context`], with the state each kind
//! registers for itself at wiring time ([`Context::register`],
//! [`Context::state`]); the [`Error`] every reconcile fails with, with a
//! PascalCase reason and a metrics label; the watch caches ([`cache`]) that
//! replace per-reconcile GETs; the [`Reconciler`] trait and
//! [`reconciler::run`], which handles the cleanup finalizer (only while a kind
//! needs one), the `Synced` condition, Events on failure and retry backoff;
//! status diff-and-patch ([`status`]); ownership-checked server-side apply
//! ([`apply`]); Prometheus metrics ([`metrics`]); the `policy` API version
//! the server serves ([`policy`]); and the generic `states.md` table harness
//! (`state_table`, test builds only).
//!
//! And what two kinds share: which router cluster a dependant belongs to
//! ([`clusters`]); the service resources as one type and which pipelines name
//! a service ([`references`]); how long a reference absent from the caches is
//! taken for one on its way ([`arrival`]); the router's per-cluster snapshots (registered
//! services, [`router_pipelines`]); and the sweep of router pipelines whose
//! EtlPipeline is gone, run from a cluster's reconcile ([`orphans`]).

pub mod apply;
pub mod arrival;
pub mod cache;
pub mod clusters;
pub mod conditions;
mod context;
mod error;
mod event_series;
pub mod events;
mod finalizers;
pub mod metrics;
pub mod namespaces;
mod object_metrics;
pub mod orphans;
mod phase_machine;
pub mod policy;
pub mod reconciler;
pub mod references;
mod retry;
pub mod router_pipelines;
pub mod snapshot;
#[cfg(test)]
pub mod state_table;
pub mod status;
pub mod subscription;
pub mod triggers;
mod written;

pub use cache::Cache;
pub use context::{Context, Timing};
pub use error::{Error, Reason};
pub use reconciler::Reconciler;

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "conveyor-etl-operator";
/// `conveyor.etl/paused: "true"` on any resource: the operator observes and
/// reports, but changes nothing.
pub const PAUSED_ANNOTATION: &str = "conveyor.etl/paused";
/// `conveyor.etl/restartedAt: <time>` on an EtlRouterCluster (what
/// `kubectl conveyor restart` sets): copied onto the router pods' template,
/// so a new value rolls the pods through the usual path, one at a time and
/// the leader last, as a template edit does.
pub const RESTARTED_AT_ANNOTATION: &str = "conveyor.etl/restartedAt";

/// Whether `object` carries the pause annotation.
pub fn paused<K: kube::Resource>(object: &K) -> bool {
    object.meta().annotations.as_ref().and_then(|a| a.get(PAUSED_ANNOTATION)).is_some_and(|v| v == "true")
}
