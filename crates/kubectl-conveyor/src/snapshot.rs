//! What was read from the API server, and the lookups the commands make
//! over it. Pure: built by [`crate::fetch`] or, in tests, from JSON.

use conveyor_etl_operator::runtime::references::ServiceResource;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::ResourceExt;

use conveyor_etl_operator::crd::{
    ClusterRef, EtlPipeline, EtlRouterCluster, EtlSink, EtlSource, EtlTransform, ServiceStatus,
};

use crate::kinds::Kind;

/// The label on every router pod naming its EtlRouterCluster.
pub const CLUSTER_LABEL: &str = "conveyor.etl/cluster";

/// The Conveyor objects of one namespace (or of all), their router pods and
/// the Events about them.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub clusters: Vec<EtlRouterCluster>,
    pub pipelines: Vec<EtlPipeline>,
    pub sources: Vec<EtlSource>,
    pub transforms: Vec<EtlTransform>,
    pub sinks: Vec<EtlSink>,
    pub pods: Vec<Pod>,
    pub events: Vec<Event>,
}

/// A source, transform or sink, whichever kind it is.
#[derive(Clone, Copy, Debug)]
pub struct Service<'a> {
    pub kind: Kind,
    pub meta: &'a ObjectMeta,
    pub endpoint: &'a str,
    pub cluster_ref: Option<&'a ClusterRef>,
    pub status: Option<&'a ServiceStatus>,
}

impl<'a> Service<'a> {
    fn of<K: ServiceResource>(kind: Kind, service: &'a K) -> Service<'a> {
        Service {
            kind,
            meta: service.meta(),
            endpoint: &service.grpc().endpoint,
            cluster_ref: service.cluster_ref(),
            status: service.service_status(),
        }
    }

    pub fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        self.meta.namespace.as_deref().unwrap_or_default()
    }

    pub fn conditions(&self) -> &[Condition] {
        self.status.map(|s| s.conditions.as_slice()).unwrap_or_default()
    }
}

fn in_namespace(meta: &ObjectMeta, namespace: &str) -> bool {
    meta.namespace.as_deref().unwrap_or_default() == namespace
}

impl Snapshot {
    pub fn cluster(&self, namespace: &str, name: &str) -> Option<&EtlRouterCluster> {
        self.clusters.iter().find(|c| in_namespace(&c.metadata, namespace) && c.name_any() == name)
    }

    pub fn pipeline(&self, namespace: &str, name: &str) -> Option<&EtlPipeline> {
        self.pipelines.iter().find(|p| in_namespace(&p.metadata, namespace) && p.name_any() == name)
    }

    /// Every source, transform and sink, in that order.
    pub fn services(&self) -> Vec<Service<'_>> {
        let sources = self.sources.iter().map(|s| Service::of(Kind::Source, s));
        let transforms = self.transforms.iter().map(|s| Service::of(Kind::Transform, s));
        let sinks = self.sinks.iter().map(|s| Service::of(Kind::Sink, s));
        sources.chain(transforms).chain(sinks).collect()
    }

    pub fn service(&self, namespace: &str, kind: Kind, name: &str) -> Option<Service<'_>> {
        self.services()
            .into_iter()
            .find(|s| s.kind == kind && in_namespace(s.meta, namespace) && s.name() == name)
    }

    /// The router cluster an object belongs to, as the operator resolves it:
    /// the cluster its status records, else the one its `clusterRef` names,
    /// else the namespace's only cluster. `None` when none can be named.
    pub fn cluster_name_for(
        &self,
        namespace: &str,
        recorded: Option<&str>,
        cluster_ref: Option<&ClusterRef>,
    ) -> Option<String> {
        if let Some(named) = cluster_ref.map(|r| r.name.as_str()).or(recorded) {
            return Some(named.to_owned());
        }
        let mut here = self.clusters.iter().filter(|c| in_namespace(&c.metadata, namespace));
        match (here.next(), here.next()) {
            (Some(only), None) => Some(only.name_any()),
            _ => None,
        }
    }

    /// The cluster a pipeline runs on (see [`Snapshot::cluster_name_for`]).
    pub fn cluster_of_pipeline(&self, pipeline: &EtlPipeline) -> Option<String> {
        let recorded = pipeline.status.as_ref().and_then(|s| s.cluster.as_deref());
        self.cluster_name_for(
            pipeline.metadata.namespace.as_deref().unwrap_or_default(),
            recorded,
            pipeline.spec.cluster_ref.as_ref(),
        )
    }

    /// The cluster a service registers with (see [`Snapshot::cluster_name_for`]).
    pub fn cluster_of_service(&self, service: &Service<'_>) -> Option<String> {
        let recorded = service.status.and_then(|s| s.cluster.as_deref());
        self.cluster_name_for(service.namespace(), recorded, service.cluster_ref)
    }

    /// The services that resolve to cluster `name` of `namespace`.
    pub fn services_of(&self, namespace: &str, name: &str) -> Vec<Service<'_>> {
        self.services()
            .into_iter()
            .filter(|s| s.namespace() == namespace && self.cluster_of_service(s).as_deref() == Some(name))
            .collect()
    }

    /// The pipelines that resolve to cluster `name` of `namespace`, by name.
    pub fn pipelines_of(&self, namespace: &str, name: &str) -> Vec<&EtlPipeline> {
        let mut pipelines: Vec<&EtlPipeline> = self
            .pipelines
            .iter()
            .filter(|p| {
                in_namespace(&p.metadata, namespace) && self.cluster_of_pipeline(p).as_deref() == Some(name)
            })
            .collect();
        pipelines.sort_by_key(|p| p.name_any());
        pipelines
    }

    /// The router pods of a cluster, by ordinal.
    pub fn pods_of(&self, namespace: &str, cluster: &str) -> Vec<&Pod> {
        let mut pods: Vec<&Pod> = self
            .pods
            .iter()
            .filter(|p| {
                in_namespace(&p.metadata, namespace)
                    && p.labels().get(CLUSTER_LABEL).map(String::as_str) == Some(cluster)
            })
            .collect();
        pods.sort_by_key(|p| (ordinal(&p.name_any()).unwrap_or(u32::MAX), p.name_any()));
        pods
    }

    /// The Events about `kind`/`name` (and, when both know it, the same uid:
    /// a pod's earlier incarnation is another object), oldest first.
    pub fn events_about(&self, kind: &str, meta: &ObjectMeta) -> Vec<&Event> {
        let name = meta.name.as_deref().unwrap_or_default();
        let namespace = meta.namespace.as_deref().unwrap_or_default();
        let mut events: Vec<&Event> = self
            .events
            .iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some(kind)
                        && r.name.as_deref() == Some(name)
                        && r.namespace.as_deref().is_none_or(|ns| ns == namespace)
                        && match (r.uid.as_deref(), meta.uid.as_deref()) {
                            (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => a == b,
                            _ => true,
                        }
                })
            })
            .collect();
        events.sort_by_key(|e| crate::events::last_seen(e));
        events
    }
}

/// Ordinal of a StatefulSet pod from its name.
pub fn ordinal(pod_name: &str) -> Option<u32> {
    conveyor_etl_operator::router_cluster::build::ordinal_of(pod_name)
}

/// The condition `type_` of a list.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the Ready condition is True.
pub fn is_ready(conditions: &[Condition]) -> bool {
    condition(conditions, "Ready").is_some_and(|c| c.status == "True")
}

pub fn cluster_conditions(cluster: &EtlRouterCluster) -> &[Condition] {
    cluster.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default()
}

pub fn pipeline_conditions(pipeline: &EtlPipeline) -> &[Condition] {
    pipeline.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default()
}

/// Whether a pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Container restarts of a pod, all containers together.
pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|statuses| statuses.iter().map(|s| s.restart_count).sum())
        .unwrap_or(0)
}
