//! Reading a [`Snapshot`] from the API server.

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use conveyor_etl_operator::crd::{EtlPipeline, EtlRouterCluster, EtlSink, EtlSource, EtlTransform};

use crate::snapshot::{CLUSTER_LABEL, Snapshot};

/// What to read besides the five kinds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extras {
    /// The router pods (`conveyor.etl/cluster` label).
    pub pods: bool,
    /// The namespace's Events.
    pub events: bool,
}

async fn list<K>(client: &Client, namespace: Option<&str>, params: &ListParams) -> anyhow::Result<Vec<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let mut items = api.list(params).await.map_err(|error| explain(error, K::plural(&()).as_ref()))?.items;
    for item in &mut items {
        item.meta_mut().managed_fields = None;
    }
    Ok(items)
}

/// A list refused for a reason a user can act on, said in their terms.
fn explain(error: kube::Error, plural: &str) -> anyhow::Error {
    match &error {
        kube::Error::Api(status) if status.code == 404 => {
            anyhow::anyhow!(
                "the API server does not serve {plural}: are the Conveyor CRDs installed? ({error})"
            )
        }
        kube::Error::Api(status) if status.code == 403 => {
            anyhow::anyhow!("not allowed to list {plural}: {}", status.message)
        }
        _ => anyhow::Error::new(error).context(format!("cannot list {plural}")),
    }
}

/// The Conveyor objects of `namespace` (every namespace when `None`) and the `extras`.
pub async fn snapshot(client: &Client, namespace: Option<&str>, extras: Extras) -> anyhow::Result<Snapshot> {
    let all = ListParams::default();
    let (clusters, pipelines, sources, transforms, sinks) = tokio::try_join!(
        list::<EtlRouterCluster>(client, namespace, &all),
        list::<EtlPipeline>(client, namespace, &all),
        list::<EtlSource>(client, namespace, &all),
        list::<EtlTransform>(client, namespace, &all),
        list::<EtlSink>(client, namespace, &all),
    )?;
    let pods = if extras.pods {
        list::<Pod>(client, namespace, &ListParams::default().labels(CLUSTER_LABEL)).await?
    } else {
        Vec::new()
    };
    let events = if extras.events {
        list::<Event>(client, namespace, &all).await.context("reading Events")?
    } else {
        Vec::new()
    };
    Ok(Snapshot { clusters, pipelines, sources, transforms, sinks, pods, events })
}
