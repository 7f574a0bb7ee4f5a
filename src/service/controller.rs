//! A service controller: triggered by what users change on the service, and
//! by changes of the router clusters it may belong to (a cluster turning
//! Ready resumes its services at once, without polling).

use kube::ResourceExt;
use kube::runtime::Controller;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::crd::{EtlPipeline, EtlRouterCluster};
use crate::runtime::cache::Watch;
use crate::runtime::clusters::{dependants, dependants_view};
use crate::runtime::references::ServiceResource;
use crate::runtime::triggers::on_change;
use crate::runtime::{Reconciler, reconciler};

/// Registers what the service kinds keep across reconciles with the context.
pub fn register(ctx: &mut crate::runtime::Context) {
    ctx.register(super::leases::Leases::new(ctx.router.clone()));
}

pub fn controller<K: ServiceResource + Reconciler>(
    services: &Watch<K>,
    store: Store<K>,
    clusters: (&Watch<EtlRouterCluster>, Store<EtlRouterCluster>),
    pipelines: &Watch<EtlPipeline>,
) -> Controller<K> {
    let (by_cluster, deleting) = (store.clone(), store.clone());
    reconciler::controller(services.subscribe(), store)
        .watches_shared_stream(
            on_change(clusters.0.subscribe(), clusters.1, dependants_view),
            move |cluster| {
                dependants(&by_cluster, &cluster, K::cluster_ref, |service: &K| {
                    service.service_status()?.cluster.as_deref()
                })
            },
        )
        .watches_shared_stream(pipelines.subscribe(), move |pipeline| deleting_in(&deleting, &pipeline))
}

/// The services of `pipeline`'s namespace being deleted: a pipeline change
/// may release them (its deletion, or an edit that drops the reference).
/// Deletions are rare, so pipeline changes cost nothing otherwise.
fn deleting_in<K: ServiceResource>(store: &Store<K>, pipeline: &EtlPipeline) -> Vec<ObjectRef<K>> {
    store
        .state()
        .iter()
        .filter(|service| service.namespace() == pipeline.namespace())
        .filter(|service| service.meta().deletion_timestamp.is_some())
        .map(|service| ObjectRef::from_obj(service.as_ref()))
        .collect()
}
