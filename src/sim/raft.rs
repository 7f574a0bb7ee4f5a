//! The simulated Raft view every node of a [`SimCluster`](super::SimCluster) shares:
//! membership, who is up and reachable, the leader and term, and the log indices.
//!
//! Rules: a member is *reachable* when it is up and not partitioned; the cluster
//! has *quorum* when more than half of the members are reachable; the leader must
//! be reachable and the cluster must have quorum, otherwise it steps down (the
//! leader becomes unknown, `leader_id` 0); an election picks the reachable member
//! with the lowest id and starts a new term. Exactly one leader per term.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::router::proto::router::{ClusterHealth, GetClusterStatusResponse, NodeRole, NodeStatus};

/// One member of the simulated cluster.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub addr: SocketAddr,
    /// Serving (not stopped).
    pub up: bool,
    /// Calls hang; out of quorum.
    pub partitioned: bool,
    /// Extra delay before every call is served.
    pub slow: Option<Duration>,
    /// Last log index replicated to this member.
    pub match_index: u64,
    /// When the leader last heard from this member.
    pub last_contact: SystemTime,
}

impl Member {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            up: true,
            partitioned: false,
            slow: None,
            match_index: 0,
            last_contact: SystemTime::now(),
        }
    }

    pub fn reachable(&self) -> bool {
        self.up && !self.partitioned
    }
}

/// Membership, leadership and log indices (see the module docs for the rules).
#[derive(Clone, Debug, Default)]
pub(crate) struct RaftView {
    pub members: BTreeMap<u64, Member>,
    pub leader: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
}

impl RaftView {
    pub fn reachable(&self, id: u64) -> bool {
        self.members.get(&id).is_some_and(Member::reachable)
    }

    pub fn reachable_count(&self) -> usize {
        self.members.values().filter(|member| member.reachable()).count()
    }

    pub fn has_quorum(&self) -> bool {
        !self.members.is_empty() && self.reachable_count() * 2 > self.members.len()
    }

    /// Steps the leader down if it is unreachable or the cluster lost quorum.
    /// Returns whether the leader changed.
    pub fn check_leader(&mut self) -> bool {
        match self.leader {
            Some(leader) if !self.reachable(leader) || !self.has_quorum() => {
                self.leader = None;
                true
            }
            _ => false,
        }
    }

    pub fn needs_election(&self) -> bool {
        self.leader.is_none() && self.has_quorum()
    }

    /// Elects the reachable member with the lowest id for a new term, if an
    /// election is needed. Returns the new leader.
    pub fn elect(&mut self) -> Option<u64> {
        if !self.needs_election() {
            return None;
        }
        let leader = self.members.iter().find(|(_, member)| member.reachable()).map(|(id, _)| *id)?;
        self.term += 1;
        self.leader = Some(leader);
        Some(leader)
    }

    /// Makes `id` leader for a new term (a leadership transfer). False when `id`
    /// is not a reachable member or there is no quorum.
    pub fn transfer_leadership(&mut self, id: u64) -> bool {
        if !self.reachable(id) || !self.has_quorum() {
            return false;
        }
        if self.leader != Some(id) {
            self.term += 1;
            self.leader = Some(id);
        }
        true
    }

    /// Why `node` may not accept a write now, in the words a router uses; `None`
    /// when it is the leader of a cluster with quorum.
    pub fn write_refusal(&self, node: u64) -> Option<String> {
        if !self.has_quorum() {
            return Some(format!(
                "no quorum: {} of {} members reachable; writes are refused",
                self.reachable_count(),
                self.members.len()
            ));
        }
        match self.leader {
            None => Some("not leader; leader unknown (election in progress)".to_string()),
            Some(leader) if leader != node => {
                let address =
                    self.members.get(&leader).map(|member| member.addr.to_string()).unwrap_or_default();
                Some(format!("not leader; leader is {leader} at {address}"))
            }
            Some(_) => None,
        }
    }

    /// Appends and applies one entry; reachable members replicate it. Returns its index.
    pub fn commit(&mut self) -> u64 {
        self.commit_index += 1;
        self.applied_index = self.commit_index;
        let now = SystemTime::now();
        for member in self.members.values_mut().filter(|member| member.reachable()) {
            member.match_index = self.commit_index;
            member.last_contact = now;
        }
        self.commit_index
    }

    pub fn health(&self) -> ClusterHealth {
        if !self.has_quorum() {
            ClusterHealth::Unhealthy
        } else if self.leader.is_none() || self.reachable_count() < self.members.len() {
            ClusterHealth::Degraded
        } else {
            ClusterHealth::Healthy
        }
    }

    /// What `node` answers to `GetClusterStatus`.
    pub fn status(&self, node: u64) -> GetClusterStatusResponse {
        let nodes = self
            .members
            .iter()
            .map(|(id, member)| {
                let role = match self.leader {
                    Some(leader) if leader == *id => NodeRole::Leader,
                    Some(_) => NodeRole::Follower,
                    None if member.reachable() => NodeRole::Candidate,
                    None => NodeRole::Follower,
                };
                NodeStatus {
                    node_id: *id,
                    address: member.addr.to_string(),
                    role: role.into(),
                    healthy: member.reachable(),
                    match_index: member.match_index,
                    last_contact: Some(member.last_contact.into()),
                }
            })
            .collect();
        GetClusterStatusResponse {
            node_id: node,
            leader_id: self.leader.unwrap_or(0),
            term: self.term,
            commit_index: self.commit_index,
            applied_index: self.applied_index,
            nodes,
            health: self.health().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> RaftView {
        let mut view = RaftView::default();
        for id in 1..=3 {
            view.members.insert(id, Member::new(SocketAddr::from(([127, 0, 0, 1 + id as u8], 50051))));
        }
        view
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
        let mut view = three();
        view.elect();
        view.members.get_mut(&1).unwrap().up = false;
        assert!(view.check_leader());
        assert_eq!(view.status(2).leader_id, 0);
        assert_eq!(view.health(), ClusterHealth::Degraded);
        assert_eq!(view.elect(), Some(2));
        assert_eq!(view.term, 2);
        let status = view.status(3);
        assert_eq!((status.leader_id, status.health()), (2, ClusterHealth::Degraded));
        assert!(!status.nodes[0].healthy);
    }

    #[test]
    fn losing_quorum_leaves_no_leader_and_refuses_writes() {
        let mut view = three();
        view.elect();
        view.members.get_mut(&2).unwrap().up = false;
        view.members.get_mut(&3).unwrap().partitioned = true;
        assert!(view.check_leader());
        assert!(!view.needs_election());
        assert_eq!(view.elect(), None);
        let status = view.status(1);
        assert_eq!((status.leader_id, status.health()), (0, ClusterHealth::Unhealthy));
        assert!(view.write_refusal(1).unwrap().contains("no quorum"));
    }

    #[test]
    fn followers_name_the_leader_when_refusing_a_write() {
        let mut view = three();
        view.elect();
        assert_eq!(view.write_refusal(1), None);
        assert_eq!(view.write_refusal(3).unwrap(), "not leader; leader is 1 at 127.0.0.2:50051");
    }

    #[test]
    fn commits_advance_indices_on_reachable_members_only() {
        let mut view = three();
        view.elect();
        view.members.get_mut(&3).unwrap().partitioned = true;
        assert_eq!(view.commit(), 1);
        assert_eq!(view.commit(), 2);
        let status = view.status(1);
        assert_eq!((status.commit_index, status.applied_index), (2, 2));
        let matches: Vec<_> = status.nodes.iter().map(|node| node.match_index).collect();
        assert_eq!(matches, [2, 2, 0]);
    }

    #[test]
    fn transfer_makes_a_reachable_member_leader_for_a_new_term() {
        let mut view = three();
        view.elect();
        assert!(view.transfer_leadership(3));
        assert_eq!((view.leader, view.term), (Some(3), 2));
        view.members.get_mut(&2).unwrap().up = false;
        assert!(!view.transfer_leadership(2));
    }
}
