//! A node's answer to `GetClusterStatus`, and whether it may take a write,
//! from its openraft metrics and the peers it has heard from lately. Pure.
//!
//! openraft keeps a leader that lost its quorum leading (it only stops
//! committing); this node, like a router with a check-quorum rule, reports
//! no leader and refuses writes while it hears from no majority of voters.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use conveyor_router_contract::proto::router::{
    ClusterHealth, GetClusterStatusResponse, NodeRole, NodeStatus,
};

use super::types::Metrics;

/// What a node knows when it answers.
#[derive(Debug)]
pub struct View<'a> {
    pub metrics: &'a Metrics,
    /// When each other node was last heard from, for those heard from lately.
    pub live: &'a BTreeMap<u64, SystemTime>,
    pub now: SystemTime,
}

impl View<'_> {
    fn own(&self) -> u64 {
        self.metrics.id
    }

    fn voters(&self) -> BTreeSet<u64> {
        self.metrics.membership_config.membership().voter_ids().collect()
    }

    pub fn healthy(&self, id: u64) -> bool {
        id == self.own() || self.live.contains_key(&id)
    }

    fn healthy_voters(&self) -> usize {
        self.voters().into_iter().filter(|id| self.healthy(*id)).count()
    }

    pub fn has_quorum(&self) -> bool {
        let voters = self.voters().len();
        voters > 0 && self.healthy_voters() * 2 > voters
    }

    /// The leader this node believes in; itself only while it hears from a majority.
    pub fn leader(&self) -> Option<u64> {
        let leader = self.metrics.current_leader?;
        (leader != self.own() || self.has_quorum()).then_some(leader)
    }

    /// The client address of member `id`, as the membership records it.
    pub fn address(&self, id: u64) -> Option<String> {
        let membership = self.metrics.membership_config.membership();
        membership.get_node(&id).map(|member| member.api.clone()).filter(|api| !api.is_empty())
    }

    fn no_quorum(&self) -> String {
        format!(
            "no quorum: {} of {} voting members reachable; writes are refused",
            self.healthy_voters(),
            self.voters().len()
        )
    }

    /// Why this node may not take a write now, in the words a router uses;
    /// `None` when it leads with a quorum.
    pub fn write_refusal(&self) -> Option<String> {
        match self.leader() {
            Some(leader) if leader == self.own() => None,
            Some(leader) => Some(not_leader(leader, self.address(leader).as_deref())),
            None if self.metrics.current_leader == Some(self.own()) || !self.has_quorum() => {
                Some(self.no_quorum())
            }
            None => Some("not leader; leader unknown (election in progress)".to_owned()),
        }
    }

    pub fn health(&self) -> ClusterHealth {
        let membership = self.metrics.membership_config.membership();
        if !self.has_quorum() {
            ClusterHealth::Unhealthy
        } else if self.leader().is_none()
            || membership.learner_ids().next().is_some()
            || membership.nodes().any(|(id, _)| !self.healthy(*id))
        {
            ClusterHealth::Degraded
        } else {
            ClusterHealth::Healthy
        }
    }

    fn role(&self, id: u64, voter: bool) -> NodeRole {
        match self.leader() {
            _ if !voter => NodeRole::Learner,
            Some(leader) if leader == id => NodeRole::Leader,
            Some(_) => NodeRole::Follower,
            None if self.healthy(id) => NodeRole::Candidate,
            None => NodeRole::Follower,
        }
    }

    fn match_index(&self, id: u64) -> u64 {
        if id == self.own() {
            return self.metrics.last_log_index.unwrap_or(0);
        }
        let replication = self.metrics.replication.as_ref();
        replication.and_then(|matched| matched.get(&id).copied().flatten()).map_or(0, |log_id| log_id.index)
    }

    pub fn status(&self) -> GetClusterStatusResponse {
        let membership = self.metrics.membership_config.membership();
        let voters = self.voters();
        let applied = self.metrics.last_applied.map_or(0, |log_id| log_id.index);
        let nodes = membership
            .nodes()
            .map(|(id, member)| NodeStatus {
                node_id: *id,
                address: member.api.clone(),
                role: self.role(*id, voters.contains(id)).into(),
                healthy: self.healthy(*id),
                match_index: self.match_index(*id),
                last_contact: Some(
                    if *id == self.own() {
                        self.now
                    } else {
                        self.live.get(id).copied().unwrap_or(SystemTime::UNIX_EPOCH)
                    }
                    .into(),
                ),
            })
            .collect();
        GetClusterStatusResponse {
            node_id: self.own(),
            leader_id: self.leader().unwrap_or(0),
            term: self.metrics.current_term,
            // openraft's metrics say what is applied, not what is committed: the two are reported alike.
            commit_index: applied,
            applied_index: applied,
            nodes,
            health: self.health().into(),
        }
    }
}

/// A follower's refusal, naming the leader and where clients reach it.
pub fn not_leader(leader: u64, address: Option<&str>) -> String {
    match address {
        Some(address) => format!("not leader; leader is {leader} at {address}"),
        None => format!("not leader; leader is {leader}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use openraft::{Membership, RaftMetrics, StoredMembership};

    use super::*;
    use crate::raft_node::types::Member;

    fn metrics(own: u64, leader: Option<u64>, voters: &[u64]) -> Metrics {
        let nodes: BTreeMap<u64, Member> = voters
            .iter()
            .map(|id| (*id, Member { raft: format!("r{id}:2"), api: format!("10.0.0.{id}:1") }))
            .collect();
        let membership = Membership::new(vec![voters.iter().copied().collect()], nodes);
        let mut metrics = RaftMetrics::new_initial(own);
        metrics.current_leader = leader;
        metrics.current_term = 4;
        metrics.membership_config = Arc::new(StoredMembership::new(None, membership));
        metrics
    }

    fn live(ids: &[u64]) -> BTreeMap<u64, SystemTime> {
        ids.iter().map(|id| (*id, SystemTime::now())).collect()
    }

    #[test]
    fn a_follower_refuses_writes_naming_the_leader_and_its_client_address() {
        let metrics = metrics(2, Some(1), &[1, 2, 3]);
        let live = live(&[1, 3]);
        let view = View { metrics: &metrics, live: &live, now: SystemTime::now() };
        assert_eq!(view.write_refusal().as_deref(), Some("not leader; leader is 1 at 10.0.0.1:1"));
        let status = view.status();
        assert_eq!((status.leader_id, status.term, status.health()), (1, 4, ClusterHealth::Healthy));
        let roles: Vec<NodeRole> = status.nodes.iter().map(|node| node.role()).collect();
        assert_eq!(roles, [NodeRole::Leader, NodeRole::Follower, NodeRole::Follower]);
    }

    #[test]
    fn a_leader_that_hears_from_no_majority_claims_nothing_and_refuses_writes() {
        let metrics = metrics(1, Some(1), &[1, 2, 3]);
        let with_one = live(&[2]);
        let view = View { metrics: &metrics, live: &with_one, now: SystemTime::now() };
        assert_eq!(view.write_refusal(), None);
        assert_eq!(view.status().health(), ClusterHealth::Degraded, "3 is down");
        let alone = live(&[]);
        let view = View { metrics: &metrics, live: &alone, now: SystemTime::now() };
        let refusal = view.write_refusal().unwrap();
        assert!(refusal.starts_with("no quorum: 1 of 3"), "{refusal}");
        assert_eq!((view.status().leader_id, view.status().health()), (0, ClusterHealth::Unhealthy));
    }

    #[test]
    fn a_node_not_yet_in_a_cluster_has_no_leader_and_no_quorum() {
        let metrics = RaftMetrics::new_initial(3);
        let view = View { metrics: &metrics, live: &BTreeMap::new(), now: SystemTime::now() };
        assert_eq!(view.status().leader_id, 0);
        assert!(view.write_refusal().unwrap().starts_with("no quorum"));
        let electing = self::metrics(3, None, &[1, 2, 3]);
        let heard = live(&[2]);
        let view = View { metrics: &electing, live: &heard, now: SystemTime::now() };
        assert_eq!(
            view.write_refusal().as_deref(),
            Some("not leader; leader unknown (election in progress)")
        );
        assert_eq!(view.status().health(), ClusterHealth::Degraded);
    }
}
