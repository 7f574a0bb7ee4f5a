//! The status a cluster shows, and writing it when, and only when, it changed.

use super::assess::Assessment;
use super::conditions as cluster_conditions;
use super::machine::Event;
use super::validate::Validation;
use crate::crd::{ClusterPhase, EtlRouterCluster, EtlRouterClusterStatus};
use crate::runtime::conditions::{self, Wanted};
use crate::runtime::status::synced;
use crate::runtime::{Context, Error, status};

/// The status after a reconcile that arrived at `phase`; `outcome` is how
/// applying the spec went (health is reported either way).
pub fn next_status(
    cluster: &EtlRouterCluster,
    phase: ClusterPhase,
    assessment: &Assessment,
    validation: &Validation,
    paused: bool,
    outcome: Result<(), &Error>,
) -> EtlRouterClusterStatus {
    let existing = cluster.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let mut wanted: Vec<Wanted> =
        cluster_conditions::main_conditions(phase, assessment.event, &assessment.message).into();
    wanted.push(synced(outcome));
    if paused || conditions::find(existing, cluster_conditions::PAUSED).is_some() {
        wanted.push(cluster_conditions::paused(paused));
    }
    match assessment.router_admin {
        Some(false) => wanted.push(cluster_conditions::router_admin(false)),
        Some(true) if conditions::find(existing, cluster_conditions::ROUTER_ADMIN).is_some() => {
            wanted.push(cluster_conditions::router_admin(true));
        }
        _ => {}
    }
    if !validation.warnings.is_empty()
        || conditions::find(existing, cluster_conditions::SPEC_WARNING).is_some()
    {
        wanted.push(cluster_conditions::spec_warnings(&validation.warnings));
    }
    EtlRouterClusterStatus {
        phase: Some(phase),
        observed_generation: cluster.metadata.generation,
        replicas: assessment.deployed_replicas,
        selector: cluster.metadata.name.as_deref().map(pod_selector),
        ready_replicas: Some(assessment.ready_replicas),
        leader: assessment.leader_pod.clone(),
        leader_id: assessment.leader_id,
        term: assessment.term,
        members: assessment.members.clone(),
        conditions: conditions::merge(existing, &wanted, cluster.metadata.generation, &status::now()),
    }
}

/// The router pods' selector labels as `kubectl -l` takes them.
fn pod_selector(cluster_name: &str) -> String {
    let labels = super::build::selector_labels(cluster_name);
    labels.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join(",")
}

/// Writes status only when it changed, and records an Event when the phase
/// or the Ready reason changed.
pub async fn write_on_change(
    cluster: &EtlRouterCluster,
    ctx: &Context,
    next: EtlRouterClusterStatus,
    event: Event,
) -> Result<(), Error> {
    let previous = cluster.status.clone().unwrap_or_default();
    let phase = next.phase.unwrap_or_default();
    let warning = cluster_conditions::event_type(phase, event) == "Warning";
    let story = status::Story::new(previous.phase, phase, &previous.conditions, &next.conditions, warning);
    status::write_changed(ctx, cluster, &previous, &next, story).await.map(drop)
}
