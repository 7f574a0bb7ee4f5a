//! The EtlPipeline controller: triggered by what users change on a pipeline,
//! by changes of the router clusters it may run on, and by changes of the
//! sources, transforms and sinks it references (a service turning Ready
//! moves its pipelines on at once, without polling).

use kube::runtime::Controller;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::crd::EtlPipeline;
use crate::runtime::cache::{Cache, Watches};
use crate::runtime::clusters::dependants;
use crate::runtime::reconciler;
use crate::runtime::references::{ServiceResource, pipelines_naming};

/// The pipelines that name `service`: its change may move them on.
fn naming<K: ServiceResource>(pipelines: &Store<EtlPipeline>, service: &K) -> Vec<ObjectRef<EtlPipeline>> {
    pipelines_naming(pipelines, service)
        .iter()
        .map(|pipeline| ObjectRef::from_obj(pipeline.as_ref()))
        .collect()
}

pub fn controller(watches: &Watches, cache: &Cache) -> Controller<EtlPipeline> {
    let store = cache.pipelines.clone();
    let (by_cluster, by_source, by_step, by_sink) =
        (store.clone(), store.clone(), store.clone(), store.clone());
    reconciler::controller(watches.pipelines.subscribe(), store)
        .watches_shared_stream(watches.router_clusters.subscribe(), move |cluster| {
            dependants(
                &by_cluster,
                &cluster,
                |pipeline: &EtlPipeline| pipeline.spec.cluster_ref.as_ref(),
                |pipeline: &EtlPipeline| pipeline.status.as_ref()?.cluster.as_deref(),
            )
        })
        .watches_shared_stream(watches.sources.subscribe(), move |source| naming(&by_source, source.as_ref()))
        .watches_shared_stream(watches.transforms.subscribe(), move |step| naming(&by_step, step.as_ref()))
        .watches_shared_stream(watches.sinks.subscribe(), move |sink| naming(&by_sink, sink.as_ref()))
}
