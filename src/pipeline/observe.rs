//! Reads what a pipeline reconcile needs: its cluster and references from the
//! watch caches, and the router's copy from the cluster's shared pipeline
//! list (one `ListPipelines` per cluster per health interval, shared by all
//! of its pipelines). Reads only; never writes, never GETs.

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::Store;

use super::observation::{
    Assignment, ClusterView, Leaving, Observation, Reference, RouterCopy, ServiceState,
};
use crate::crd::{EtlPipeline, Phase, ServiceStatus};
use crate::router::mapping::{self, PipelineRead, PipelineSummary, pipeline_config};
use crate::router::{ErrorClass, PipelineConfig, RouterError};
use crate::runtime::arrival;
use crate::runtime::cache::{Cache, get};
use crate::runtime::clusters::{self, Resolution};
use crate::runtime::references::ServiceResource;
use crate::runtime::router_pipelines::{PipelineIndex, listed, newer_read};
use crate::runtime::{Context, Error, conditions};

/// What one reconcile saw, and where it would submit.
pub struct Observed {
    pub observation: Observation,
    /// The resolved cluster's name.
    pub cluster: Option<String>,
    /// Its members' gRPC endpoints.
    pub members: Vec<String>,
    /// What this generation builds.
    pub desired: PipelineConfig,
    /// The members of the cluster the pipeline is leaving, if it is.
    pub leaving_members: Vec<String>,
    /// What is left of the reference grace (see [`arrival`]).
    pub grace_left: Option<std::time::Duration>,
}

pub fn namespace_of(pipeline: &EtlPipeline) -> Result<String, Error> {
    pipeline.namespace().ok_or_else(|| Error::InvalidObject("no metadata.namespace".into()))
}

pub async fn observe(pipeline: &EtlPipeline, ctx: &Context) -> Result<Observed, Error> {
    let namespace = namespace_of(pipeline)?;
    let generation = pipeline.metadata.generation.unwrap_or_default();
    let desired = pipeline_config(&namespace, &pipeline.name_any(), generation, &pipeline.spec);
    let resolution =
        clusters::resolve(&ctx.cache.router_clusters.state(), &namespace, pipeline.spec.cluster_ref.as_ref());
    // A cluster whose router serves no RouterAdmin says so; it is not asked again.
    let without_admin = match &resolution {
        Resolution::Found(found) => clusters::without_router_admin(found),
        _ => None,
    };
    let (cluster_view, cluster, members) = match &resolution {
        Resolution::Found(found) => {
            let name = found.name_any();
            let members = clusters::members(&ctx.cache, found);
            let ready = clusters::serves_dependants(found);
            let view = if ready && !members.is_empty() {
                ClusterView::Ready { name: name.clone() }
            } else {
                ClusterView::NotReady { name: name.clone() }
            };
            (view, Some(name), members)
        }
        ambiguous @ Resolution::Ambiguous(_) => {
            (ClusterView::Unresolved(ambiguous.problem(&namespace).unwrap_or_default()), None, vec![])
        }
        absent => (ClusterView::Absent(absent.problem(&namespace).unwrap_or_default()), None, vec![]),
    };
    let references = references(pipeline, &ctx.cache, &namespace);
    let settled =
        references.iter().all(|r| !matches!(r.state, ServiceState::Missing | ServiceState::NotReady));
    let router = match (&cluster_view, &cluster) {
        _ if without_admin.is_some() => Some(RouterCopy::Unimplemented(
            "its RouterAdmin condition: GetClusterStatus answers UNIMPLEMENTED".to_owned(),
        )),
        (ClusterView::Ready { .. }, Some(name)) if settled => {
            let (list, listed_at) = listed(ctx, &namespace, name, &members).await;
            Some(match newer_read(ctx, &members, &desired.id, listed_at) {
                Some(read) => read_copy(read.as_ref().as_ref(), &desired).0,
                None => router_copy(list.as_deref().map_err(|e| e.as_ref()), &desired),
            })
        }
        _ => None,
    };

    let (leaving, leaving_members) = leaving(pipeline, ctx, &namespace, cluster.as_deref());
    let grace_left = arrival::grace_left_now(pipeline.metadata.creation_timestamp.as_ref());
    let observation = Observation {
        generation,
        enabled: pipeline.spec.enabled,
        cluster: cluster_view,
        references,
        router,
        leaving,
        arriving: grace_left.is_some(),
    };
    Ok(Observed { observation, cluster, members, desired, leaving_members, grace_left })
}

/// The cluster the status records, when the spec now resolves to `target`,
/// another one; and that cluster's members.
fn leaving(
    pipeline: &EtlPipeline,
    ctx: &Context,
    namespace: &str,
    target: Option<&str>,
) -> (Option<Leaving>, Vec<String>) {
    let recorded = pipeline.status.as_ref().and_then(|status| status.cluster.as_deref());
    let (Some(from), Some(target)) = (recorded, target) else { return (None, Vec::new()) };
    if from == target {
        return (None, Vec::new());
    }
    let reference = crate::crd::ClusterRef { name: from.to_owned() };
    match clusters::resolve(&ctx.cache.router_clusters.state(), namespace, Some(&reference)) {
        Resolution::Found(old) if old.metadata.deletion_timestamp.is_none() => {
            (Some(Leaving { from: from.to_owned(), gone: false }), clusters::members(&ctx.cache, &old))
        }
        _ => (Some(Leaving { from: from.to_owned(), gone: true }), Vec::new()),
    }
}

/// The router's copy of `desired` in a `GetPipeline` answer, and its version.
pub fn read_copy(read: Option<&PipelineRead>, desired: &PipelineConfig) -> (RouterCopy, Option<u64>) {
    match read.and_then(|read| read.copy.as_ref().map(|copy| (copy, read.version))) {
        None => (RouterCopy::Absent, None),
        Some((copy, version)) => (copy_of(copy, desired), version),
    }
}

/// What the router holds of `desired`'s pipeline, from a list of its pipelines.
pub fn router_copy(list: Result<&PipelineIndex, &RouterError>, desired: &PipelineConfig) -> RouterCopy {
    match list {
        Err(error) if error.class() == ErrorClass::Unimplemented => {
            RouterCopy::Unimplemented(error.to_string())
        }
        Err(error) => RouterCopy::Unreachable(error.summary()),
        Ok(list) => match list.get(&desired.id) {
            None => RouterCopy::Absent,
            Some(stored) => copy_of(stored, desired),
        },
    }
}

/// The router's copy `stored`, compared with `desired`. `enabled` is
/// compared on its own: a copy that differs only there is enabled or
/// disabled, not replaced.
pub fn copy_of(stored: &PipelineSummary, desired: &PipelineConfig) -> RouterCopy {
    match stored.generation {
        None => RouterCopy::Foreign,
        generation => RouterCopy::Present {
            generation,
            enabled: stored.enabled,
            matches: stored.same_shape_as(desired),
        },
    }
}

/// The source, steps and sink in pipeline order, each as its service stands.
pub fn references(pipeline: &EtlPipeline, cache: &Cache, namespace: &str) -> Vec<Reference> {
    let spec = &pipeline.spec;
    let mut references = Vec::with_capacity(spec.steps.len() + 2);
    references.push(reference("source".into(), namespace, &spec.source, &cache.sources));
    for (index, step) in spec.steps.iter().enumerate() {
        references.push(reference(format!("step {}", index + 1), namespace, step, &cache.transforms));
    }
    references.push(reference("sink".into(), namespace, &spec.sink, &cache.sinks));
    references
}

fn reference<K: ServiceResource>(role: String, namespace: &str, name: &str, store: &Store<K>) -> Reference {
    let found: Option<Arc<K>> = get(store, namespace, name);
    let status = found.as_deref().and_then(|service| service.service_status());
    let assignment =
        found.as_deref().filter(|_| status.is_some_and(|s| s.registration_id.is_some())).map(|service| {
            Assignment {
                endpoint: service.grpc().endpoint.clone(),
                partitions: status.map(|s| s.assigned_partitions.clone()).unwrap_or_default(),
            }
        });
    let state = match found {
        None => ServiceState::Missing,
        Some(_) => service_state(status),
    };
    Reference { role, kind: K::KIND.kind_name(), name: name.to_owned(), state, assignment }
}

/// A service is usable once Ready; registered but Degraded is unhealthy
/// (the router still routes to it); anything else is not Ready yet.
pub fn service_state(status: Option<&ServiceStatus>) -> ServiceState {
    let Some(status) = status else { return ServiceState::NotReady };
    match status.phase {
        Some(Phase::Ready) => ServiceState::Ready,
        Some(Phase::Degraded) if status.registration_id.is_some() => {
            let why = conditions::find(&status.conditions, conditions::READY)
                .map(|c| c.message.clone())
                .unwrap_or_else(|| format!("health {}", status.health.as_deref().unwrap_or("Unknown")));
            ServiceState::Unhealthy(why)
        }
        _ => ServiceState::NotReady,
    }
}

/// The id the router knows this pipeline by.
pub fn pipeline_id(pipeline: &EtlPipeline) -> Result<String, Error> {
    Ok(mapping::pipeline_id(&namespace_of(pipeline)?, &pipeline.name_any()))
}
