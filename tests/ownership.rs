//! What the operator does not own stays untouched: objects a person created
//! under a cluster's derived names, pods that merely carry a cluster's label,
//! and the API server's refusals told apart from a stale view. The operator
//! runs in-process under its RBAC against the real control plane; the test
//! plays the kubelet.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

use conveyor_etl_operator::crd::{ClusterPhase, EtlRouterCluster};
use conveyor_etl_operator::runtime::reconciler::is_stale_view;
use support::operator::shared_with_rbac;
use support::scenario::{FORM_TIMEOUT, Scenario, condition, phase_of, seed_cluster};
use support::{eventually, test_namespace};

fn object<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
    serde_json::from_value(value).unwrap()
}

/// The cluster's `Synced=False` message, once it names `what`.
async fn blocked_naming(s: &Scenario, what: &str) -> String {
    let message = synced_false_naming(s, what).await;
    s.wait_event(&format!("a Warning Event naming {what}"), |type_, reason, note| {
        type_ == "Warning" && reason == "ObjectOwnedElsewhere" && note.contains(what)
    })
    .await;
    message
}

/// Without the Event: the recorder folds a repeated reason about the same
/// object into its first Event (kube's series), keeping that Event's note.
async fn synced_false_naming(s: &Scenario, what: &str) -> String {
    let blocked = s
        .wait_for(&format!("Synced=False naming {what}"), |c| {
            c.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Synced")).is_some_and(
                |synced| {
                    synced.status == "False"
                        && synced.reason == "ObjectOwnedElsewhere"
                        && synced.message.contains(what)
                },
            )
        })
        .await;
    condition(&blocked, "Synced").2.to_owned()
}

#[tokio::test]
async fn a_persons_objects_under_the_derived_names_are_named_and_never_taken_over() {
    let s = Scenario::new("persons").await;
    let maps: Api<ConfigMap> = Api::namespaced(s.client.clone(), &s.namespace);
    let services: Api<Service> = Api::namespaced(s.client.clone(), &s.namespace);
    let sets: Api<StatefulSet> = Api::namespaced(s.client.clone(), &s.namespace);
    let theirs_map = maps
        .create(
            &Default::default(),
            &object(serde_json::json!({"metadata": {"name": "my-cluster-config"}, "data": {"mine": "yes"}})),
        )
        .await
        .unwrap();
    let theirs_service = services
        .create(
            &Default::default(),
            &object(
                serde_json::json!({"metadata": {"name": "my-cluster"}, "spec": {"ports": [{"port": 80}]}}),
            ),
        )
        .await
        .unwrap();
    let untouched = |before: &kube::api::ObjectMeta, after: &kube::api::ObjectMeta| {
        assert_eq!(after.resource_version, before.resource_version, "{:?} was written", after.name);
        assert!(after.owner_references.is_none(), "{:?} was given an owner", after.name);
    };

    s.create(&seed_cluster("my-cluster")).await;
    let message = blocked_naming(&s, "ConfigMap my-cluster-config").await;
    assert!(message.contains("created outside the operator"), "{message}");
    // Found by one read of a name the owned caches do not hold.
    let reads = owned_object_reads(&s);
    assert!(reads.iter().any(|uri| uri.ends_with("/configmaps/my-cluster-config")), "{reads:?}");
    assert!(sets.get_opt("my-cluster").await.unwrap().is_none(), "applied beside a person's object");
    let map = maps.get("my-cluster-config").await.unwrap();
    untouched(&theirs_map.metadata, &map.metadata);
    assert_eq!(map.data.unwrap()["mine"], "yes");

    // Theirs goes: the cluster moves on to the next object that is not its own.
    maps.delete("my-cluster-config", &Default::default()).await.unwrap();
    synced_false_naming(&s, "Service my-cluster").await;
    untouched(&theirs_service.metadata, &services.get("my-cluster").await.unwrap().metadata);

    // Deleting the cluster takes nothing of theirs along.
    s.clusters.delete("my-cluster", &Default::default()).await.unwrap();
    eventually(FORM_TIMEOUT, "the cluster gone", || async {
        s.clusters.get_opt("my-cluster").await.ok()?.is_none().then_some(())
    })
    .await;
    untouched(&theirs_service.metadata, &services.get("my-cluster").await.unwrap().metadata);

    // Once the last of theirs is gone, a cluster under that name forms.
    s.create(&seed_cluster("my-cluster")).await;
    blocked_naming(&s, "Service my-cluster").await;
    services.delete("my-cluster", &Default::default()).await.unwrap();
    s.wait_phase(ClusterPhase::Ready).await;
}

/// Counts the connections made to `address` (each is dropped at once).
async fn count_connections(address: std::net::SocketAddr) -> Arc<AtomicUsize> {
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(connection);
        }
    });
    count
}

/// The operator's GETs of the kinds a cluster owns in the scenario's namespace, from the audit log.
fn owned_object_reads(s: &Scenario) -> Vec<String> {
    let log = std::fs::read_to_string(s.plane.audit_log()).unwrap_or_default();
    let in_namespace = format!("/namespaces/{}/", s.namespace);
    let kinds = ["/configmaps/", "/services/", "/statefulsets/", "/poddisruptionbudgets/"];
    log.lines()
        .filter_map(|line| serde_json::from_str::<support::control_plane::AuditedWrite>(line).ok())
        .filter(|entry| entry.user.username == support::control_plane::OPERATOR_USER && entry.verb == "get")
        .map(|entry| entry.request_uri)
        .filter(|uri| uri.contains(&in_namespace) && kinds.iter().any(|kind| uri.contains(kind)))
        .collect()
}

#[tokio::test]
async fn a_stray_pod_with_the_clusters_label_is_neither_counted_nor_polled_nor_evicted() {
    let mut s = Scenario::new("stray").await;
    s.create(&seed_cluster("my-cluster")).await;
    let ready = s.wait_phase(ClusterPhase::Ready).await;
    assert_eq!(ready.status.as_ref().unwrap().ready_replicas, Some(3));
    // From here on only the direct reconciles below run.
    s.operator.take().unwrap().stop().await;

    // Ready, with an address where a router would answer, and an old
    // template's look (no revision): everything but the StatefulSet's control.
    s.kubelet.break_image("stray");
    let ip = s.kubelet.ip(190);
    let connections = count_connections((ip, 50051).into()).await;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.namespace);
    let stray: Pod = object(serde_json::json!({
        "metadata": {"name": "stray-2", "labels": {"conveyor.etl/cluster": "my-cluster", "app.kubernetes.io/name": "conveyor-etl-router"}},
        // What the namespace's restricted Pod Security Standard asks for.
        "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "router", "image": "stray", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
        },
    }));
    let stray = pods.create(&Default::default(), &stray).await.unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let running = serde_json::json!({"status": {
        "phase": "Running",
        "podIP": ip.to_string(),
        "podIPs": [{"ip": ip.to_string()}],
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
    }});
    pods.patch_status("stray-2", &PatchParams::default(), &Patch::Merge(running)).await.unwrap();

    // A context whose caches list after the stray pod is there and ready.
    let (ctx, _caches) = support::operator::direct_context(s.plane, &s.namespace).await;
    let reads_before = owned_object_reads(&s).len();
    for _ in 0..3 {
        let cluster = Arc::new(s.get().await);
        conveyor_etl_operator::runtime::reconciler::run(cluster, ctx.clone()).await.unwrap();
    }

    assert_eq!(connections.load(Ordering::SeqCst), 0, "the stray pod was asked as a router");
    // The objects the caches hold as the cluster's own are not read again.
    let reads = owned_object_reads(&s);
    assert!(reads.len() == reads_before, "{:?}", &reads[reads_before..]);
    let after = pods.get("stray-2").await.unwrap();
    assert_eq!(after.uid(), stray.uid());
    assert!(after.metadata.deletion_timestamp.is_none(), "the stray pod was evicted or deleted");
    let cluster: EtlRouterCluster = s.get().await;
    assert_eq!(phase_of(&cluster), Some(ClusterPhase::Ready));
    let status = cluster.status.unwrap();
    assert_eq!(status.ready_replicas, Some(3), "{status:?}");
    let mut members: Vec<u64> = status.members.iter().map(|m| m.node_id).collect();
    members.sort();
    assert_eq!(members, [1, 2, 3], "{status:?}");
}

#[tokio::test]
async fn only_a_failed_json_patch_test_is_a_stale_view() {
    let client = shared_with_rbac().client().await;
    let namespace = test_namespace(&client, "stale-view").await;
    let maps: Api<ConfigMap> = Api::namespaced(client, &namespace);
    maps.create(&Default::default(), &object(serde_json::json!({"metadata": {"name": "probe"}})))
        .await
        .unwrap();
    let patch =
        |operations: serde_json::Value| Patch::Json::<()>(serde_json::from_value(operations).unwrap());

    // The finalizer helper's guard, against a list that moved on.
    let moved = patch(serde_json::json!([
        {"op": "test", "path": "/metadata/finalizers", "value": ["someone/else"]},
        {"op": "add", "path": "/metadata/finalizers/-", "value": "conveyor.etl/cleanup"},
    ]));
    let error = maps.patch("probe", &PatchParams::default(), &moved).await.unwrap_err();
    assert!(is_stale_view(&error), "{error:?}");

    // The guard holds, but the server refuses the object the patch makes.
    let refused = patch(serde_json::json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["not a finalizer name"]},
    ]));
    let error = maps.patch("probe", &PatchParams::default(), &refused).await.unwrap_err();
    assert!(matches!(&error, kube::Error::Api(status) if status.code == 422), "{error:?}");
    assert!(!is_stale_view(&error), "{error:?}");
}
