//! The simulator's per-member views, partition modes and learners, as the
//! operator's router client sees them over real gRPC on loopback.
//!
//! Each test runs its own cluster on its own loopback range (127.<test>.0.<node>,
//! port 0). Nothing waits with a bare sleep: conditions are polled with a deadline
//! by [`until`].

mod support;

use std::time::{Duration, Instant};

use conveyor_etl_operator::crd::{DlqSpec, EtlPipelineSpec};
use conveyor_etl_operator::router::mapping;
use conveyor_etl_operator::router::{
    ClientOptions, ClusterHealth, GetClusterStatusResponse, NodeRole, PipelineConfig, Router, RouterClient,
    RouterError,
};
use conveyor_router_sim::{Partition, SimCluster, SimOptions};
use support::router_sim::{fast_options, node_addr, until};

/// Voters with ids `ids` on 127.<range>.0.<id>, any free port.
async fn cluster(range: u8, ids: &[u8], options: SimOptions) -> SimCluster {
    let nodes = ids.iter().map(|&id| (u64::from(id), node_addr(range, id))).collect();
    SimCluster::start(nodes, options).await.unwrap()
}

fn config(name: &str) -> PipelineConfig {
    let spec = EtlPipelineSpec {
        source: "kafka-users".into(),
        steps: Vec::new(),
        sink: "clickhouse".into(),
        dlq: DlqSpec { enabled: false, max_retries: 0 },
        cluster_ref: None,
        enabled: true,
    };
    mapping::pipeline_config("team-a", name, 1, &spec)
}

/// `(term, leader_id)` as `member` reports it, `None` if it does not answer.
async fn view(client: &RouterClient, member: &str) -> Option<(u64, u64)> {
    let status = client.member_status(member).await.ok()?;
    Some((status.term, status.leader_id))
}

fn roles(status: &GetClusterStatusResponse) -> Vec<NodeRole> {
    status.nodes.iter().map(|node| node.role()).collect()
}

#[tokio::test]
async fn isolated_leader_claims_its_old_term_while_the_majority_elects_anew() {
    let sim = cluster(61, &[1, 2, 3], SimOptions::default()).await;
    let members = sim.endpoints();
    let client = RouterClient::new(fast_options());
    client.create_pipeline(&members, config("before")).await.unwrap();

    sim.partition_node_with(1, Partition::PeersOnly);
    until(Duration::from_secs(3), "nodes 2 and 3 follow node 2 in term 2", || async {
        view(&client, &members[1]).await == Some((2, 2)) && view(&client, &members[2]).await == Some((2, 2))
    })
    .await;
    // A client given every member, the stale one included, still finds the real leader.
    let fresh = RouterClient::new(fast_options());
    fresh.create_pipeline(&members, config("after")).await.unwrap();
    assert_eq!(sim.mutation_log().last().map(|m| m.node), Some(2), "written through the new leader");

    // Node 1 still answers clients, from what it believed when it was cut off.
    let stale = client.member_status(&members[0]).await.unwrap();
    assert_eq!((stale.node_id, stale.term, stale.leader_id), (1, 1, 1));
    assert_eq!(stale.commit_index, 1, "the commit index it last had");
    assert_eq!(roles(&stale), [NodeRole::Leader, NodeRole::Follower, NodeRole::Follower]);
    assert_eq!(stale.health(), ClusterHealth::Unhealthy);
    assert_eq!(sim.view_of(1), Some((1, 1)));

    let majority = client.member_status(&members[2]).await.unwrap();
    assert_eq!((majority.node_id, majority.commit_index), (3, 2));
    assert_eq!(roles(&majority), [NodeRole::Follower, NodeRole::Leader, NodeRole::Follower]);
    assert!(!majority.nodes[0].healthy);
    assert_eq!(majority.health(), ClusterHealth::Degraded);
    assert_eq!(sim.view_of(3), Some((2, 2)));

    // It claims to lead but has no quorum: a write to it is refused, never logged.
    let once = RouterClient::new(ClientOptions { max_attempts: 1, ..fast_options() });
    let error = once.create_pipeline(&members[..1], config("refused")).await.unwrap_err();
    let RouterError::Exhausted { last, .. } = &error else { panic!("expected Exhausted, got {error:?}") };
    assert!(matches!(**last, RouterError::NoQuorum { .. }), "{last:?}");
    assert!(sim.mutation_log().iter().all(|mutation| mutation.target != "team-a/refused"));
    assert_eq!(sim.mutation_log().len(), 2);

    // Healed, it catches up with the majority's term, leader and commit index.
    sim.heal_node(1);
    let healed = client.member_status(&members[0]).await.unwrap();
    assert_eq!((healed.term, healed.leader_id, healed.commit_index), (2, 2, 2));
    assert_eq!(roles(&healed), [NodeRole::Follower, NodeRole::Leader, NodeRole::Follower]);
    assert_eq!(healed.health(), ClusterHealth::Healthy);
    sim.shutdown().await;
}

#[tokio::test]
async fn survivors_report_no_leader_in_the_old_term_until_the_election() {
    // An election delay far beyond the test, so the window stays open.
    let options = SimOptions { election_delay: Duration::from_secs(600), ..SimOptions::default() };
    let sim = cluster(62, &[1, 2, 3], options).await;
    let members = sim.endpoints();
    let client = RouterClient::new(fast_options());

    sim.partition_node_with(1, Partition::PeersOnly);
    for member in &members[1..] {
        let status = client.member_status(member).await.unwrap();
        assert_eq!((status.term, status.leader_id), (1, 0), "{member}");
        assert_eq!(roles(&status), [NodeRole::Follower, NodeRole::Candidate, NodeRole::Candidate]);
        assert_eq!(status.health(), ClusterHealth::Degraded);
    }
    assert_eq!(view(&client, &members[0]).await, Some((1, 1)), "the isolated leader still leads");

    sim.heal_node(1);
    assert_eq!(view(&client, &members[0]).await, Some((1, 0)), "healed into the election");
    sim.shutdown().await;
}

#[tokio::test]
async fn refuse_fails_fast_and_hang_runs_into_the_deadline() {
    let sim = cluster(63, &[1, 2, 3], SimOptions::default()).await;
    let members = sim.endpoints();
    let timeout = Duration::from_secs(1);
    let client = RouterClient::new(ClientOptions { call_timeout: timeout, ..fast_options() });
    client.member_status(&members[2]).await.unwrap();

    sim.partition_node_with(3, Partition::Refuse);
    let started = Instant::now();
    let error = client.member_status(&members[2]).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(error, RouterError::Unavailable { ref member, .. } if member == &members[2]),
        "{error:?}"
    );
    assert_eq!(error.reason(), "RouterUnreachable");
    assert!(elapsed < timeout / 2, "refused well before the deadline: {elapsed:?}");

    // Out of quorum like any partition: a second one leaves node 1 without a quorum.
    let status = client.member_status(&members[0]).await.unwrap();
    assert!(!status.nodes[2].healthy);
    assert_eq!((status.leader_id, status.health()), (1, ClusterHealth::Degraded));
    sim.partition_node_with(2, Partition::Refuse);
    let status = client.member_status(&members[0]).await.unwrap();
    assert_eq!((status.leader_id, status.health()), (0, ClusterHealth::Unhealthy));
    sim.heal_node(2);

    sim.partition_node_with(3, Partition::Hang);
    let started = Instant::now();
    let error = client.member_status(&members[2]).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(error, RouterError::DeadlineExceeded { .. }), "{error:?}");
    assert!(elapsed >= timeout - Duration::from_millis(100), "{elapsed:?}");
    // Ending at all, near the deadline, is the point (slack for a loaded machine).
    assert!(elapsed < timeout + Duration::from_secs(1), "{elapsed:?}");

    sim.heal_node(3);
    until(Duration::from_secs(3), "node 3 follows the re-elected leader", || async {
        view(&client, &members[2]).await.is_some_and(|(_, leader)| leader != 0)
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn learners_replicate_but_never_vote_or_lead() {
    // Voters 2..=4; learners 1 and 5, so the lowest id is a learner.
    let sim = cluster(64, &[2, 3, 4], SimOptions::default()).await;
    sim.add_learner(1, node_addr(64, 1)).await.unwrap();
    sim.add_learner(5, node_addr(64, 5)).await.unwrap();
    let members = sim.endpoints();
    let client = RouterClient::new(fast_options());
    client.create_pipeline(&members, config("users")).await.unwrap();

    let expected =
        [NodeRole::Learner, NodeRole::Leader, NodeRole::Follower, NodeRole::Follower, NodeRole::Learner];
    for (index, member) in members.iter().enumerate() {
        let status = client.member_status(member).await.unwrap();
        assert_eq!((status.node_id, status.term, status.leader_id), (index as u64 + 1, 1, 2));
        assert_eq!(roles(&status), expected, "as node {} sees it", index + 1);
        assert!(status.nodes.iter().all(|node| node.match_index == 1), "every member replicated");
    }

    // The leader goes: the next election skips learner 1.
    sim.stop_node(2).await;
    until(Duration::from_secs(3), "voter 3 leads", || async {
        view(&client, &members[0]).await == Some((2, 3))
    })
    .await;

    // Three of five members up, but one of three voters: no quorum, no leader.
    sim.stop_node(3).await;
    let status = client.member_status(&members[4]).await.unwrap();
    assert_eq!((status.leader_id, status.health()), (0, ClusterHealth::Unhealthy));

    // A promoted learner votes: with it, two of four voters are up, still no
    // quorum; once voter 3 is back, three of four, and it may lead.
    assert!(sim.promote_learner(5));
    assert!(!sim.transfer_leadership(5));
    sim.restart_node(3).await.unwrap();
    assert!(sim.transfer_leadership(5));
    let status = client.member_status(&members[0]).await.unwrap();
    assert_eq!(status.leader_id, 5);
    assert_eq!(roles(&status)[4], NodeRole::Leader);
    sim.shutdown().await;
}
