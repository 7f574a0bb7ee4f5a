//! Membership follows the members' `--peers`, as the router contract has no
//! call to change it. The leader wants every id that itself or a live node
//! lists (so a node started with a longer list, as a StatefulSet's new pod
//! is, joins without the others restarting), and no member that no live node
//! lists any more (a deleted pod stops announcing; the members that stay do
//! not list it). One step at a time: remove who is no longer wanted, bring
//! members' addresses up to date, add a wanted live node as a learner, and
//! promote a learner to voter once it has caught up. A joint configuration
//! left by a leader that changed mid-step (openraft leaves it so) is settled
//! first. Pure: [`plan`] decides, the node carries the step out.

use std::collections::{BTreeMap, BTreeSet};

use super::directory::Announcement;
use super::types::{LogId, Member};

/// How far behind the leader's last log index a learner may be to be promoted.
const PROMOTION_LAG: u64 = 5;

/// One membership change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Leave a joint configuration for its last config, these voters.
    Settle(BTreeSet<u64>),
    RemoveVoters(BTreeSet<u64>),
    RemoveLearners(BTreeSet<u64>),
    /// A member now reached at another address (a pod re-created with a new IP).
    Update(u64, Member),
    AddLearner(u64, Member),
    Promote(u64),
}

/// What the leader knows when it plans.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub own: u64,
    pub own_peers: &'a BTreeSet<u64>,
    /// Other nodes heard from lately.
    pub live: &'a BTreeMap<u64, &'a Announcement>,
    pub membership: &'a openraft::Membership<u64, Member>,
    /// The last log id replicated to each member, as the leader's metrics say.
    pub matched: &'a BTreeMap<u64, Option<LogId>>,
    pub last_log_index: u64,
}

/// Every id the leader or a live node lists.
pub fn wanted(inputs: &Inputs<'_>) -> BTreeSet<u64> {
    let mut wanted: BTreeSet<u64> = inputs.own_peers.clone();
    wanted.insert(inputs.own);
    for announcement in inputs.live.values() {
        wanted.extend(announcement.peers.iter().copied());
    }
    wanted
}

/// The next change, if any.
pub fn plan(inputs: &Inputs<'_>) -> Option<Step> {
    let membership = inputs.membership;
    if let [_, .., last] = membership.get_joint_config().as_slice() {
        return Some(Step::Settle(last.clone()));
    }
    let wanted = wanted(inputs);
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let learners: BTreeSet<u64> = membership.learner_ids().collect();
    let unwanted_voters: BTreeSet<u64> = voters.difference(&wanted).copied().collect();
    if !unwanted_voters.is_empty() {
        return Some(Step::RemoveVoters(unwanted_voters));
    }
    let unwanted_learners: BTreeSet<u64> = learners.difference(&wanted).copied().collect();
    if !unwanted_learners.is_empty() {
        return Some(Step::RemoveLearners(unwanted_learners));
    }
    for (id, node) in membership.nodes() {
        if let Some(announcement) = inputs.live.get(id)
            && announcement.member != *node
        {
            return Some(Step::Update(*id, announcement.member.clone()));
        }
    }
    for id in &wanted {
        if membership.get_node(id).is_none()
            && let Some(announcement) = inputs.live.get(id)
        {
            return Some(Step::AddLearner(*id, announcement.member.clone()));
        }
    }
    learners
        .iter()
        .find(|id| {
            inputs.live.contains_key(id)
                && inputs
                    .matched
                    .get(id)
                    .copied()
                    .flatten()
                    .is_some_and(|matched| matched.index + PROMOTION_LAG >= inputs.last_log_index)
        })
        .map(|id| Step::Promote(*id))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::Membership;

    use super::*;

    fn member(id: u64) -> Member {
        Member { raft: format!("r{id}:2"), api: format!("a{id}:1") }
    }

    fn announcement(id: u64, peers: &[u64]) -> Announcement {
        Announcement { id, member: member(id), peers: peers.iter().copied().collect(), initialized: true }
    }

    fn membership(voters: &[u64], learners: &[u64]) -> Membership<u64, Member> {
        let nodes: BTreeMap<u64, Member> =
            voters.iter().chain(learners).map(|id| (*id, member(*id))).collect();
        Membership::new(vec![voters.iter().copied().collect()], nodes)
    }

    fn plan_for(
        own_peers: &[u64],
        live: &[Announcement],
        membership: &Membership<u64, Member>,
        matched: &[(u64, u64)],
    ) -> Option<Step> {
        let own_peers: BTreeSet<u64> = own_peers.iter().copied().collect();
        let live: BTreeMap<u64, &Announcement> = live.iter().map(|a| (a.id, a)).collect();
        let matched: BTreeMap<u64, Option<LogId>> = matched
            .iter()
            .map(|(id, index)| (*id, Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), *index))))
            .collect();
        plan(&Inputs {
            own: 1,
            own_peers: &own_peers,
            live: &live,
            membership,
            matched: &matched,
            last_log_index: 20,
        })
    }

    #[test]
    fn a_node_started_with_a_longer_list_joins_as_learner_then_voter() {
        let three = membership(&[1, 2, 3], &[]);
        let live = [announcement(2, &[1, 2, 3]), announcement(3, &[1, 2, 3]), announcement(4, &[1, 2, 3, 4])];
        assert_eq!(plan_for(&[1, 2, 3], &live, &three, &[]), Some(Step::AddLearner(4, member(4))));
        let with_learner = membership(&[1, 2, 3], &[4]);
        assert_eq!(plan_for(&[1, 2, 3], &live, &with_learner, &[(4, 3)]), None, "not caught up yet");
        assert_eq!(plan_for(&[1, 2, 3], &live, &with_learner, &[(4, 18)]), Some(Step::Promote(4)));
    }

    #[test]
    fn a_member_no_live_node_lists_is_removed_but_a_listed_dead_one_stays() {
        let five = membership(&[1, 2, 3, 4, 5], &[]);
        let live = [announcement(2, &[1, 2, 3]), announcement(4, &[1, 2, 3, 4])];
        assert_eq!(plan_for(&[1, 2, 3], &live, &five, &[]), Some(Step::RemoveVoters(BTreeSet::from([5]))));
        let three = membership(&[1, 2, 3], &[]);
        assert_eq!(plan_for(&[1, 2, 3], &[], &three, &[]), None, "2 and 3 are down, not gone");
        let learner = membership(&[1, 2, 3], &[6]);
        assert_eq!(plan_for(&[1, 2, 3], &[], &learner, &[]), Some(Step::RemoveLearners(BTreeSet::from([6]))));
    }

    #[test]
    fn addresses_follow_announcements_and_joint_configs_are_settled() {
        let three = membership(&[1, 2, 3], &[]);
        let mut moved = announcement(2, &[1, 2, 3]);
        moved.member.api = "a2-new:1".into();
        assert_eq!(plan_for(&[1, 2, 3], &[moved.clone()], &three, &[]), Some(Step::Update(2, moved.member)));
        let joint = Membership::new(
            vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([1, 2])],
            (1..=3).map(|id| (id, member(id))).collect::<BTreeMap<_, _>>(),
        );
        assert_eq!(
            plan_for(&[1, 2], &[], &joint, &[]),
            Some(Step::Settle(BTreeSet::from([1, 2]))),
            "a joint config a lost leader left is settled before anything else"
        );
    }
}
