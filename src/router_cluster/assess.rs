//! From an observation to the machine's event, the facts status shows, and
//! the next safe step of a scale or rolling update. Pure.

use crate::crd::MemberStatus;

use super::machine::Event;
use super::observation::{Observation, Probe, Role, RouterView};

/// What the reconciler learns from one observation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub event: Event,
    /// A sentence a person can act on; becomes the conditions' message.
    pub message: String,
    pub leader_id: Option<u64>,
    pub leader_pod: Option<String>,
    pub term: Option<u64>,
    pub commit_index: Option<u64>,
    pub members: Vec<MemberStatus>,
    pub ready_replicas: i32,
    /// The StatefulSet size to apply now: one member away from the current
    /// size while scaling, never breaking quorum.
    pub replicas_step: i32,
    /// The pod to delete now so the StatefulSet recreates it from the new
    /// template; only while every member is healthy, the leader last.
    pub roll_next: Option<String>,
}

fn pod_name(cluster: &str, node_id: u64) -> String {
    format!("{cluster}-{}", node_id.saturating_sub(1))
}

/// The most authoritative answer: the leader's own, else the highest term's.
fn best_view(probes: &[Probe]) -> Option<&RouterView> {
    let views = probes.iter().filter_map(|probe| probe.outcome.as_ref().ok());
    views
        .clone()
        .find(|view| view.leader_id != 0 && view.node_id == view.leader_id)
        .or_else(|| views.max_by_key(|view| (view.term, view.leader_id != 0)))
}

fn majority(members: i32) -> i32 {
    members / 2 + 1
}

pub fn assess(observation: &Observation) -> Assessment {
    let cluster = &observation.cluster_name;
    let target = observation.target_replicas;
    let ready_replicas = observation.pods.iter().filter(|pod| pod.ready && !pod.terminating).count() as i32;
    let mut assessment = Assessment {
        event: Event::Healthy,
        message: String::new(),
        leader_id: None,
        leader_pod: None,
        term: None,
        commit_index: None,
        members: Vec::new(),
        ready_replicas,
        replicas_step: target,
        roll_next: None,
    };
    let spec_invalid = !observation.spec_errors.is_empty();
    let invalid_message =
        || format!("the spec is invalid: {}; fix it to continue", observation.spec_errors.join("; "));

    let Some(stateful_set) = &observation.stateful_set else {
        (assessment.event, assessment.message) = if spec_invalid {
            (Event::SpecInvalid, format!("{}; nothing is deployed", invalid_message()))
        } else {
            (Event::NotDeployed, format!("deploying {target} router nodes"))
        };
        return assessment;
    };
    let current = stateful_set.replicas;
    assessment.replicas_step = current;

    let Some(view) = best_view(&observation.probes) else {
        (assessment.event, assessment.message) = if ready_replicas < current {
            (
                Event::PodsStarting,
                format!(
                    "{ready_replicas}/{current} router pods ready; waiting for the pods to start \
                     (kubectl get pods -l conveyor.etl/cluster={cluster})"
                ),
            )
        } else {
            let errors: Vec<String> = observation
                .probes
                .iter()
                .filter_map(|probe| {
                    probe.outcome.as_ref().err().map(|error| format!("{}: {error}", probe.pod))
                })
                .collect();
            (
                Event::RouterUnreachable,
                format!(
                    "no router member answered the health poll ({}); cluster health is unknown: \
                     check the router pods' logs and that the operator can reach their gRPC port",
                    errors.join("; ")
                ),
            )
        };
        return assessment;
    };

    assessment.term = Some(view.term);
    if view.leader_id != 0 {
        assessment.leader_id = Some(view.leader_id);
        assessment.leader_pod = Some(pod_name(cluster, view.leader_id));
        assessment.commit_index = Some(view.commit_index);
    }
    let pod_ready = |node_id: u64| {
        observation
            .pods
            .iter()
            .any(|pod| u64::from(pod.ordinal) + 1 == node_id && pod.ready && !pod.terminating)
    };
    assessment.members = (1..=current.max(0) as u64)
        .map(|node_id| {
            let reported = view.members.iter().find(|member| member.node_id == node_id);
            MemberStatus {
                node_id,
                pod: pod_name(cluster, node_id),
                role: reported.map_or(Role::Unknown, |member| member.role).as_str().to_string(),
                healthy: pod_ready(node_id) && reported.is_some_and(|member| member.healthy),
            }
        })
        .collect();
    let healthy = assessment.members.iter().filter(|member| member.healthy).count() as i32;

    if view.leader_id == 0 {
        assessment.event = Event::NoQuorum;
        assessment.message = format!(
            "no leader in term {}: {healthy}/{current} members healthy, a majority of {} is needed; \
             writes are refused until a leader is elected",
            view.term,
            majority(current)
        );
        return assessment;
    }
    let leader = assessment.leader_pod.clone().unwrap_or_default();
    if spec_invalid {
        assessment.event = Event::SpecInvalid;
        assessment.message = format!("{}; the cluster keeps running its last valid spec", invalid_message());
        return assessment;
    }
    let unhealthy: Vec<String> = assessment
        .members
        .iter()
        .filter(|member| !member.healthy)
        .map(|member| format!("{} (node {})", member.pod, member.node_id))
        .collect();
    let scaling = if target == current { String::new() } else { format!("scaling {current} → {target}; ") };
    if !unhealthy.is_empty() {
        assessment.event = Event::MembersUnhealthy;
        assessment.message = format!(
            "{scaling}{} unhealthy or not joined; leader {leader} serves with {healthy}/{current} members \
             (kubectl logs {cluster}-<ordinal> for the member's side)",
            unhealthy.join(", ")
        );
        // Shrinking away an unhealthy top member is still safe if quorum holds without it.
        if target < current && healthy_below(&assessment.members, current - 1) >= majority(current - 1) {
            assessment.replicas_step = current - 1;
        }
        return assessment;
    }
    if target != current {
        assessment.event = Event::Scaling;
        let step = if target > current { current + 1 } else { current - 1 };
        assessment.replicas_step = step;
        assessment.message = format!("scaling {current} → {target} one member at a time: now to {step}");
        return assessment;
    }
    let outdated: Vec<&str> = observation
        .pods
        .iter()
        .filter(|pod| stateful_set.update_revision.is_some() && pod.revision != stateful_set.update_revision)
        .map(|pod| pod.name.as_str())
        .collect();
    if !stateful_set.up_to_date || !outdated.is_empty() {
        assessment.event = Event::RollingUpdate;
        // Highest ordinal first, the leader last.
        let next =
            outdated.iter().rev().find(|pod| **pod != leader).or(outdated.first()).map(|pod| pod.to_string());
        assessment.message = match &next {
            Some(pod) => format!(
                "rolling {} pod(s) to the new template one at a time, leader last: {pod} now",
                outdated.len()
            ),
            None => "waiting for the StatefulSet controller to take the new template".to_string(),
        };
        assessment.roll_next = next;
        return assessment;
    }
    assessment.event = Event::Healthy;
    assessment.message =
        format!("leader {leader} in term {}; {healthy}/{current} members healthy", view.term);
    assessment
}

fn healthy_below(members: &[MemberStatus], count: i32) -> i32 {
    members.iter().filter(|member| member.node_id <= count as u64 && member.healthy).count() as i32
}
