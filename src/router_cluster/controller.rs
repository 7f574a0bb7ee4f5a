//! The EtlRouterCluster controller: triggered by changes users make to a
//! cluster, by the objects it owns, and by its pods (a pod change triggers a
//! health poll at once); reading everything from the shared caches. (The
//! disruption budget is only read: a hand edit is undone at the next periodic
//! reconcile.)

use kube::runtime::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::build::CLUSTER_LABEL;
use super::observe::PodsWithoutRouterAdmin;
use crate::crd::EtlRouterCluster;
use crate::runtime::cache::{Cache, Watches};
use crate::runtime::{Context, reconciler};

/// Registers what this kind keeps across reconciles with the context.
pub fn register(ctx: &mut Context) {
    ctx.register(PodsWithoutRouterAdmin::default());
}

/// The cluster a labelled object belongs to.
fn cluster_of<K: Resource>(object: &K) -> Option<ObjectRef<EtlRouterCluster>> {
    let cluster = object.labels().get(CLUSTER_LABEL)?;
    Some(ObjectRef::new(cluster).within(&object.namespace()?))
}

pub fn controller(watches: &Watches, cache: &Cache) -> Controller<EtlRouterCluster> {
    reconciler::controller(watches.router_clusters.subscribe(), cache.router_clusters.clone())
        .owns_shared_stream(watches.stateful_sets.subscribe())
        .owns_shared_stream(watches.services.subscribe())
        .owns_shared_stream(watches.config_maps.subscribe())
        .watches_shared_stream(watches.pods.subscribe(), |pod| cluster_of(pod.as_ref()))
}
