//! Sending the model's changes, and the convergence check every scenario
//! ends with: each object in the phase it should be in, for its latest
//! generation; the router holding each pipeline's latest spec and nothing
//! deleted; and the simulator's mutation log without a pipeline created more
//! often than it was asked for.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::harness::World;
use crate::model::{Model, Op, SERVICE_KINDS};
use conveyor_etl_operator::router::mapping::{
    METADATA_DLQ_ENABLED, METADATA_DLQ_MAX_RETRIES, config_generation, pipeline_id, service_id,
};
use conveyor_etl_operator::router::proto::router::PipelineConfig;
use conveyor_router_sim::SimCluster;
use conveyor_testbed::workload;

const MANAGER: &str = "conveyor-chaos";
const IN_FLIGHT: usize = 8;
/// How long a change keeps being retried while the API server is away.
const SEND_DEADLINE: Duration = Duration::from_secs(120);

/// Sends `ops`, several at once, each retried until the API server takes it.
pub async fn send(client: &Client, namespace: &str, ops: Vec<Op>) -> anyhow::Result<()> {
    stream::iter(ops)
        .map(|op| async move {
            let deadline = Instant::now() + SEND_DEADLINE;
            loop {
                match send_one(client, namespace, &op).await {
                    Ok(()) => return Ok(()),
                    Err(error) if Instant::now() > deadline => {
                        return Err(anyhow::anyhow!("{op:?} not taken: {error}"));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await, // retry interval
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn send_one(client: &Client, namespace: &str, op: &Op) -> Result<(), kube::Error> {
    match op {
        Op::Apply(object) => {
            let kind = object["kind"].as_str().unwrap_or_default();
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            workload::api(client, namespace, kind)
                .patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(object))
                .await
                .map(|_| ())
        }
        Op::Delete { kind, name } => {
            match workload::api(client, namespace, kind).delete(name, &DeleteParams::default()).await {
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                other => other.map(|_| ()),
            }
        }
    }
}

/// What may differ from the model while the check waits.
#[derive(Clone, Copy, Default)]
pub struct Expect {
    /// The router cluster may show Degraded (a member is down on purpose).
    pub cluster_degraded: bool,
    /// Times the router lost all its state: each allows every pipeline one
    /// more CreatePipeline.
    pub wipes: u32,
}

/// Waits until everything matches `model` (see the module docs); the time it took.
pub async fn converge(
    world: &World,
    model: &Model,
    expect: Expect,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        let problems = match problems(world, model, expect).await {
            Ok(problems) => problems,
            Err(error) => vec![format!("cannot read the objects: {error}")],
        };
        if problems.is_empty() {
            return Ok(started.elapsed());
        }
        if Instant::now() > deadline {
            let shown: Vec<&String> = problems.iter().take(12).collect();
            bail!(
                "not converged after {timeout:?} ({} problems), e.g.:\n  {}",
                problems.len(),
                shown.iter().map(|p| p.as_str()).collect::<Vec<_>>().join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await; // poll interval
    }
}

async fn list(world: &World, kind: &str) -> Result<BTreeMap<String, DynamicObject>, kube::Error> {
    let list = workload::api(&world.admin, &world.namespace, kind).list(&ListParams::default()).await?;
    Ok(list.items.into_iter().map(|o| (o.name_any(), o)).collect())
}

/// `None` when `object` is in `phase` with Ready condition `ready` for its
/// latest generation, else what it shows.
fn settled(object: &DynamicObject, phases: &[&str]) -> Option<String> {
    let status = &object.data["status"];
    let phase = status["phase"].as_str().unwrap_or("");
    let observed = status["observedGeneration"].as_i64();
    let ready = status["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == "Ready"))
        .map(|c| format!("{}/{}", c["status"].as_str().unwrap_or(""), c["reason"].as_str().unwrap_or("")));
    let fine = phases.contains(&phase)
        && observed == object.metadata.generation
        && (phase != "Ready" || ready.as_deref().is_some_and(|r| r.starts_with("True/")))
        && (phase != "Disabled" || ready.as_deref() == Some("False/Disabled"));
    (!fine).then(|| {
        format!(
            "phase {phase:?} (want {phases:?}), Ready {ready:?}, observedGeneration {observed:?} of {:?}",
            object.metadata.generation
        )
    })
}

async fn problems(world: &World, model: &Model, expect: Expect) -> anyhow::Result<Vec<String>> {
    let sim = &world.kubelet.sim;
    let ns = &world.namespace;
    let mut problems = Vec::new();
    let clusters = list(world, "EtlRouterCluster").await?;
    let cluster_phases: &[&str] = if expect.cluster_degraded { &["Ready", "Degraded"] } else { &["Ready"] };
    for (name, cluster) in &clusters {
        if let Some(shows) = settled(cluster, cluster_phases) {
            problems.push(format!("EtlRouterCluster {name}: {shows}"));
        }
    }

    let pipelines = list(world, "EtlPipeline").await?;
    for (name, spec) in &model.pipelines {
        let Some(object) = pipelines.get(name) else {
            problems.push(format!("EtlPipeline {name}: absent"));
            continue;
        };
        // A disabled pipeline settles paused, not Ready.
        let phase = if spec["enabled"].as_bool().unwrap_or(true) { "Ready" } else { "Disabled" };
        if let Some(shows) = settled(object, &[phase]) {
            problems.push(format!("EtlPipeline {name}: {shows}"));
        }
        if !same_spec(&object.data["spec"], spec) {
            problems.push(format!(
                "EtlPipeline {name}: the API holds another spec than the last one sent: {} (sent {spec})",
                object.data["spec"]
            ));
        }
        match sim.pipeline(&pipeline_id(ns, name)) {
            None => problems.push(format!("EtlPipeline {name}: not on the router")),
            Some((config, _)) => {
                if config_generation(&config) != object.metadata.generation {
                    problems.push(format!(
                        "EtlPipeline {name}: the router holds generation {:?}, the API {:?}",
                        config_generation(&config),
                        object.metadata.generation
                    ));
                } else if !router_matches(&config, spec) {
                    problems.push(format!("EtlPipeline {name}: the router's config differs from the spec"));
                }
            }
        }
    }
    for name in &model.deleted_pipelines {
        if pipelines.contains_key(name) {
            problems.push(format!("EtlPipeline {name}: deleted, still in the API"));
        }
        if sim.pipeline(&pipeline_id(ns, name)).is_some() {
            problems.push(format!("EtlPipeline {name}: deleted, still on the router"));
        }
    }

    let registered: BTreeSet<String> =
        sim.services().into_iter().filter_map(|s| s.identity.map(|identity| identity.service_id)).collect();
    for (kind, _) in SERVICE_KINDS {
        let objects = list(world, kind).await?;
        for (name, _) in model.services.iter().filter(|(_, k)| **k == kind) {
            match objects.get(name) {
                None => problems.push(format!("{kind} {name}: absent")),
                Some(object) => {
                    if let Some(shows) = settled(object, &["Ready"]) {
                        problems.push(format!("{kind} {name}: {shows}"));
                    }
                }
            }
            if !registered.contains(&service_id(ns, name)) {
                problems.push(format!("{kind} {name}: not registered with the router"));
            }
        }
        for (name, _) in model.deleted_services.iter().filter(|(_, k)| **k == kind) {
            if objects.contains_key(name) {
                problems.push(format!("{kind} {name}: deleted, still in the API"));
            }
            if registered.contains(&service_id(ns, name)) {
                problems.push(format!("{kind} {name}: deleted, still registered with the router"));
            }
        }
    }
    problems.extend(duplicate_creates(sim, ns, model, expect.wipes));
    Ok(problems)
}

/// The API server fills in defaults (`dlq`, `enabled`); compare what was sent.
fn same_spec(stored: &Value, sent: &Value) -> bool {
    let Some(sent) = sent.as_object() else { return false };
    sent.iter().all(|(key, value)| match (value, &stored[key]) {
        (Value::Array(a), Value::Null) => a.is_empty(),
        (Value::Object(_), stored_value) => same_spec(stored_value, value),
        (value, stored_value) => value == stored_value,
    })
}

/// The router's config runs `spec`: its services in order, enabled flag and DLQ settings.
fn router_matches(config: &PipelineConfig, spec: &Value) -> bool {
    let mut services = vec![spec["source"].as_str().unwrap_or("").to_owned()];
    services
        .extend(spec["steps"].as_array().into_iter().flatten().filter_map(|s| s.as_str()).map(str::to_owned));
    services.push(spec["sink"].as_str().unwrap_or("").to_owned());
    let stages: Vec<String> = config.stages.iter().map(|stage| stage.name.clone()).collect();
    let dlq = |key: &str| config.metadata.get(key).cloned().unwrap_or_default();
    stages == services
        && config.enabled == spec["enabled"].as_bool().unwrap_or(true)
        && dlq(METADATA_DLQ_MAX_RETRIES) == as_text(&spec["dlq"]["maxRetries"])
        && dlq(METADATA_DLQ_ENABLED) == as_text(&spec["dlq"]["enabled"])
}

/// A JSON number or boolean as the router's metadata writes it.
fn as_text(value: &Value) -> String {
    value.to_string()
}

/// Pipelines the router was asked to create more often than the scenario
/// created them (plus once per wipe of the router's state).
fn duplicate_creates(sim: &SimCluster, namespace: &str, model: &Model, wipes: u32) -> Vec<String> {
    let mut creates: BTreeMap<String, u32> = BTreeMap::new();
    for mutation in sim.mutation_log().iter().filter(|m| m.method == "CreatePipeline") {
        *creates.entry(mutation.target.clone()).or_default() += 1;
    }
    model
        .created
        .iter()
        .filter_map(|(name, times)| {
            let seen = creates.get(&pipeline_id(namespace, name)).copied().unwrap_or(0);
            (seen > times + wipes).then(|| {
                format!(
                    "EtlPipeline {name}: created {seen} times on the router, asked {times} (+{wipes} wipes)"
                )
            })
        })
        .collect()
}
