//! The conveyor kinds as untyped objects: the examples, create, read, wait
//! and the Events about one object.

use std::time::Duration;

use kube::Client;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde::de::DeserializeOwned;

use super::repo_path;
use super::scenario::{FORM_TIMEOUT, Scenario};

/// The example objects of `kinds`, from `seed.yaml` then `services.yaml`.
pub fn examples(kinds: &[&str]) -> Vec<DynamicObject> {
    let read = |file: &str| std::fs::read_to_string(repo_path(file)).unwrap();
    let seed = read("deploy/examples/seed.yaml");
    let services = read("deploy/examples/services.yaml");
    seed.split("\n---\n")
        .chain(services.split("\n---\n"))
        .map(|doc| serde_norway::from_str::<DynamicObject>(doc).unwrap())
        .filter(|o| o.types.as_ref().is_some_and(|t| kinds.contains(&t.kind.as_str())))
        .collect()
}

pub const SERVICE_KINDS: [&str; 3] = ["EtlSource", "EtlTransform", "EtlSink"];

/// Every kind of the example set, the router cluster first.
pub const EXAMPLE_KINDS: [&str; 5] =
    ["EtlRouterCluster", "EtlSource", "EtlTransform", "EtlSink", "EtlPipeline"];

/// The whole example set: the router cluster `my-cluster`, the services and
/// the pipeline `user-analytics`, in the order to create them.
pub fn example_set() -> Vec<DynamicObject> {
    let mut set = examples(&EXAMPLE_KINDS);
    set.sort_by_key(|object| EXAMPLE_KINDS.iter().position(|kind| *kind == kind_of(object)));
    set
}

/// `kind` in `namespace`, with `client`'s credentials.
pub fn api_in(client: &Client, namespace: &str, kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("conveyor.etl", "v1", kind));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// `None` when the object is Ready (phase Ready and its Ready condition
/// True), else what it shows instead.
pub fn not_ready(object: &DynamicObject) -> Option<String> {
    let status = &object.data["status"];
    let condition = status["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == "Ready"))
        .map(|c| format!("{}/{}", c["status"].as_str().unwrap_or("?"), c["reason"].as_str().unwrap_or("?")));
    let ready = status["phase"] == "Ready" && condition.as_deref().is_some_and(|c| c.starts_with("True/"));
    (!ready).then(|| format!("phase {} condition Ready {}", status["phase"], condition.unwrap_or_default()))
}

/// Waits until every object of the example set in `namespace` is Ready.
pub async fn wait_all_ready(client: &Client, namespace: &str) {
    for object in example_set() {
        let (kind, name) = (kind_of(&object), name_of(&object));
        let api = api_in(client, namespace, &kind);
        let deadline = tokio::time::Instant::now() + FORM_TIMEOUT;
        loop {
            let last = match api.get(&name).await {
                Ok(object) => match not_ready(&object) {
                    None => break,
                    Some(shows) => shows,
                },
                Err(error) => error.to_string(),
            };
            assert!(
                tokio::time::Instant::now() < deadline,
                "{kind} {name} not Ready after {FORM_TIMEOUT:?}: {last}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
        }
    }
}

pub fn kind_of(object: &DynamicObject) -> String {
    object.types.as_ref().unwrap().kind.clone()
}

pub fn name_of(object: &DynamicObject) -> String {
    object.metadata.name.clone().unwrap()
}

pub fn api_of(s: &Scenario, kind: &str) -> Api<DynamicObject> {
    api_in(&s.client, &s.namespace, kind)
}

pub async fn create(s: &Scenario, object: &DynamicObject) {
    let kind = kind_of(object);
    api_of(s, &kind)
        .create(&PostParams::default(), object)
        .await
        .unwrap_or_else(|e| panic!("create {kind}: {e}"));
}

/// The object's `.status` as `T` (its default when there is none yet).
pub fn status_as<T: DeserializeOwned + Default>(object: &DynamicObject) -> T {
    object.data.get("status").cloned().map(|s| serde_json::from_value(s).unwrap()).unwrap_or_default()
}

/// Polls `kind`/`name` until `check` holds on its status.
pub async fn wait_status<T>(s: &Scenario, kind: &str, name: &str, what: &str, check: impl Fn(&T) -> bool) -> T
where
    T: DeserializeOwned + Default + std::fmt::Debug,
{
    let api = api_of(s, kind);
    let mut last = None;
    let deadline = tokio::time::Instant::now() + FORM_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if let Ok(object) = api.get(name).await {
            let status: T = status_as(&object);
            if check(&status) {
                return status;
            }
            last = Some(status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
    }
    let events = events_about(s, kind, name).await;
    panic!("{kind} {name}: timed out waiting for {what}; last status {last:#?}; events {events:#?}")
}

/// How many times an Event with `reason` about `kind`/`name` was recorded:
/// the recorder folds repeats within minutes into one Event's series.
pub async fn event_count(s: &Scenario, kind: &str, name: &str, reason: &str) -> i32 {
    s.events_regarding(kind, name)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.series.map_or(1, |series| series.count))
        .sum()
}

/// (reason, note) of the Events about `kind`/`name`, oldest first.
pub async fn events_about(s: &Scenario, kind: &str, name: &str) -> Vec<(String, String)> {
    let events = s.events_regarding(kind, name).await;
    events.into_iter().map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default())).collect()
}
