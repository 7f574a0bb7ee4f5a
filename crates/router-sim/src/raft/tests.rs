//! The Raft view's rules, one scenario per test: elections, quorum of voters,
//! partitioned members keeping their belief, learners.

use std::net::SocketAddr;

use super::*;

fn addr(id: u64) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1 + id as u8], 50051))
}

/// Voters 1..=3, no leader yet.
fn three() -> RaftView {
    let mut view = RaftView::default();
    for id in 1..=3 {
        view.members.insert(id, Member::new(addr(id)));
    }
    view
}

/// Voters 1..=3 and node 1 the leader of term 1, after `commits` writes.
fn led_by_one(commits: u64) -> RaftView {
    let mut view = three();
    view.elect();
    for _ in 0..commits {
        view.commit();
    }
    view
}

fn roles(status: &GetClusterStatusResponse) -> Vec<NodeRole> {
    status.nodes.iter().map(NodeStatus::role).collect()
}

#[test]
fn first_election_picks_the_lowest_id_for_term_one() {
    let mut view = three();
    assert_eq!(view.elect(), Some(1));
    assert_eq!(view.term, 1);
    assert_eq!(view.elect(), None, "one leader per term");
    assert_eq!(view.health(), ClusterHealth::Healthy);
}

#[test]
fn leader_loss_steps_down_and_the_next_election_starts_a_new_term() {
    let mut view = led_by_one(0);
    view.members.get_mut(&1).unwrap().up = false;
    assert!(view.check_leader());
    let electing = view.status(2);
    assert_eq!((electing.leader_id, electing.term), (0, 1), "no leader, old term");
    assert_eq!(roles(&electing), [NodeRole::Follower, NodeRole::Candidate, NodeRole::Candidate]);
    assert_eq!(view.health(), ClusterHealth::Degraded);
    assert_eq!(view.elect(), Some(2));
    assert_eq!(view.term, 2);
    let status = view.status(3);
    assert_eq!((status.leader_id, status.health()), (2, ClusterHealth::Degraded));
    assert!(!status.nodes[0].healthy);
}

#[test]
fn losing_quorum_leaves_no_leader_and_refuses_writes() {
    let mut view = led_by_one(0);
    view.members.get_mut(&2).unwrap().up = false;
    view.partition(3, Partition::Hang);
    assert!(view.check_leader());
    assert!(!view.needs_election());
    assert_eq!(view.elect(), None);
    let status = view.status(1);
    assert_eq!((status.leader_id, status.health()), (0, ClusterHealth::Unhealthy));
    assert_eq!(
        view.write_refusal(1).unwrap(),
        "no quorum: 1 of 3 voting members reachable; writes are refused"
    );
}

#[test]
fn followers_name_the_leader_when_refusing_a_write() {
    let view = led_by_one(0);
    assert_eq!(view.write_refusal(1), None);
    assert_eq!(view.write_refusal(3).unwrap(), "not leader; leader is 1 at 127.0.0.2:50051");
}

#[test]
fn commits_advance_indices_on_reachable_members_only() {
    let mut view = led_by_one(0);
    view.partition(3, Partition::Refuse);
    assert_eq!(view.commit(), 1);
    assert_eq!(view.commit(), 2);
    let status = view.status(1);
    assert_eq!((status.commit_index, status.applied_index), (2, 2));
    let matches: Vec<_> = status.nodes.iter().map(|node| node.match_index).collect();
    assert_eq!(matches, [2, 2, 0]);
}

#[test]
fn transfer_makes_a_reachable_member_leader_for_a_new_term() {
    let mut view = led_by_one(0);
    assert!(view.transfer_leadership(3));
    assert_eq!((view.leader, view.term), (Some(3), 2));
    view.members.get_mut(&2).unwrap().up = false;
    assert!(!view.transfer_leadership(2));
}

#[test]
fn isolated_leader_keeps_its_belief_while_the_majority_elects_anew() {
    let mut view = led_by_one(2);
    view.partition(1, Partition::PeersOnly);
    assert!(view.check_leader(), "the majority loses its leader");

    let electing = view.status(2);
    assert_eq!((electing.leader_id, electing.term), (0, 1));
    assert_eq!(view.elect(), Some(2));
    view.commit();

    let majority = view.status(3);
    assert_eq!((majority.node_id, majority.leader_id, majority.term), (3, 2, 2));
    assert_eq!(majority.commit_index, 3);
    assert_eq!(roles(&majority), [NodeRole::Follower, NodeRole::Leader, NodeRole::Follower]);
    assert_eq!(majority.health(), ClusterHealth::Degraded);

    let stale = view.status(1);
    assert_eq!((stale.node_id, stale.leader_id, stale.term), (1, 1, 1), "still leads its old term");
    assert_eq!((stale.commit_index, stale.applied_index), (2, 2), "the commit index it last had");
    assert_eq!(roles(&stale), [NodeRole::Leader, NodeRole::Follower, NodeRole::Follower]);
    let healthy: Vec<_> = stale.nodes.iter().map(|node| node.healthy).collect();
    assert_eq!(healthy, [true, false, false], "it sees none of its peers");
    let matches: Vec<_> = stale.nodes.iter().map(|node| node.match_index).collect();
    assert_eq!(matches, [2, 2, 2], "it knows of no entry past its commit index");
    assert_eq!(stale.health(), ClusterHealth::Unhealthy);
}

#[test]
fn isolated_member_refuses_writes_whatever_it_believes() {
    let mut view = led_by_one(0);
    view.partition(1, Partition::PeersOnly);
    view.check_leader();
    view.elect();
    let refusal = view.write_refusal(1).unwrap();
    assert!(refusal.starts_with("no quorum"), "{refusal}");
    assert_eq!(view.write_refusal(2), None, "the new leader has quorum");

    // A later change of mode keeps the belief it was cut off with.
    view.partition(1, Partition::Hang);
    assert_eq!(view.belief_of(1).leader, Some(1));
    assert_eq!(view.belief_of(1).term, 1);
}

#[test]
fn heal_catches_the_member_up() {
    let mut view = led_by_one(1);
    view.partition(1, Partition::PeersOnly);
    view.check_leader();
    view.elect();
    view.commit();
    view.heal(1);

    let healed = view.status(1);
    assert_eq!((healed.leader_id, healed.term, healed.commit_index), (2, 2, 2));
    assert_eq!(roles(&healed), [NodeRole::Follower, NodeRole::Leader, NodeRole::Follower]);
    assert_eq!(healed.nodes[0].match_index, 2);
    assert_eq!(healed.health(), ClusterHealth::Healthy);
    assert_eq!(view.write_refusal(1).unwrap(), "not leader; leader is 2 at 127.0.0.3:50051");
}

#[test]
fn learners_replicate_but_neither_count_for_quorum_nor_lead() {
    // Learners 1 and 5 around voters 2..=4: the lowest id is a learner.
    let mut view = RaftView::default();
    view.members.insert(1, Member::learner(addr(1)));
    for id in 2..=4 {
        view.members.insert(id, Member::new(addr(id)));
    }
    view.members.insert(5, Member::learner(addr(5)));
    assert_eq!(view.elect(), Some(2), "a learner is never elected");
    assert!(!view.transfer_leadership(1));
    view.commit();
    let status = view.status(1);
    assert_eq!(
        roles(&status),
        [NodeRole::Learner, NodeRole::Leader, NodeRole::Follower, NodeRole::Follower, NodeRole::Learner]
    );
    assert!(status.nodes.iter().all(|node| node.match_index == 1), "learners replicate");
    assert_eq!(view.write_refusal(1).unwrap(), "not leader; leader is 2 at 127.0.0.3:50051");

    // Three of five members up, but only one of three voters: no quorum.
    view.members.get_mut(&2).unwrap().up = false;
    view.members.get_mut(&3).unwrap().up = false;
    assert!(view.check_leader());
    assert!(!view.has_quorum());
    assert_eq!(view.elect(), None);
    assert!(view.write_refusal(4).unwrap().contains("1 of 3 voting members"));

    // Two of five members up, but two of three voters: quorum.
    view.members.get_mut(&3).unwrap().up = true;
    view.members.get_mut(&1).unwrap().up = false;
    view.members.get_mut(&5).unwrap().up = false;
    assert!(view.has_quorum());
    assert_eq!(view.elect(), Some(3));
}

#[test]
fn a_promoted_learner_votes_and_may_lead() {
    let mut view = led_by_one(0);
    view.members.insert(4, Member::learner(addr(4)));
    assert!(!view.promote(1), "already a voter");
    assert!(view.promote(4));
    assert_eq!(roles(&view.status(4))[3], NodeRole::Follower);
    view.members.get_mut(&1).unwrap().up = false;
    view.members.get_mut(&2).unwrap().up = false;
    assert!(!view.has_quorum(), "two of four voters");
    assert!(!view.transfer_leadership(4));
    view.members.get_mut(&2).unwrap().up = true;
    assert!(view.transfer_leadership(4));
    assert_eq!(view.leader, Some(4));
}
