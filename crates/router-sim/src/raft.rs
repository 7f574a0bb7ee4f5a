//! The simulated Raft view of a [`SimCluster`](super::SimCluster): membership,
//! who is up and in contact, the cluster's leader, term and log indices, and
//! what each member believes ([`RaftView::status`] answers as that member).
//!
//! Rules: a member is *reachable* when it is up and not partitioned; the cluster
//! has *quorum* when more than half of the voters are reachable (learners never
//! count); the leader must be reachable and the cluster must have quorum,
//! otherwise it steps down (the leader becomes unknown, `leader_id` 0, same
//! term); an election picks the reachable voter with the lowest id and starts a
//! new term. Exactly one leader per term. Members in contact with their peers
//! believe the cluster's (term, leader, commit index); a partitioned member keeps
//! what it believed when it was cut off, refuses every write for want of quorum,
//! and catches up when healed.

use std::collections::BTreeMap;
use std::time::SystemTime;

use conveyor_router_contract::proto::router::{
    ClusterHealth, GetClusterStatusResponse, NodeRole, NodeStatus,
};

use super::member::{Belief, Isolation, Member, Partition};

/// Membership, leadership and log indices (see the module docs for the rules).
/// `leader`, `term` and the indices are the cluster's: what the majority believes.
#[derive(Clone, Debug, Default)]
pub(crate) struct RaftView {
    pub members: BTreeMap<u64, Member>,
    pub leader: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
}

impl RaftView {
    fn reachable_voter(&self, id: u64) -> bool {
        self.members.get(&id).is_some_and(|member| member.voter && member.reachable())
    }

    fn voters(&self) -> usize {
        self.members.values().filter(|member| member.voter).count()
    }

    fn reachable_voters(&self) -> usize {
        self.members.values().filter(|member| member.voter && member.reachable()).count()
    }

    pub fn has_quorum(&self) -> bool {
        let voters = self.voters();
        voters > 0 && self.reachable_voters() * 2 > voters
    }

    /// Steps the leader down if it is unreachable or the cluster lost quorum.
    /// Returns whether the leader changed.
    pub fn check_leader(&mut self) -> bool {
        match self.leader {
            Some(leader) if !self.reachable_voter(leader) || !self.has_quorum() => {
                self.leader = None;
                true
            }
            _ => false,
        }
    }

    pub fn needs_election(&self) -> bool {
        self.leader.is_none() && self.has_quorum()
    }

    /// Elects the reachable voter with the lowest id for a new term, if an
    /// election is needed. Returns the new leader.
    pub fn elect(&mut self) -> Option<u64> {
        if !self.needs_election() {
            return None;
        }
        let leader =
            self.members.iter().find(|(_, member)| member.voter && member.reachable()).map(|(id, _)| *id)?;
        self.term += 1;
        self.leader = Some(leader);
        Some(leader)
    }

    /// Makes `id` leader for a new term (a leadership transfer). False when `id`
    /// is not a reachable voter or there is no quorum.
    pub fn transfer_leadership(&mut self, id: u64) -> bool {
        if !self.reachable_voter(id) || !self.has_quorum() {
            return false;
        }
        if self.leader != Some(id) {
            self.term += 1;
            self.leader = Some(id);
        }
        true
    }

    /// Cuts `id` off from its peers in `mode`. It keeps the belief it holds now
    /// (or, if already partitioned, the one it was cut off with).
    pub fn partition(&mut self, id: u64, mode: Partition) {
        let current = self.current();
        if let Some(member) = self.members.get_mut(&id) {
            let belief = member.isolation.map_or(current, |isolation| isolation.belief);
            member.isolation = Some(Isolation { mode, belief });
        }
    }

    /// Ends `id`'s partition: it believes the cluster's term, leader and commit
    /// index again, and (if up) is replicated up to the commit index at once.
    pub fn heal(&mut self, id: u64) {
        let commit_index = self.commit_index;
        if let Some(member) = self.members.get_mut(&id)
            && member.isolation.take().is_some()
            && member.up
        {
            member.match_index = commit_index;
            member.last_contact = SystemTime::now();
        }
    }

    /// Makes learner `id` a voter. False when `id` is not a learner.
    pub fn promote(&mut self, id: u64) -> bool {
        match self.members.get_mut(&id) {
            Some(member) if !member.voter => {
                member.voter = true;
                true
            }
            _ => false,
        }
    }

    /// What the members in contact with the majority believe.
    fn current(&self) -> Belief {
        Belief {
            term: self.term,
            leader: self.leader,
            commit_index: self.commit_index,
            applied_index: self.applied_index,
        }
    }

    /// What `id` believes: what it was cut off with while partitioned, else the
    /// cluster's belief.
    pub fn belief_of(&self, id: u64) -> Belief {
        self.members
            .get(&id)
            .and_then(|member| member.isolation)
            .map_or_else(|| self.current(), |isolation| isolation.belief)
    }

    /// Why `node` may not accept a write now, in the words a router uses; `None`
    /// when it is the leader of a cluster with quorum. A partitioned member
    /// refuses for want of quorum, whatever it believes.
    pub fn write_refusal(&self, node: u64) -> Option<String> {
        if self.members.get(&node).is_some_and(|member| member.isolation.is_some()) {
            return Some("no quorum: cut off from the other members; writes are refused".to_string());
        }
        if !self.has_quorum() {
            return Some(format!(
                "no quorum: {} of {} voting members reachable; writes are refused",
                self.reachable_voters(),
                self.voters()
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

    /// The cluster's health as the members in contact with the majority see it.
    pub fn health(&self) -> ClusterHealth {
        if !self.has_quorum() {
            ClusterHealth::Unhealthy
        } else if self.leader.is_none() || self.members.values().any(|member| !member.reachable()) {
            ClusterHealth::Degraded
        } else {
            ClusterHealth::Healthy
        }
    }

    /// What `node` answers to `GetClusterStatus`: its own belief. A partitioned
    /// member sees only itself healthy, no quorum, and no entry past its own
    /// commit index.
    pub fn status(&self, node: u64) -> GetClusterStatusResponse {
        let cut_off = self.members.get(&node).is_some_and(|member| member.isolation.is_some());
        let belief = self.belief_of(node);
        let nodes = self
            .members
            .iter()
            .map(|(id, member)| {
                let healthy = if cut_off { *id == node } else { member.reachable() };
                NodeStatus {
                    node_id: *id,
                    address: member.addr.to_string(),
                    role: role(*id, member.voter, belief.leader, healthy).into(),
                    healthy,
                    match_index: member.match_index.min(belief.commit_index),
                    last_contact: Some(member.last_contact.into()),
                }
            })
            .collect();
        GetClusterStatusResponse {
            node_id: node,
            leader_id: belief.leader.unwrap_or(0),
            term: belief.term,
            commit_index: belief.commit_index,
            applied_index: belief.applied_index,
            nodes,
            health: if cut_off { ClusterHealth::Unhealthy } else { self.health() }.into(),
        }
    }
}

/// The role of member `id` under `leader`; without a leader, the voters that
/// look healthy are campaigning.
fn role(id: u64, voter: bool, leader: Option<u64>, healthy: bool) -> NodeRole {
    match leader {
        _ if !voter => NodeRole::Learner,
        Some(leader) if leader == id => NodeRole::Leader,
        Some(_) => NodeRole::Follower,
        None if healthy => NodeRole::Candidate,
        None => NodeRole::Follower,
    }
}

#[cfg(test)]
mod tests;
