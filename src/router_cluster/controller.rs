//! Wires the EtlRouterCluster reconciler to the API server: the clusters,
//! the objects they own, and their pods (so a pod change triggers a health
//! poll at once).

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::runtime::{Controller, reflector::ObjectRef, watcher};
use kube::{Api, Client, ResourceExt};

use super::build::CLUSTER_LABEL;
use super::reconcile::{error_policy, run};
use crate::controller::Context;
use crate::crd::EtlRouterCluster;

const MANAGED: &str = "app.kubernetes.io/managed-by=conveyor-etl-operator";

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Runs the EtlRouterCluster controller until `shutdown` resolves.
pub fn run_controller(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> {
    let client = &ctx.client;
    let owned = watcher::Config::default().labels(MANAGED);
    let pods = watcher::Config::default().labels(CLUSTER_LABEL);
    Controller::new(api::<EtlRouterCluster>(client, namespace), watcher::Config::default())
        .owns(api::<StatefulSet>(client, namespace), owned.clone())
        .owns(api::<Service>(client, namespace), owned.clone())
        .owns(api::<ConfigMap>(client, namespace), owned)
        .watches(api::<Pod>(client, namespace), pods, |pod| {
            let cluster = pod.labels().get(CLUSTER_LABEL)?;
            Some(ObjectRef::new(cluster).within(&pod.namespace()?))
        })
        .graceful_shutdown_on(shutdown)
        .run(run, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "EtlRouterCluster reconcile error");
            }
        })
}
