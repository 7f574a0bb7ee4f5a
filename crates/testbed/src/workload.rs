//! The benchmark's objects (one router cluster, a few dozen services shared
//! the way real pipelines share them, N pipelines) and a watch-fed view of
//! their phases.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

pub const CLUSTER: &str = "bench-cluster";
pub const KINDS: [&str; 5] = ["EtlRouterCluster", "EtlSource", "EtlTransform", "EtlSink", "EtlPipeline"];
const MANAGER: &str = "conveyor-bench";
/// Applies in flight at once: a client applying a manifest set.
const APPLY_CONCURRENCY: usize = 16;

pub fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("conveyor.etl", "v1", kind))
}

pub fn api(client: &Client, namespace: &str, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &resource(kind))
}

fn object(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "conveyor.etl/v1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

pub fn cluster() -> Value {
    object(
        "EtlRouterCluster",
        CLUSTER,
        json!({"replicas": 3, "image": "conveyor-etl-router:latest",
               "raft": {"electionTimeoutMs": 300, "heartbeatIntervalMs": 100}}),
    )
}

/// `per_kind` sources, transforms and sinks.
pub fn services(per_kind: usize) -> Vec<Value> {
    let mut all = Vec::new();
    for (kind, prefix) in [("EtlSource", "source"), ("EtlTransform", "transform"), ("EtlSink", "sink")] {
        for i in 0..per_kind {
            let name = format!("{prefix}-{i}");
            all.push(object(kind, &name, json!({"grpc": {"endpoint": format!("{name}-svc:50051")}})));
        }
    }
    all
}

pub fn pipeline_name(i: usize) -> String {
    format!("pipeline-{i:05}")
}

/// Pipelines `range`, each reading one of the sources, passing two of the
/// transforms and writing one of the sinks.
pub fn pipelines(range: std::ops::Range<usize>, per_kind: usize) -> Vec<Value> {
    range
        .map(|i| {
            let spec = json!({
                "source": format!("source-{}", i % per_kind),
                "steps": [format!("transform-{}", i % per_kind), format!("transform-{}", (i + 1) % per_kind)],
                "sink": format!("sink-{}", i % per_kind),
                "dlq": {"enabled": true, "maxRetries": 3},
            });
            object("EtlPipeline", &pipeline_name(i), spec)
        })
        .collect()
}

/// Server-side applies `objects`, several in flight.
pub async fn apply_all(client: &Client, namespace: &str, objects: Vec<Value>) -> anyhow::Result<()> {
    stream::iter(objects)
        .map(|object| async move {
            let kind = object["kind"].as_str().unwrap_or_default().to_owned();
            let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            api(client, namespace, &kind)
                .patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&object))
                .await
        })
        .buffer_unordered(APPLY_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Every object's phase in one namespace, kept by one watch per kind, and
/// when each was first seen Ready.
#[derive(Clone, Default)]
pub struct Phases(Arc<Mutex<Seen>>);

#[derive(Default)]
struct Seen {
    phases: HashMap<(String, String), String>,
    first_ready: HashMap<(String, String), Instant>,
}

impl Phases {
    pub fn watch(client: &Client, namespace: &str) -> Phases {
        let phases = Phases::default();
        for kind in KINDS {
            let events = watcher(api(client, namespace, kind), watcher::Config::default()).default_backoff();
            let kept = phases.clone();
            tokio::spawn(async move {
                let mut objects = events.touched_objects().boxed();
                while let Some(object) = objects.next().await {
                    let Ok(object) = object else { continue };
                    let phase = object.data["status"]["phase"].as_str().unwrap_or("").to_owned();
                    let key = (kind.to_owned(), object.name_any());
                    let mut seen = kept.0.lock().unwrap();
                    if phase == "Ready" {
                        seen.first_ready.entry(key.clone()).or_insert_with(Instant::now);
                    }
                    seen.phases.insert(key, phase);
                }
            });
        }
        phases
    }

    pub fn phase(&self, kind: &str, name: &str) -> Option<String> {
        self.0.lock().unwrap().phases.get(&(kind.to_owned(), name.to_owned())).cloned()
    }

    /// When `kind` `name` was first seen Ready.
    pub fn first_ready(&self, kind: &str, name: &str) -> Option<Instant> {
        self.0.lock().unwrap().first_ready.get(&(kind.to_owned(), name.to_owned())).copied()
    }

    /// How many objects are in `phase`, and how many are known at all.
    pub fn count(&self, phase: &str) -> (usize, usize) {
        let seen = self.0.lock().unwrap();
        (seen.phases.values().filter(|p| *p == phase).count(), seen.phases.len())
    }
}
