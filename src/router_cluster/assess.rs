//! From an observation to the machine's event, the facts status shows, and
//! the next safe step of a scale or rolling update. Pure.
//!
//! Membership assumption: the router contract has no call to add or remove a
//! Raft member, so membership follows the peer list each node is started
//! with. Growing or shrinking the StatefulSet by one member is the membership
//! change; a shrink is taken only when the members that must commit it (a
//! majority of the current voting members) are healthy.

use crate::crd::MemberStatus;

use super::machine::Event;
use super::observation::{Observation, PodState, Probe, Role, RouterView, StatefulSetState};

/// What the reconciler learns from one observation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub event: Event,
    /// A sentence a person can act on; becomes the conditions' message. It
    /// holds no figure that moves while nothing changes (no log index).
    pub message: String,
    pub leader_id: Option<u64>,
    pub leader_pod: Option<String>,
    pub term: Option<u64>,
    pub members: Vec<MemberStatus>,
    pub ready_replicas: i32,
    /// The StatefulSet's size as observed; `None` before it exists.
    pub deployed_replicas: Option<i32>,
    /// The StatefulSet size to apply now: one member away from the current
    /// size while scaling, never breaking quorum.
    pub replicas_step: i32,
    /// The pod to replace now so the StatefulSet recreates it from the current template.
    pub roll_next: Option<RollStep>,
    /// Whether the router serves `RouterAdmin`: `Some(false)` when health came
    /// from the pods instead; `None` when nothing told.
    pub router_admin: Option<bool>,
}

/// One pod to replace, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollStep {
    pub pod: String,
    pub uid: String,
    /// A healthy member: evicted, so disruption budgets and drains are
    /// respected. An unhealthy or not-ready one costs no availability and is
    /// deleted outright (a budget would refuse to evict it while it is down).
    pub healthy: bool,
}

pub(super) fn pod_name(cluster: &str, node_id: u64) -> String {
    format!("{cluster}-{}", node_id.saturating_sub(1))
}

/// The view to believe when members disagree: the highest term wins (a
/// member cut off from the others keeps an old term and may still think it
/// leads); within it, the leader's own answer, else one that knows a leader.
fn best_view(probes: &[Probe]) -> Option<&RouterView> {
    probes.iter().filter_map(|probe| probe.outcome.as_ref().ok()).max_by_key(|view| {
        (view.term, view.leader_id != 0 && view.node_id == view.leader_id, view.leader_id != 0)
    })
}

pub(super) fn majority(voters: i32) -> i32 {
    voters / 2 + 1
}

pub(super) fn pod_up(pod: &PodState) -> bool {
    pod.ready && !pod.terminating
}

pub fn assess(observation: &Observation) -> Assessment {
    let cluster = &observation.cluster_name;
    let target = observation.target_replicas;
    let ready_replicas = observation.pods.iter().filter(|pod| pod_up(pod)).count() as i32;
    let mut assessment = Assessment {
        event: Event::Healthy,
        message: String::new(),
        leader_id: None,
        leader_pod: None,
        term: None,
        members: Vec::new(),
        ready_replicas,
        deployed_replicas: None,
        replicas_step: target,
        roll_next: None,
        router_admin: None,
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
    assessment.deployed_replicas = Some(current);
    let view = best_view(&observation.probes);
    if let Some(view) = view {
        assessment.term = Some(view.term);
        if view.leader_id != 0 {
            assessment.leader_id = Some(view.leader_id);
            assessment.leader_pod = Some(pod_name(cluster, view.leader_id));
        }
        assessment.members = members(observation, view, current);
    }
    // Replacing an outdated member that is down costs nothing, whatever else
    // is wrong: this is how reverting a bad image recovers by itself.
    let replace_broken =
        broken_outdated_pod(observation, stateful_set, view.map(|_| assessment.members.as_slice()));
    if !spec_invalid && !observation.paused {
        assessment.roll_next = replace_broken.clone();
    }
    let replacing = |message: String| match &replace_broken {
        Some(step) if !spec_invalid && !observation.paused => {
            format!("{message}; replacing {}, which is down and runs an old template", step.pod)
        }
        _ => message,
    };

    if view.is_none()
        && let Some(registry) =
            observation.registry_check.as_ref().filter(|_| !observation.without_admin.is_empty())
    {
        return super::assess_pods::assess(observation, stateful_set, registry, assessment);
    }
    assessment.router_admin = view.map(|_| true);
    let Some(view) = view else {
        (assessment.event, assessment.message) = if ready_replicas < current {
            (
                Event::PodsStarting,
                replacing(format!(
                    "{ready_replicas}/{current} router pods ready; waiting for the pods to start \
                     (kubectl get pods -l conveyor.etl/cluster={cluster})"
                )),
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

    let voters = current;
    let healthy = healthy_voters(&assessment.members);
    if view.leader_id == 0 {
        assessment.event = Event::NoQuorum;
        assessment.message = replacing(format!(
            "no leader in term {}: {healthy}/{voters} voting members healthy, a majority of {} is needed; \
             writes are refused until a leader is elected",
            view.term,
            majority(voters)
        ));
        return assessment;
    }
    let leader = assessment.leader_pod.clone().unwrap_or_default();
    let unhealthy: Vec<String> = assessment
        .members
        .iter()
        .filter(|member| !member.healthy || member.role == Role::Learner.as_str())
        .map(|member| match (member.role.as_str(), unanswered(observation, &member.pod)) {
            ("Learner", _) => format!("{} (node {}, a learner, not yet voting)", member.pod, member.node_id),
            (_, Some(error)) => {
                format!("{} (node {}) not answering the operator: {error}", member.pod, member.node_id)
            }
            _ => format!("{} (node {})", member.pod, member.node_id),
        })
        .collect();
    if spec_invalid {
        assessment.event = Event::SpecInvalid;
        let health = if unhealthy.is_empty() {
            String::new()
        } else {
            format!("; meanwhile {} unhealthy", unhealthy.join(", "))
        };
        assessment.message =
            format!("{}; the cluster keeps running its last valid spec{health}", invalid_message());
        return assessment;
    }
    let scaling = if target == current { String::new() } else { format!("scaling {current} → {target}; ") };
    // While growing, the member just added is joining, not failing: the
    // scale is still progressing.
    let newest = pod_name(cluster, current.max(0) as u64);
    let joining = target > current
        && assessment
            .members
            .iter()
            .all(|m| m.pod == newest || (m.healthy && m.role != Role::Learner.as_str()))
        && assessment.members.iter().any(|m| m.pod == newest);
    if joining && !unhealthy.is_empty() {
        assessment.event = Event::Scaling;
        assessment.message = format!(
            "scaling {current} → {target} one member at a time: waiting for {newest} (node {current}) to join"
        );
        return assessment;
    }
    if !unhealthy.is_empty() {
        assessment.event = Event::MembersUnhealthy;
        let mut message = format!(
            "{scaling}{} unhealthy or not joined; leader {leader} serves with {healthy}/{voters} voting members \
             (kubectl logs {cluster}-<ordinal> for the member's side)",
            unhealthy.join(", ")
        );
        if target < current && !observation.paused {
            match shrink_check(&assessment.members, current) {
                Ok(()) => assessment.replicas_step = current - 1,
                Err(waiting) => message = format!("{message}; {waiting}"),
            }
        }
        assessment.message = replacing(message);
        return assessment;
    }
    if target != current {
        assessment.event = Event::Scaling;
        let step = if target > current { current + 1 } else { current - 1 };
        if observation.paused {
            assessment.message = format!(
                "scaling {current} → {target} waits: reconciliation is paused (remove the conveyor.etl/paused \
                 annotation to continue)"
            );
        } else {
            assessment.replicas_step = step;
            assessment.message = format!("scaling {current} → {target} one member at a time: now to {step}");
        }
        return assessment;
    }
    let outdated: Vec<&PodState> = outdated_pods(observation, stateful_set).collect();
    if !stateful_set.spec_applied || !stateful_set.up_to_date || !outdated.is_empty() {
        assessment.event = Event::RollingUpdate;
        if observation.paused {
            assessment.message = format!(
                "generation {} is not rolled out: reconciliation is paused (remove the conveyor.etl/paused \
                 annotation to continue)",
                observation.generation
            );
            return assessment;
        }
        // Highest ordinal first, the leader last.
        let next = outdated
            .iter()
            .rev()
            .find(|pod| pod.name != leader)
            .or(outdated.first())
            .filter(|_| stateful_set.spec_applied && stateful_set.up_to_date)
            .filter(|_| !observation.pods.iter().any(|pod| pod.terminating));
        assessment.message = match next {
            Some(pod) => format!(
                "rolling {} pod(s) to generation {}'s template one at a time, leader last: {} now",
                outdated.len(),
                observation.generation,
                pod.name
            ),
            None => format!("applying generation {}'s spec", observation.generation),
        };
        assessment.roll_next =
            next.map(|pod| RollStep { pod: pod.name.clone(), uid: pod.uid.clone(), healthy: true });
        return assessment;
    }
    assessment.event = Event::Healthy;
    assessment.message = format!("leader {leader} in term {}; {healthy}/{voters} members healthy", view.term);
    assessment
}

/// Each expected member (node ids 1..=replicas) as the chosen view reports it.
fn members(observation: &Observation, view: &RouterView, replicas: i32) -> Vec<MemberStatus> {
    let cluster = &observation.cluster_name;
    let pod_ready = |node_id: u64| {
        observation.pods.iter().any(|pod| u64::from(pod.ordinal) + 1 == node_id && pod_up(pod))
    };
    (1..=replicas.max(0) as u64)
        .map(|node_id| {
            let reported = view.members.iter().find(|member| member.node_id == node_id);
            let pod = pod_name(cluster, node_id);
            // Its peers may find it healthy, but a member that does not answer
            // the operator within the deadline cannot take the operator's writes.
            let answers = unanswered(observation, &pod).is_none();
            MemberStatus {
                node_id,
                role: reported.map_or(Role::Unknown, |member| member.role).as_str().to_string(),
                healthy: answers && pod_ready(node_id) && reported.is_some_and(|member| member.healthy),
                pod,
            }
        })
        .collect()
}

/// The error of `pod`'s health probe, if it was polled and did not answer.
fn unanswered<'a>(observation: &'a Observation, pod: &str) -> Option<&'a str> {
    observation
        .probes
        .iter()
        .find(|probe| probe.pod == pod)
        .and_then(|probe| probe.outcome.as_ref().err())
        .map(String::as_str)
}

/// Healthy members that vote: a learner replicates but does not count for quorum.
fn healthy_voters(members: &[MemberStatus]) -> i32 {
    members.iter().filter(|m| m.healthy && m.role != Role::Learner.as_str()).count() as i32
}

/// Removing the highest member is a configuration change the current voting
/// members must commit: a majority of them must be healthy, and the members
/// that stay must hold a majority of the smaller cluster.
fn shrink_check(members: &[MemberStatus], current: i32) -> Result<(), String> {
    let healthy = healthy_voters(members);
    let staying: Vec<MemberStatus> =
        members.iter().filter(|m| m.node_id <= (current - 1) as u64).cloned().collect();
    let healthy_staying = healthy_voters(&staying);
    if healthy >= majority(current) && healthy_staying >= majority(current - 1) {
        Ok(())
    } else {
        Err(format!(
            "the scale step to {} waits: removing a member must be committed by {} of {current} voting members \
             and leave {} of {} healthy, but {healthy} and {healthy_staying} are",
            current - 1,
            majority(current),
            majority(current - 1),
            current - 1
        ))
    }
}

pub(super) fn outdated_pods<'a>(
    observation: &'a Observation,
    stateful_set: &'a StatefulSetState,
) -> impl Iterator<Item = &'a PodState> {
    observation.pods.iter().filter(move |pod| {
        stateful_set.update_revision.is_some() && pod.revision != stateful_set.update_revision
    })
}

/// The highest outdated pod that is down (not ready, or its member unhealthy), when
/// the StatefulSet already has the current template and no pod is on its way out.
fn broken_outdated_pod(
    observation: &Observation,
    stateful_set: &StatefulSetState,
    members: Option<&[MemberStatus]>,
) -> Option<RollStep> {
    if !stateful_set.spec_applied
        || !stateful_set.up_to_date
        || observation.pods.iter().any(|pod| pod.terminating)
    {
        return None;
    }
    // Without any router's view, only readiness tells a pod is down: a
    // router that cannot be reached is no reason to replace a ready pod.
    let member_healthy = |pod: &PodState| {
        members.is_none_or(|members| {
            members.iter().any(|m| m.node_id == u64::from(pod.ordinal) + 1 && m.healthy)
        })
    };
    outdated_pods(observation, stateful_set)
        .filter(|pod| !pod.ready || !member_healthy(pod))
        .max_by_key(|pod| pod.ordinal)
        .map(|pod| RollStep { pod: pod.name.clone(), uid: pod.uid.clone(), healthy: false })
}
