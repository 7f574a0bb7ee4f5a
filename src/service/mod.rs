//! EtlSource, EtlTransform and EtlSink: gRPC services registered with a
//! router cluster. The three kinds behave identically, so one machine and one
//! reconcile serve them all, through the runtime's [`ServiceResource`] (the
//! same view of them pipelines read their stages through).
//!
//! A reconcile reads as observe (the caches: the cluster, its ready pods; and
//! the cluster's registered services, read once per health interval and
//! shared by the cluster and all of its services) → assess (`assess`: one
//! event) → machine (`machine`) → register when the router lacks the
//! registration or holds a different one → status (only on change; an Event
//! per transition). Deletion waits while pipelines still name the service,
//! then deregisters in the runtime's finalizer. `states.md` is the machine's
//! specification.
//!
//! A router whose registry is per member and leased (it serves `Heartbeat`,
//! as the public router does) is served by [`leases`] instead of the shared
//! `ListServices` snapshot: registered on every member and renewed there.
//!
//! [`ServiceResource`]: crate::runtime::references::ServiceResource

pub mod assess;
pub mod conditions;
pub mod controller;
pub mod leases;
pub mod machine;
mod reconcile;
#[cfg(test)]
mod tests;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::Action;

use crate::crd::{EtlSink, EtlSource, EtlTransform, ServiceStatus};
use crate::runtime::{Context, Error, Reconciler};

macro_rules! reconciled_service {
    ($type:ty) => {
        impl Reconciler for $type {
            type Status = ServiceStatus;

            fn needs_cleanup(&self) -> bool {
                reconcile::needs_cleanup(self)
            }

            fn conditions(&self) -> &[Condition] {
                reconcile::conditions_of(self.status.as_ref())
            }

            fn status_with(&self, conditions: Vec<Condition>) -> ServiceStatus {
                ServiceStatus { conditions, ..self.status.clone().unwrap_or_default() }
            }

            async fn reconcile(&self, ctx: &Context) -> Result<Action, Error> {
                reconcile::reconcile(self, ctx).await
            }

            async fn cleanup(&self, ctx: &Context) -> Result<Action, Error> {
                reconcile::cleanup(self, ctx).await
            }
        }
    };
}

reconciled_service!(EtlSource);
reconciled_service!(EtlTransform);
reconciled_service!(EtlSink);
