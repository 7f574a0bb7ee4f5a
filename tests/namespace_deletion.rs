//! Deleting everything at once, with the operator running: a namespace
//! (`kubectl delete namespace`, the usual way to remove an application) and a
//! cluster deleted together with its services and pipelines.
//!
//! The API server refuses every new object in a namespace being deleted,
//! Events included: a cleanup that needed its Event to land would hold its
//! finalizer, and the namespace, forever. And since Kubernetes 1.33 a
//! namespace's pods go before anything else in it (ordered namespace
//! deletion), so its router has stopped before its pipelines are deleted.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject};

use conveyor_etl_operator::crd::{ClusterPhase, EtlPipelineStatus, Phase, StorageRetention};
use conveyor_etl_operator::router::mapping;
use support::objects::{self, SERVICE_KINDS, api_of, create, kind_of, name_of};
use support::scenario::{FORM_TIMEOUT, Scenario, seed_cluster};

const PIPELINES: usize = 6;

/// A Ready cluster (volumes kept or deleted with it), the example services
/// and [`PIPELINES`] pipelines through them, all Ready: the services and
/// pipelines, created.
async fn ready_application(s: &Scenario, retention: StorageRetention) -> Vec<DynamicObject> {
    let mut cluster = seed_cluster("my-cluster");
    cluster.spec.storage.as_mut().expect("the seed has storage").retention_policy = retention;
    s.create(&cluster).await;
    s.wait_phase(ClusterPhase::Ready).await;
    let mut objects = objects::examples(&SERVICE_KINDS);
    for n in 0..PIPELINES {
        let mut pipeline = objects::examples(&["EtlPipeline"]).remove(0);
        pipeline.metadata.name = Some(format!("pipeline-{n}"));
        objects.push(pipeline);
    }
    for object in &objects {
        create(s, object).await;
    }
    for n in 0..PIPELINES {
        objects::wait_status::<EtlPipelineStatus>(
            s,
            "EtlPipeline",
            &format!("pipeline-{n}"),
            "Ready",
            |st| st.phase == Some(Phase::Ready),
        )
        .await;
    }
    objects
}

/// The router ids of `objects` the simulated router still holds.
fn on_router(s: &Scenario, objects: &[DynamicObject]) -> Vec<String> {
    let registered: Vec<String> = s
        .kubelet
        .sim
        .services()
        .into_iter()
        .filter_map(|service| service.identity.map(|identity| identity.service_id))
        .collect();
    let mut held = Vec::new();
    for object in objects {
        let name = name_of(object);
        if kind_of(object) == "EtlPipeline" {
            let id = mapping::pipeline_id(&s.namespace, &name);
            held.extend(s.kubelet.sim.pipeline(&id).map(|_| id));
        } else {
            let id = mapping::service_id(&s.namespace, &name);
            held.extend(registered.contains(&id).then_some(id));
        }
    }
    held
}

/// Polls `done` until it holds; past the deadline, fails with `what` and
/// what the namespace still holds.
async fn wait_until<F: Future<Output = bool>>(s: &Scenario, what: &str, mut done: impl FnMut() -> F) {
    let deadline = Instant::now() + FORM_TIMEOUT;
    while !done().await {
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; left:\n{}", leftovers(s));
        }
        tokio::time::sleep(Duration::from_millis(200)).await; // poll interval
    }
}

/// What the namespace still holds, and its Events.
fn leftovers(s: &Scenario) -> String {
    let kinds = "namespace,etlpipelines,etlsources,etltransforms,etlsinks,etlrouterclusters,pods";
    let left = support::kubectl(s.plane, &["get", kinds, "-n", &s.namespace, "-o", "yaml"]);
    let events = support::kubectl(s.plane, &["get", "events", "-n", &s.namespace]);
    format!("{}\n{}", String::from_utf8_lossy(&left.stdout), String::from_utf8_lossy(&events.stdout))
}

#[tokio::test]
async fn a_namespace_deleted_with_its_cluster_services_and_pipelines_goes() {
    let s = Scenario::new("ns-delete").await;
    ready_application(&s, StorageRetention::Retain).await;
    let namespaces: Api<Namespace> = Api::all(s.client.clone());
    namespaces.delete(&s.namespace, &DeleteParams::default()).await.unwrap();
    wait_until(&s, "the namespace gone", || async {
        namespaces.get_opt(&s.namespace).await.unwrap().is_none()
    })
    .await;
}

#[tokio::test]
async fn a_cluster_deleted_with_its_services_and_pipelines_is_emptied_before_it_goes() {
    let s = Scenario::new("all-delete").await;
    let objects = ready_application(&s, StorageRetention::Delete).await;
    assert_eq!(on_router(&s, &objects).len(), objects.len(), "all on the router before the deletion");

    // The cluster first, as `kubectl delete -f` of a file that lists it first does.
    s.clusters.delete("my-cluster", &DeleteParams::default()).await.unwrap();
    for object in &objects {
        api_of(&s, &kind_of(object)).delete(&name_of(object), &DeleteParams::default()).await.unwrap();
    }
    wait_until(&s, "every object gone", || async {
        let mut gone = s.clusters.get_opt("my-cluster").await.unwrap().is_none();
        for object in &objects {
            gone &= api_of(&s, &kind_of(object)).get_opt(&name_of(object)).await.unwrap().is_none();
        }
        gone
    })
    .await;
    let events = support::kubectl(s.plane, &["get", "events", "-n", &s.namespace]);
    let events = String::from_utf8_lossy(&events.stdout);
    assert_eq!(on_router(&s, &objects), Vec::<String>::new(), "left on the router; events:\n{events}");
}
