//! A service controller: triggered by what users change on the service, and
//! by changes of the router clusters it may belong to (a cluster turning
//! Ready resumes its services at once, without polling).

use kube::runtime::Controller;
use kube::runtime::reflector::Store;

use super::ServiceResource;
use crate::crd::EtlRouterCluster;
use crate::runtime::cache::Watch;
use crate::runtime::clusters::dependants;
use crate::runtime::reconciler;

pub fn controller<K: ServiceResource>(
    services: &Watch<K>,
    store: Store<K>,
    clusters: &Watch<EtlRouterCluster>,
) -> Controller<K> {
    let by_cluster = store.clone();
    reconciler::controller(services.subscribe(), store)
        .watches_shared_stream(clusters.subscribe(), move |cluster| {
            dependants(&by_cluster, &cluster, K::cluster_ref)
        })
}
