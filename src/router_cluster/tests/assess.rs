//! `assess` on hand-built observations: which event, which step, which message.

use crate::router_cluster::assess::assess;
use crate::router_cluster::machine::Event;
use crate::router_cluster::observation::{
    MemberView, Observation, PodState, Probe, Role, RouterView, StatefulSetState,
};

pub(super) const REVISION: &str = "rev-1";

pub(super) fn pods(count: u32, ready: u32) -> Vec<PodState> {
    (0..count)
        .map(|ordinal| PodState {
            name: format!("c-{ordinal}"),
            uid: format!("uid-{ordinal}"),
            ordinal,
            ready: ordinal < ready,
            ip: Some(format!("127.0.0.{}", ordinal + 2)),
            revision: Some(REVISION.to_string()),
            terminating: false,
        })
        .collect()
}

fn view(node_id: u64, leader_id: u64, healthy: &[bool]) -> RouterView {
    RouterView {
        node_id,
        leader_id,
        term: 4,
        members: healthy
            .iter()
            .enumerate()
            .map(|(i, healthy)| MemberView {
                node_id: i as u64 + 1,
                role: if i as u64 + 1 == leader_id { Role::Leader } else { Role::Follower },
                healthy: *healthy,
            })
            .collect(),
    }
}

pub(super) fn observation(
    target: i32,
    replicas: i32,
    pods: Vec<PodState>,
    probes: Vec<Probe>,
) -> Observation {
    Observation {
        cluster_name: "c".to_string(),
        generation: 2,
        paused: false,
        target_replicas: target,
        spec_errors: Vec::new(),
        stateful_set: Some(StatefulSetState {
            replicas,
            update_revision: Some(REVISION.to_string()),
            up_to_date: true,
            spec_applied: true,
        }),
        pods,
        probes,
        without_admin: Vec::new(),
        registry_check: None,
    }
}

pub(super) fn healthy_probes(count: u64, leader: u64) -> Vec<Probe> {
    let all = vec![true; count as usize];
    (1..=count)
        .map(|id| Probe { pod: format!("c-{}", id - 1), outcome: Ok(view(id, leader, &all)) })
        .collect()
}

#[test]
fn nothing_deployed_and_invalid_spec_deploys_nothing() {
    let mut observed = observation(3, 0, vec![], vec![]);
    observed.stateful_set = None;
    assert_eq!(assess(&observed).event, Event::NotDeployed);
    observed.spec_errors = vec!["spec.raft.heartbeatIntervalMs (300) must be below ...".into()];
    let assessment = assess(&observed);
    assert_eq!(assessment.event, Event::SpecInvalid);
    assert!(assessment.message.contains("heartbeatIntervalMs"), "{}", assessment.message);
    assert!(assessment.message.contains("nothing is deployed"));
}

#[test]
fn pods_starting_until_one_answers() {
    let assessment = assess(&observation(3, 3, pods(3, 1), vec![]));
    assert_eq!(assessment.event, Event::PodsStarting);
    assert_eq!(assessment.ready_replicas, 1);
    assert!(assessment.message.contains("1/3"));
}

#[test]
fn ready_pods_that_do_not_answer_are_unreachable() {
    let probes =
        (0..3).map(|i| Probe { pod: format!("c-{i}"), outcome: Err("deadline exceeded".into()) }).collect();
    let assessment = assess(&observation(3, 3, pods(3, 3), probes));
    assert_eq!(assessment.event, Event::RouterUnreachable);
    assert!(assessment.message.contains("c-2: deadline exceeded"), "{}", assessment.message);
}

#[test]
fn no_leader_is_no_quorum() {
    let probes = vec![Probe { pod: "c-0".into(), outcome: Ok(view(1, 0, &[true, false, false])) }];
    let assessment = assess(&observation(3, 3, pods(3, 3), probes));
    assert_eq!(assessment.event, Event::NoQuorum);
    assert_eq!(assessment.leader_id, None);
    assert!(assessment.message.contains("majority of 2"), "{}", assessment.message);
}

#[test]
fn healthy_cluster_reports_leader_and_members() {
    let assessment = assess(&observation(3, 3, pods(3, 3), healthy_probes(3, 2)));
    assert_eq!(assessment.event, Event::Healthy);
    assert_eq!(assessment.leader_pod.as_deref(), Some("c-1"));
    assert_eq!(assessment.leader_id, Some(2));
    assert_eq!(assessment.term, Some(4));
    let roles: Vec<&str> = assessment.members.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["Follower", "Leader", "Follower"]);
    assert!(assessment.members.iter().all(|m| m.healthy));
    assert_eq!(assessment.replicas_step, 3);
    assert_eq!(assessment.roll_next, None);
}

#[test]
fn an_unhealthy_follower_is_named() {
    let probes = vec![Probe { pod: "c-0".into(), outcome: Ok(view(1, 1, &[true, true, false])) }];
    let assessment = assess(&observation(3, 3, pods(3, 3), probes));
    assert_eq!(assessment.event, Event::MembersUnhealthy);
    assert!(assessment.message.contains("c-2 (node 3)"), "{}", assessment.message);
}

#[test]
fn a_leader_that_does_not_answer_the_operator_is_unhealthy_though_its_peers_vouch_for_it() {
    // Found by the chaos suite: a leader slowed past the operator's deadline
    // left the cluster Ready while every write to it timed out.
    let all = [true, true, true];
    let probes = vec![
        Probe { pod: "c-0".into(), outcome: Err("deadline exceeded".into()) },
        Probe { pod: "c-1".into(), outcome: Ok(view(2, 1, &all)) },
        Probe { pod: "c-2".into(), outcome: Ok(view(3, 1, &all)) },
    ];
    let assessment = assess(&observation(3, 3, pods(3, 3), probes));
    assert_eq!(assessment.event, Event::MembersUnhealthy);
    assert!(!assessment.members[0].healthy);
    assert!(
        assessment.message.contains("c-0 (node 1) not answering the operator: deadline exceeded"),
        "{}",
        assessment.message
    );
}

#[test]
fn a_pod_that_is_not_ready_is_an_unhealthy_member_even_if_the_router_says_otherwise() {
    let assessment = assess(&observation(3, 3, pods(3, 2), healthy_probes(2, 1)));
    assert_eq!(assessment.event, Event::MembersUnhealthy);
    assert!(!assessment.members[2].healthy);
}

#[test]
fn scaling_up_adds_one_member_at_a_time_and_waits_for_it() {
    let step = assess(&observation(5, 3, pods(3, 3), healthy_probes(3, 1)));
    assert_eq!((step.event, step.replicas_step), (Event::Scaling, 4));
    assert!(step.message.contains("3 → 5"), "{}", step.message);

    // The fourth member is not ready yet: hold at 4.
    let waiting = assess(&observation(5, 4, pods(4, 3), healthy_probes(3, 1)));
    assert_eq!((waiting.event, waiting.replicas_step), (Event::Scaling, 4), "the scale is still progressing");
    assert!(waiting.message.contains("scaling 4 → 5"), "{}", waiting.message);
    assert!(waiting.message.contains("waiting for c-3 (node 4) to join"), "{}", waiting.message);

    // An older member failing meanwhile is a real problem, not part of the scale.
    let probes = vec![Probe { pod: "c-0".into(), outcome: Ok(view(1, 1, &[true, false, true, false])) }];
    let hurt = assess(&observation(5, 4, pods(4, 4), probes));
    assert_eq!((hurt.event, hurt.replicas_step), (Event::MembersUnhealthy, 4));
    assert!(hurt.message.contains("c-1 (node 2)"), "{}", hurt.message);
}

#[test]
fn scaling_down_removes_one_member_while_quorum_holds() {
    let step = assess(&observation(3, 5, pods(5, 5), healthy_probes(5, 1)));
    assert_eq!((step.event, step.replicas_step), (Event::Scaling, 4));

    // Member 5 is down; the 4 below it are healthy: removing it is safe.
    let probes = vec![Probe { pod: "c-0".into(), outcome: Ok(view(1, 1, &[true, true, true, true, false])) }];
    let step = assess(&observation(3, 5, pods(5, 5), probes));
    assert_eq!((step.event, step.replicas_step), (Event::MembersUnhealthy, 4));

    // Two of the four that would remain are down: shrinking would leave 2/4, no quorum.
    let probes =
        vec![Probe { pod: "c-0".into(), outcome: Ok(view(1, 1, &[true, true, false, false, true])) }];
    let held = assess(&observation(3, 5, pods(5, 5), probes));
    assert_eq!((held.event, held.replicas_step), (Event::MembersUnhealthy, 5));
}

#[test]
fn rolling_update_takes_followers_first_and_the_leader_last() {
    let mut all_old = pods(3, 3);
    for pod in &mut all_old {
        pod.revision = Some("rev-0".into());
    }
    let first = assess(&observation(3, 3, all_old.clone(), healthy_probes(3, 3)));
    assert_eq!(first.event, Event::RollingUpdate);
    assert_eq!(
        first.roll_next.as_ref().map(|s| s.pod.as_str()),
        Some("c-1"),
        "highest non-leader ordinal first"
    );

    let mut only_leader_old = pods(3, 3);
    only_leader_old[2].revision = Some("rev-0".into());
    let last = assess(&observation(3, 3, only_leader_old, healthy_probes(3, 3)));
    assert_eq!(last.roll_next.as_ref().map(|s| s.pod.as_str()), Some("c-2"), "the leader goes last");
}

#[test]
fn a_down_outdated_pod_is_replaced_first_and_healthy_ones_wait() {
    let mut old = pods(3, 2);
    for pod in &mut old {
        pod.revision = Some("rev-0".into());
    }
    let assessment = assess(&observation(3, 3, old, healthy_probes(2, 1)));
    assert_eq!(assessment.event, Event::MembersUnhealthy);
    let step = assessment.roll_next.expect("the down pod is replaced");
    assert_eq!((step.pod.as_str(), step.uid.as_str(), step.healthy), ("c-2", "uid-2", false));
    assert!(assessment.message.contains("replacing c-2"), "{}", assessment.message);

    // A down pod already on the current template is left alone (a bad image halts the roll).
    let mut bad_new = pods(3, 2);
    bad_new[0].revision = Some("rev-0".into());
    let halted = assess(&observation(3, 3, bad_new, healthy_probes(2, 1)));
    assert_eq!(halted.event, Event::MembersUnhealthy);
    assert_eq!(halted.roll_next, None, "healthy outdated pods wait while a member is down");
}

#[test]
fn nothing_is_replaced_while_paused_or_while_a_pod_terminates() {
    let mut old = pods(3, 2);
    for pod in &mut old {
        pod.revision = Some("rev-0".into());
    }
    let mut paused = observation(3, 3, old.clone(), healthy_probes(2, 1));
    paused.paused = true;
    assert_eq!(assess(&paused).roll_next, None);
    old[0].terminating = true;
    assert_eq!(assess(&observation(3, 3, old, healthy_probes(2, 1))).roll_next, None);
}

#[test]
fn without_any_router_view_only_unready_pods_are_replaced() {
    let mut old = pods(3, 3);
    for pod in &mut old {
        pod.revision = Some("rev-0".into());
    }
    let unreachable: Vec<Probe> =
        (0..3).map(|i| Probe { pod: format!("c-{i}"), outcome: Err("deadline exceeded".into()) }).collect();
    let blind = assess(&observation(3, 3, old.clone(), unreachable));
    assert_eq!((blind.event, blind.roll_next), (Event::RouterUnreachable, None));
    old[1].ready = false;
    let starting = assess(&observation(3, 3, old, vec![]));
    assert_eq!(starting.event, Event::PodsStarting);
    assert_eq!(starting.roll_next.map(|s| s.pod), Some("c-1".to_string()));
}

#[test]
fn ready_waits_until_this_generations_spec_is_applied() {
    let mut observed = observation(3, 3, pods(3, 3), healthy_probes(3, 1));
    observed.stateful_set.as_mut().unwrap().spec_applied = false;
    let assessment = assess(&observed);
    assert_eq!(assessment.event, Event::RollingUpdate);
    assert_eq!(assessment.roll_next, None, "no pod is replaced before the new template is in place");
    assert!(assessment.message.contains("generation 2"), "{}", assessment.message);

    observed.paused = true;
    let paused = assess(&observed);
    assert_eq!(paused.event, Event::RollingUpdate);
    assert!(paused.message.contains("paused"), "{}", paused.message);
}

#[test]
fn learners_do_not_count_as_voting_members() {
    let mut with_learner = view(1, 1, &[true, true, true]);
    with_learner.members[2].role = Role::Learner;
    let probes = vec![Probe { pod: "c-0".into(), outcome: Ok(with_learner) }];
    let assessment = assess(&observation(3, 3, pods(3, 3), probes));
    assert_eq!(assessment.event, Event::MembersUnhealthy);
    assert!(assessment.message.contains("c-2 (node 3, a learner, not yet voting)"), "{}", assessment.message);
    assert!(assessment.message.contains("2/3 voting members"), "{}", assessment.message);
}

#[test]
fn a_shrink_waits_for_the_members_that_must_commit_it_and_says_so() {
    // 5 → 3 with members 1, 2 and 5 down: 2/5 healthy cannot commit removing member 5.
    let probes =
        vec![Probe { pod: "c-2".into(), outcome: Ok(view(3, 3, &[false, false, true, true, false])) }];
    let held = assess(&observation(3, 5, pods(5, 5), probes));
    assert_eq!((held.event, held.replicas_step), (Event::MembersUnhealthy, 5));
    assert!(held.message.contains("the scale step to 4 waits"), "{}", held.message);
    assert!(held.message.contains("3 of 5 voting members"), "{}", held.message);
}

#[test]
fn the_highest_term_wins_over_a_stale_leader() {
    // Node 1 was cut off in term 4 and still believes it leads; the others elected node 2 in term 5.
    let stale = view(1, 1, &[true, true, true]);
    let current = RouterView { term: 5, ..view(2, 2, &[false, true, true]) };
    let probes = vec![
        Probe { pod: "c-0".into(), outcome: Ok(stale) },
        Probe { pod: "c-1".into(), outcome: Ok(current) },
    ];
    let assessment = assess(&observation(3, 3, pods(3, 3), probes));
    assert_eq!((assessment.leader_id, assessment.term), (Some(2), Some(5)));
    assert_eq!(assessment.event, Event::MembersUnhealthy);
}

#[test]
fn invalid_spec_on_a_running_cluster_keeps_it_running() {
    let mut observed = observation(3, 3, pods(3, 3), healthy_probes(3, 1));
    observed.spec_errors = vec!["spec.ports.grpc and spec.ports.raft must differ (both are 50051)".into()];
    let assessment = assess(&observed);
    assert_eq!(assessment.event, Event::SpecInvalid);
    assert!(assessment.message.contains("keeps running its last valid spec"));
}

#[test]
fn the_leaders_own_view_wins_over_a_stale_follower() {
    let probes = vec![
        Probe { pod: "c-0".into(), outcome: Ok(RouterView { term: 3, ..view(1, 0, &[true, true, true]) }) },
        Probe { pod: "c-2".into(), outcome: Ok(view(3, 3, &[true, true, true])) },
    ];
    let assessment = assess(&observation(3, 3, pods(3, 3), probes));
    assert_eq!(assessment.leader_id, Some(3));
}
