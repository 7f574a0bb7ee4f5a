//! The EtlPipeline controller: triggered by what users change on a pipeline,
//! by changes of the router clusters it may run on, and by changes of the
//! sources, transforms and sinks it references (a service turning Ready
//! moves its pipelines on at once, without polling).

use kube::ResourceExt;
use kube::runtime::Controller;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::crd::{EtlPipeline, EtlPipelineSpec};
use crate::runtime::cache::{Cache, Watches};
use crate::runtime::clusters::dependants;
use crate::runtime::reconciler;

/// The pipelines in `namespace` whose spec `names` the service `name`.
pub fn referencing(
    store: &Store<EtlPipeline>,
    namespace: Option<String>,
    name: &str,
    names: fn(&EtlPipelineSpec, &str) -> bool,
) -> Vec<ObjectRef<EtlPipeline>> {
    store
        .state()
        .iter()
        .filter(|pipeline| pipeline.namespace() == namespace && names(&pipeline.spec, name))
        .map(|pipeline| ObjectRef::from_obj(pipeline.as_ref()))
        .collect()
}

pub fn names_source(spec: &EtlPipelineSpec, name: &str) -> bool {
    spec.source == name
}

pub fn names_step(spec: &EtlPipelineSpec, name: &str) -> bool {
    spec.steps.iter().any(|step| step == name)
}

pub fn names_sink(spec: &EtlPipelineSpec, name: &str) -> bool {
    spec.sink == name
}

pub fn controller(watches: &Watches, cache: &Cache) -> Controller<EtlPipeline> {
    let store = cache.pipelines.clone();
    let (by_cluster, by_source, by_step, by_sink) =
        (store.clone(), store.clone(), store.clone(), store.clone());
    reconciler::controller(watches.pipelines.subscribe(), store)
        .watches_shared_stream(watches.router_clusters.subscribe(), move |cluster| {
            dependants(&by_cluster, &cluster, |pipeline: &EtlPipeline| pipeline.spec.cluster_ref.as_ref())
        })
        .watches_shared_stream(watches.sources.subscribe(), move |source| {
            referencing(&by_source, source.namespace(), &source.name_any(), names_source)
        })
        .watches_shared_stream(watches.transforms.subscribe(), move |transform| {
            referencing(&by_step, transform.namespace(), &transform.name_any(), names_step)
        })
        .watches_shared_stream(watches.sinks.subscribe(), move |sink| {
            referencing(&by_sink, sink.namespace(), &sink.name_any(), names_sink)
        })
}
