//! Why an object is not Ready, followed across objects to its first cause:
//! pipeline → the source, step or sink it waits for → that service →
//! its router cluster → the router pod that is not ready → that pod's own
//! state and Events. Pure: it reads a [`Snapshot`] and returns the steps.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;

use conveyor_etl_operator::crd::{EtlPipeline, EtlRouterCluster};

use crate::events::EventLine;
use crate::kinds::Kind;
use crate::snapshot::{self, Service, Snapshot, condition, is_ready, pod_ready};

/// Where an object of the chain stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum State {
    Ready,
    NotReady,
    /// Referenced, but there is no such object.
    Missing,
}

/// One object of the chain.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub kind: String,
    pub name: String,
    /// How the previous step leads here (`spec.steps[1]`, `its cluster`, ...); empty for the first.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub via: String,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The Ready condition's reason (a pod: the reason it is not ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the Ready condition last changed: for a Ready object, since when it is Ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Further facts: a failing Synced condition, a pod's node and restarts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// The latest Event that tells of this state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<EventLine>,
}

impl Step {
    fn new(kind: &str, meta: &ObjectMeta, via: &str) -> Step {
        Step {
            kind: kind.to_owned(),
            name: meta.name.clone().unwrap_or_default(),
            via: via.to_owned(),
            state: State::NotReady,
            phase: None,
            reason: None,
            message: None,
            since: None,
            details: Vec::new(),
            event: None,
        }
    }

    fn missing(kind: &str, name: &str, namespace: &str, via: &str) -> Step {
        Step {
            state: State::Missing,
            message: Some(format!("{kind} {name} does not exist in namespace {namespace}")),
            ..Step::new(kind, &ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() }, via)
        }
    }

    /// The trace of the reconcile that wrote the state shown, when its Event names one.
    pub fn trace_id(&self) -> Option<&str> {
        self.event.as_ref().and_then(|e| e.trace_id.as_deref())
    }
}

/// The chain from the object asked about to the first cause (the last step).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Chain {
    pub steps: Vec<Step>,
}

impl Chain {
    /// The object asked about is Ready.
    pub fn ready(&self) -> bool {
        self.steps.first().is_some_and(|s| s.state == State::Ready)
    }

    /// The step holding the first cause, when the object is not Ready.
    pub fn first_cause(&self) -> Option<&Step> {
        (!self.ready()).then(|| self.steps.last()).flatten()
    }
}

/// Follows `kind`/`name` in `namespace` to its first cause.
pub fn why(snapshot: &Snapshot, namespace: &str, kind: Kind, name: &str) -> Chain {
    let mut steps = Vec::new();
    match kind {
        Kind::Pipeline => match snapshot.pipeline(namespace, name) {
            Some(pipeline) => pipeline_chain(snapshot, pipeline, &mut steps),
            None => steps.push(Step::missing(kind.name(), name, namespace, "")),
        },
        Kind::RouterCluster => match snapshot.cluster(namespace, name) {
            Some(cluster) => cluster_chain(snapshot, cluster, "", &mut steps),
            None => steps.push(Step::missing(kind.name(), name, namespace, "")),
        },
        service_kind => match snapshot.service(namespace, service_kind, name) {
            Some(service) => service_chain(snapshot, &service, "", &mut steps),
            None => steps.push(Step::missing(kind.name(), name, namespace, "")),
        },
    }
    Chain { steps }
}

/// The step of an object with conditions: phase, the Ready condition, a
/// failing Synced condition and the latest Event about it, preferably one
/// with the Ready condition's reason.
fn object_step(
    snapshot: &Snapshot,
    kind: Kind,
    meta: &ObjectMeta,
    phase: Option<String>,
    conditions: &[Condition],
    via: &str,
) -> Step {
    let mut step = Step::new(kind.name(), meta, via);
    step.phase = phase;
    let ready = condition(conditions, "Ready");
    step.state = if is_ready(conditions) { State::Ready } else { State::NotReady };
    step.reason = ready.map(|c| c.reason.clone()).filter(|r| !r.is_empty());
    step.message = ready.map(|c| c.message.clone()).filter(|m| !m.is_empty());
    step.since = ready.map(|c| c.last_transition_time.0);
    if ready.is_none() {
        // A new pipeline writes no status while it quietly waits for what it
        // names, for at most the reference grace (states.md).
        step.message = Some(
            "no Ready condition yet: a new object waiting for what it names reports within 10 s of its \
             creation; if it is older, is the operator running?"
                .into(),
        );
    }
    if let Some(synced) = condition(conditions, "Synced").filter(|c| c.status == "False") {
        step.details.push(format!("Synced=False {}: {}", synced.reason, synced.message));
    }
    let events = snapshot.events_about(kind.name(), meta);
    let wanted = step.reason.as_deref();
    let event = events
        .iter()
        .rev()
        .find(|e| wanted.is_some() && e.reason.as_deref() == wanted)
        .or(events.last())
        .map(|e| EventLine::of(e));
    step.event = event;
    step
}

/// Reasons of a pipeline's or service's Ready condition that point at its router cluster.
const CLUSTER_REASONS: [&str; 5] = [
    "RouterClusterNotReady",
    "NoRouterCluster",
    "RouterUnreachable",
    "RouterAdminUnimplemented",
    "MovingCluster",
];

fn pipeline_chain(snapshot: &Snapshot, pipeline: &EtlPipeline, steps: &mut Vec<Step>) {
    let namespace = pipeline.namespace().unwrap_or_default();
    let phase = pipeline.status.as_ref().and_then(|s| s.phase).map(|p| format!("{p:?}"));
    let step = object_step(
        snapshot,
        Kind::Pipeline,
        &pipeline.metadata,
        phase,
        snapshot::pipeline_conditions(pipeline),
        "",
    );
    let (state, reason) = (step.state, step.reason.clone().unwrap_or_default());
    steps.push(step);
    if state == State::Ready {
        return;
    }
    let mut references = vec![(Kind::Source, pipeline.spec.source.clone(), "spec.source".to_owned())];
    for (i, name) in pipeline.spec.steps.iter().enumerate() {
        references.push((Kind::Transform, name.clone(), format!("spec.steps[{i}]")));
    }
    references.push((Kind::Sink, pipeline.spec.sink.clone(), "spec.sink".to_owned()));

    // A reference that does not exist is a cause of its own, whatever else is wrong.
    for (kind, name, field) in &references {
        if snapshot.service(&namespace, *kind, name).is_none() {
            steps.push(Step::missing(kind.name(), name, &namespace, field));
            return;
        }
    }
    let cluster_name = snapshot.cluster_of_pipeline(pipeline);
    let cluster = cluster_name.as_deref().and_then(|name| snapshot.cluster(&namespace, name));
    let cluster_not_ready = cluster.filter(|c| !is_ready(snapshot::cluster_conditions(c)));
    if CLUSTER_REASONS.contains(&reason.as_str())
        && let Some(cluster) = cluster_not_ready
    {
        return cluster_chain(snapshot, cluster, "its router cluster", steps);
    }
    let services: Vec<(Service<'_>, &str)> = references
        .iter()
        .filter_map(|(kind, name, field)| Some((snapshot.service(&namespace, *kind, name)?, field.as_str())))
        .collect();
    let not_ready = services.iter().find(|(s, _)| !is_ready(s.conditions())).or_else(|| {
        // Ready services the router reports unhealthy degrade the pipeline too.
        (reason == "ServiceUnhealthy").then(|| {
            services
                .iter()
                .find(|(s, _)| s.status.and_then(|s| s.health.as_deref()).is_some_and(|h| h != "Healthy"))
        })?
    });
    if let Some((service, field)) = not_ready {
        return service_chain(snapshot, service, field, steps);
    }
    match (cluster_name, cluster) {
        (_, Some(cluster)) if cluster_not_ready.is_some() => {
            cluster_chain(snapshot, cluster, "its router cluster", steps)
        }
        (Some(name), None) => {
            steps.push(Step::missing(Kind::RouterCluster.name(), &name, &namespace, "its router cluster"))
        }
        _ => {}
    }
}

/// Reasons of a service's own: its cluster is not the cause.
const SERVICE_OWN_REASONS: [&str; 4] =
    ["InvalidEndpoint", "AmbiguousRouterCluster", "ServiceUnhealthy", "RegistrationLapsed"];

fn service_chain(snapshot: &Snapshot, service: &Service<'_>, via: &str, steps: &mut Vec<Step>) {
    let phase = service.status.and_then(|s| s.phase).map(|p| format!("{p:?}"));
    let mut step = object_step(snapshot, service.kind, service.meta, phase, service.conditions(), via);
    if let Some(health) = service.status.and_then(|s| s.health.as_deref()) {
        step.details.insert(0, format!("router reports health {health}"));
    }
    let (state, reason) = (step.state, step.reason.clone().unwrap_or_default());
    steps.push(step);
    if state == State::Ready || SERVICE_OWN_REASONS.contains(&reason.as_str()) {
        return;
    }
    let namespace = service.namespace();
    let Some(name) = snapshot.cluster_of_service(service) else { return };
    match snapshot.cluster(namespace, &name) {
        Some(cluster) if !is_ready(snapshot::cluster_conditions(cluster)) => {
            cluster_chain(snapshot, cluster, "its router cluster", steps)
        }
        Some(_) => {}
        None => steps.push(Step::missing(Kind::RouterCluster.name(), &name, namespace, "its router cluster")),
    }
}

fn cluster_chain(snapshot: &Snapshot, cluster: &EtlRouterCluster, via: &str, steps: &mut Vec<Step>) {
    let status = cluster.status.as_ref();
    let phase = status.and_then(|s| s.phase).map(|p| format!("{p:?}"));
    let mut step = object_step(
        snapshot,
        Kind::RouterCluster,
        &cluster.metadata,
        phase,
        snapshot::cluster_conditions(cluster),
        via,
    );
    if let Some(paused) = condition(snapshot::cluster_conditions(cluster), "ReconciliationPaused")
        .filter(|c| c.status == "True")
    {
        step.details.push(format!("paused: {}", paused.message));
    }
    let state = step.state;
    steps.push(step);
    if state == State::Ready {
        return;
    }
    let namespace = cluster.namespace().unwrap_or_default();
    let pods = snapshot.pods_of(&namespace, &cluster.name_any());
    // The pod with a cause of its own (a container waiting, unschedulable)
    // before one that is merely starting; lowest ordinal first.
    let not_ready: Vec<&&Pod> = pods.iter().filter(|p| !pod_ready(p)).collect();
    if let Some(pod) = not_ready.iter().find(|p| pod_cause(p).is_some()).or(not_ready.first()) {
        return steps.push(pod_step(snapshot, pod, "a router pod not ready"));
    }
    let unhealthy = status.into_iter().flat_map(|s| s.members.iter()).find(|m| !m.healthy);
    if let Some(member) = unhealthy
        && let Some(pod) = pods.iter().find(|p| p.name_any() == member.pod)
    {
        let mut step = pod_step(snapshot, pod, "a member the router reports unhealthy");
        step.state = State::NotReady;
        step.reason = Some("MemberUnhealthy".into());
        step.message = Some(format!(
            "the pod is ready, but the router reports Raft member {} ({}) unhealthy",
            member.node_id, member.role
        ));
        steps.push(step);
    }
}

/// Why a pod is not ready, from its own status: a container waiting (image
/// pull, crash loop, bad config), a container that ended, or the scheduler
/// unable to place it. `None` when nothing there says (e.g. just started).
pub fn pod_cause(pod: &Pod) -> Option<(String, String)> {
    let status = pod.status.as_ref()?;
    let containers =
        status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    for container in containers.filter(|c| !c.ready) {
        let state = container.state.as_ref();
        if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
            let reason = waiting.reason.clone().unwrap_or_default();
            // ContainerCreating and PodInitializing are progress, not a cause.
            if !reason.is_empty() && reason != "ContainerCreating" && reason != "PodInitializing" {
                let mut message = waiting.message.clone().unwrap_or_default();
                if let Some(last) = container.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
                    let ended = format!(
                        "last run ended {} (exit code {})",
                        last.reason.as_deref().unwrap_or("Error"),
                        last.exit_code
                    );
                    message = if message.is_empty() { ended } else { format!("{message}; {ended}") };
                }
                return Some((reason, format!("container {}: {message}", container.name)));
            }
        }
        if let Some(ended) = state.and_then(|s| s.terminated.as_ref()) {
            let reason = ended.reason.clone().unwrap_or_else(|| "Terminated".into());
            return Some((
                reason,
                format!(
                    "container {} ended with exit code {}{}",
                    container.name,
                    ended.exit_code,
                    ended.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
                ),
            ));
        }
    }
    let conditions = status.conditions.iter().flatten();
    let unscheduled = conditions.clone().find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    Some((
        unscheduled.reason.clone().unwrap_or_else(|| "Unschedulable".into()),
        unscheduled.message.clone().unwrap_or_default(),
    ))
}

fn pod_step(snapshot: &Snapshot, pod: &Pod, via: &str) -> Step {
    let mut step = Step::new("Pod", &pod.metadata, via);
    let status = pod.status.as_ref();
    step.phase = status.and_then(|s| s.phase.clone());
    let ready_condition =
        status.and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    step.since = ready_condition.and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0);
    if pod_ready(pod) {
        step.state = State::Ready;
    } else if let Some((reason, message)) = pod_cause(pod) {
        (step.reason, step.message) = (Some(reason), Some(message));
    } else {
        step.reason = ready_condition.and_then(|c| c.reason.clone()).or_else(|| Some("NotReady".into()));
        step.message = ready_condition
            .and_then(|c| c.message.clone())
            .or_else(|| Some("not ready yet: no container reports a cause".into()));
    }
    let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("<none>");
    step.details.push(format!("node {node}, restarts {}", snapshot::restarts(pod)));
    if pod.metadata.deletion_timestamp.is_some() {
        step.details.push("being deleted".into());
    }
    // The latest Warning (image pull, back-off, scheduling, probes) says
    // more than the latest Event, which may be a routine one.
    let events = snapshot.events_about("Pod", &pod.metadata);
    let event = events.iter().rev().find(|e| e.type_.as_deref() == Some("Warning")).or(events.last());
    step.event = event.map(|e| EventLine::of(e));
    step
}
