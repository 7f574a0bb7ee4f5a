//! One member of a simulated cluster as the Raft view sees it: whether it serves,
//! whether it votes, and whether it is in contact with its peers. A member cut
//! off from its peers keeps the belief it held when it lost contact, so it can
//! disagree with the majority the way a real Raft member does.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// How a partitioned member is cut off. Every mode takes it out of quorum and
/// freezes its belief (term, leader, commit index) until it is healed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partition {
    /// Client calls hang until their deadline (or until the member is healed).
    Hang,
    /// Client calls fail at once with UNAVAILABLE.
    Refuse,
    /// Only the other members are cut off: clients are still served, from the
    /// member's frozen belief (an isolated old leader still claims to lead).
    PeersOnly,
}

/// What a member believes about leadership and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Belief {
    pub term: u64,
    /// `None`: no leader known.
    pub leader: Option<u64>,
    pub commit_index: u64,
    pub applied_index: u64,
}

/// A partitioned member: how it is cut off, and what it believed at that moment
/// (it hears of no later term, leader or commit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Isolation {
    pub mode: Partition,
    pub belief: Belief,
}

/// One member of the simulated cluster.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub addr: SocketAddr,
    /// Serving (not stopped).
    pub up: bool,
    /// Votes, counts towards quorum and may lead; a learner only replicates.
    pub voter: bool,
    /// Set while partitioned; out of quorum.
    pub isolation: Option<Isolation>,
    /// Extra delay before every call is served.
    pub slow: Option<Duration>,
    /// Extra delay before the next `GetClusterStatus` only.
    pub late_health_poll: Option<Duration>,
    /// Last log index replicated to this member.
    pub match_index: u64,
    /// When the leader last heard from this member.
    pub last_contact: SystemTime,
}

impl Member {
    /// A voting member.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            up: true,
            voter: true,
            isolation: None,
            slow: None,
            late_health_poll: None,
            match_index: 0,
            last_contact: SystemTime::now(),
        }
    }

    /// A non-voting member.
    pub fn learner(addr: SocketAddr) -> Self {
        Self { voter: false, ..Self::new(addr) }
    }

    /// Up and in contact with its peers.
    pub fn reachable(&self) -> bool {
        self.up && self.isolation.is_none()
    }
}
