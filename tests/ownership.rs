//! What the operator does not own stays untouched: objects a person created
//! under a cluster's derived names, pods that merely carry a cluster's label,
//! and the API server's refusals told apart from a stale view. The operator
//! runs in-process under its RBAC against the real control plane; the test
//! plays the kubelet.

mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};

use conveyor_etl_operator::runtime::reconciler::is_stale_view;
use support::operator::shared_with_rbac;
use support::test_namespace;

fn object<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
    serde_json::from_value(value).unwrap()
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
