//! `assess` when the router serves no `RouterAdmin`: health from the pods and
//! the ServiceRegistry check; a multi-member cluster says it cannot form.

use crate::crd::{EtlRouterCluster, EtlRouterClusterSpec, EtlRouterClusterStatus};
use crate::router_cluster::assess::assess;
use crate::router_cluster::machine::Event;
use crate::router_cluster::observation::Observation;
use crate::router_cluster::status::next_status;
use crate::router_cluster::validate::Validation;

use super::assess::{REVISION, healthy_probes, observation, pods};

/// `replicas` pods of which `ready` are ready, every router without RouterAdmin.
fn without_admin(target: i32, replicas: i32, ready: u32, registry: Result<(), String>) -> Observation {
    let mut observed = observation(target, replicas, pods(replicas as u32, ready), vec![]);
    observed.without_admin = (0..ready).map(|ordinal| format!("c-{ordinal}")).collect();
    observed.registry_check = Some(registry);
    observed
}

#[test]
fn one_member_is_healthy_from_its_pod_and_the_registry() {
    let assessment = assess(&without_admin(1, 1, 1, Ok(())));
    assert_eq!(assessment.event, Event::Healthy);
    assert_eq!(assessment.router_admin, Some(false));
    assert_eq!((assessment.leader_id, assessment.leader_pod.as_deref(), assessment.term), (None, None, None));
    assert_eq!(assessment.members.len(), 1);
    assert_eq!(
        (assessment.members[0].node_id, assessment.members[0].role.as_str(), assessment.members[0].healthy),
        (1, "Unknown", true)
    );
    assert!(assessment.message.contains("serves no RouterAdmin"), "{}", assessment.message);
    assert_eq!(assessment.replicas_step, 1);
    assert_eq!(assessment.roll_next, None);
}

#[test]
fn a_pod_not_ready_is_starting_and_a_silent_registry_is_unreachable() {
    let mut observed = without_admin(1, 1, 0, Ok(()));
    // No ready pod was asked anything, but the cluster knew before: a pod restarting.
    observed.without_admin = vec!["c-0".into()];
    assert_eq!(assess(&observed).event, Event::PodsStarting);
    let assessment = assess(&without_admin(1, 1, 1, Err("deadline exceeded".into())));
    assert_eq!(assessment.event, Event::RouterUnreachable);
    assert!(assessment.message.contains("deadline exceeded"), "{}", assessment.message);
    assert!(assessment.message.contains("ServiceRegistry"), "{}", assessment.message);
}

#[test]
fn several_members_cannot_join_and_the_message_says_why() {
    for registry in [Ok(()), Err("no leader".to_string())] {
        let assessment = assess(&without_admin(3, 3, 3, registry.clone()));
        assert_eq!(assessment.event, Event::MembersCannotJoin, "{registry:?}");
        for words in
            ["3 members cannot form one cluster", "no call to add a member", "--peers", "spec.replicas to 1"]
        {
            assert!(assessment.message.contains(words), "{words:?} not in {}", assessment.message);
        }
        assert_eq!(assessment.replicas_step, 3, "nothing to step to");
        assert_eq!(assessment.router_admin, Some(false));
    }
}

#[test]
fn scaling_steps_one_member_at_a_time_without_membership_checks() {
    let down = assess(&without_admin(1, 3, 3, Ok(())));
    assert_eq!((down.event, down.replicas_step), (Event::Scaling, 2));
    let up = assess(&without_admin(3, 1, 1, Ok(())));
    assert_eq!((up.event, up.replicas_step), (Event::Scaling, 2));
    let mut paused = without_admin(3, 1, 1, Ok(()));
    paused.paused = true;
    let waiting = assess(&paused);
    assert_eq!((waiting.event, waiting.replicas_step), (Event::Scaling, 1));
    assert!(waiting.message.contains("paused"), "{}", waiting.message);
}

#[test]
fn an_outdated_pod_is_rolled() {
    let mut observed = without_admin(1, 1, 1, Ok(()));
    observed.stateful_set.as_mut().unwrap().update_revision = Some(format!("{REVISION}-next"));
    let assessment = assess(&observed);
    assert_eq!(assessment.event, Event::RollingUpdate);
    assert_eq!(assessment.roll_next.as_ref().map(|step| step.pod.as_str()), Some("c-0"));
}

#[test]
fn a_member_that_answers_takes_precedence_over_pods_without_router_admin() {
    let mut observed = observation(3, 3, pods(3, 3), healthy_probes(2, 1));
    observed.without_admin = vec!["c-2".into()];
    observed.registry_check = None;
    let assessment = assess(&observed);
    assert_eq!(assessment.router_admin, Some(true));
    assert_eq!(assessment.leader_id, Some(1));
    assert_eq!(assess(&observation(3, 3, pods(3, 3), healthy_probes(3, 1))).router_admin, Some(true));
}

#[test]
fn status_says_router_admin_is_unimplemented_and_takes_it_back_when_served() {
    let mut cluster = EtlRouterCluster::new(
        "c",
        EtlRouterClusterSpec {
            replicas: 1,
            ..serde_json::from_str(r#"{"replicas":1,"image":"r"}"#).unwrap()
        },
    );
    cluster.metadata.generation = Some(2);
    let without = assess(&without_admin(1, 1, 1, Ok(())));
    let phase = crate::crd::ClusterPhase::Ready;
    let status = next_status(&cluster, phase, &without, &Validation::default(), false, Ok(()));
    let condition =
        status.conditions.iter().find(|c| c.type_ == "RouterAdmin").expect("RouterAdmin condition");
    assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("False", "RouterAdminUnimplemented"));
    assert!(condition.message.contains("health comes from pod readiness"), "{}", condition.message);
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "True");

    // A cluster whose router serves RouterAdmin never shows the condition...
    let served = assess(&observation(1, 1, pods(1, 1), healthy_probes(1, 1)));
    let fresh = next_status(&cluster, phase, &served, &Validation::default(), false, Ok(()));
    assert!(fresh.conditions.iter().all(|c| c.type_ != "RouterAdmin"));
    // ... but one that showed it False shows it True again.
    cluster.status = Some(EtlRouterClusterStatus { conditions: status.conditions, ..Default::default() });
    let back = next_status(&cluster, phase, &served, &Validation::default(), false, Ok(()));
    let condition = back.conditions.iter().find(|c| c.type_ == "RouterAdmin").unwrap();
    assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("True", "RouterAdminServed"));
}
