//! `assess` for a router that serves no `RouterAdmin` (the public
//! conveyor-etl-router): no member can say who leads or who has joined, so
//! health comes from the pods' readiness and from whether `ServiceRegistry`
//! answers (the cluster's shared `ListServices`, at most one call per health
//! interval). Pure.
//!
//! Such a router cannot add members: a node started with other peers waits
//! to be added, and nothing can add it (alexchoi0/conveyor: the router has
//! no membership RPC). So a cluster of more than one member cannot form, and
//! says so with [`Event::MembersCannotJoin`] instead of waiting silently.

use crate::crd::MemberStatus;

use super::assess::{Assessment, RollStep, outdated_pods, pod_name, pod_up};
use super::machine::Event;
use super::observation::{Observation, Role, StatefulSetState};

const FROM_PODS: &str = "health comes from the pods: the router serves no RouterAdmin";

pub(super) fn assess(
    observation: &Observation,
    stateful_set: &StatefulSetState,
    registry: &Result<(), String>,
    mut assessment: Assessment,
) -> Assessment {
    let cluster = &observation.cluster_name;
    let current = stateful_set.replicas;
    let target = observation.target_replicas;
    let ready = assessment.ready_replicas;
    assessment.router_admin = Some(false);
    assessment.members = (1..=current.max(0) as u64)
        .map(|node_id| MemberStatus {
            node_id,
            pod: pod_name(cluster, node_id),
            role: Role::Unknown.as_str().to_owned(),
            healthy: observation.pods.iter().any(|pod| u64::from(pod.ordinal) + 1 == node_id && pod_up(pod)),
        })
        .collect();
    let replacing = |message: String| match &assessment.roll_next {
        Some(step) => format!("{message}; replacing {}, which is down and runs an old template", step.pod),
        None => message,
    };
    let (event, message) = if !observation.spec_errors.is_empty() {
        let errors = observation.spec_errors.join("; ");
        (
            Event::SpecInvalid,
            format!(
                "the spec is invalid: {errors}; fix it to continue; the cluster keeps running its last valid spec"
            ),
        )
    } else if ready < current {
        (
            Event::PodsStarting,
            replacing(format!(
                "{ready}/{current} router pods ready (kubectl get pods -l conveyor.etl/cluster={cluster}); {FROM_PODS}"
            )),
        )
    } else if target != current && observation.paused {
        (
            Event::Scaling,
            format!(
                "scaling {current} → {target} waits: reconciliation is paused (remove the conveyor.etl/paused \
                 annotation to continue)"
            ),
        )
    } else if target != current {
        let step = if target > current { current + 1 } else { current - 1 };
        assessment.replicas_step = step;
        (
            Event::Scaling,
            format!("scaling {current} → {target} one member at a time: now to {step}; {FROM_PODS}"),
        )
    } else if current > 1 {
        let registry = match registry {
            Ok(()) => String::new(),
            Err(error) => format!("; its ServiceRegistry does not answer either ({error})"),
        };
        (
            Event::MembersCannotJoin,
            format!(
                "{current} members cannot form one cluster: this router serves no RouterAdmin and has no call \
                 to add a member, so, as in the public conveyor-etl-router, a node started with other --peers \
                 waits to be added and none ever is (and the operator cannot see who joined){registry}. Set \
                 spec.replicas to 1, or deploy a router build that serves RouterAdmin"
            ),
        )
    } else if let Err(error) = registry {
        (
            Event::RouterUnreachable,
            format!(
                "the router's ServiceRegistry did not answer ({error}); {FROM_PODS}, so its health is unknown: \
                 check the router pods' logs and that the operator can reach their gRPC port"
            ),
        )
    } else {
        let outdated: Vec<_> = outdated_pods(observation, stateful_set).collect();
        if !stateful_set.spec_applied || !stateful_set.up_to_date || !outdated.is_empty() {
            let next = outdated
                .last()
                .filter(|_| stateful_set.spec_applied && stateful_set.up_to_date && !observation.paused)
                .filter(|_| !observation.pods.iter().any(|pod| pod.terminating));
            if assessment.roll_next.is_none() {
                assessment.roll_next =
                    next.map(|pod| RollStep { pod: pod.name.clone(), uid: pod.uid.clone(), healthy: true });
            }
            let message = match (observation.paused, next) {
                (true, _) => format!(
                    "generation {} is not rolled out: reconciliation is paused (remove the conveyor.etl/paused \
                     annotation to continue)",
                    observation.generation
                ),
                (false, Some(pod)) => format!(
                    "rolling {} pod(s) to generation {}'s template one at a time: {} now",
                    outdated.len(),
                    observation.generation,
                    pod.name
                ),
                (false, None) => format!("applying generation {}'s spec", observation.generation),
            };
            (Event::RollingUpdate, message)
        } else {
            (
                Event::Healthy,
                format!("{ready}/{current} router pods ready and ServiceRegistry answers; {FROM_PODS}"),
            )
        }
    };
    assessment.event = event;
    assessment.message = message;
    assessment
}
