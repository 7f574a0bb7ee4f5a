//! EtlSource, EtlTransform and EtlSink: gRPC services registered with a
//! router cluster. The three kinds behave identically, so one machine and one
//! reconcile serve them all, through [`ServiceResource`].
//!
//! A reconcile reads as observe (the caches: the cluster, its ready pods; and
//! the cluster's registered services, read once per health interval and
//! shared by all of its services) → assess (`assess`: one event) → machine
//! (`machine`) → register when the router lacks the registration or holds a
//! different one → status (only on change; an Event per transition).
//! Deletion deregisters in the runtime's finalizer. `states.md` is the
//! machine's specification.

pub mod assess;
pub mod conditions;
pub mod controller;
pub mod machine;
mod reconcile;
#[cfg(test)]
mod tests;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::Action;

use crate::crd::{ClusterRef, EtlPipelineSpec, EtlSink, EtlSource, EtlTransform, GrpcSpec, ServiceStatus};
use crate::pipeline::controller::{names_sink, names_source, names_step};
use crate::router::ServiceKind;
use crate::runtime::{Context, Error, Reconciler};

/// What the service reconcile needs of each of the three kinds.
pub trait ServiceResource: Reconciler<Status = ServiceStatus> {
    const KIND: ServiceKind;
    fn grpc(&self) -> &GrpcSpec;
    fn cluster_ref(&self) -> Option<&ClusterRef>;
    fn service_status(&self) -> Option<&ServiceStatus>;
    /// Whether a pipeline's spec names a service of this kind called `name`.
    fn referenced_by(spec: &EtlPipelineSpec, name: &str) -> bool;
}

macro_rules! service_resource {
    ($type:ty, $kind:expr, $names:expr) => {
        impl ServiceResource for $type {
            const KIND: ServiceKind = $kind;
            fn referenced_by(spec: &EtlPipelineSpec, name: &str) -> bool {
                $names(spec, name)
            }
            fn grpc(&self) -> &GrpcSpec {
                &self.spec.grpc
            }
            fn cluster_ref(&self) -> Option<&ClusterRef> {
                self.spec.cluster_ref.as_ref()
            }
            fn service_status(&self) -> Option<&ServiceStatus> {
                self.status.as_ref()
            }
        }

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

service_resource!(EtlSource, ServiceKind::Source, names_source);
service_resource!(EtlTransform, ServiceKind::Transform, names_step);
service_resource!(EtlSink, ServiceKind::Sink, names_sink);
