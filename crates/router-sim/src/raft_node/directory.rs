//! What a node has heard from its peers: every node tells each of its peers
//! and every member, a few times a second, who it is, where clients reach
//! it, its `--peers` and whether it holds any Raft state. A node heard from
//! within [`LIVE_WINDOW`] is live. Pure: the caller passes the time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::types::Member;

/// How often a node announces itself.
pub const ANNOUNCE_EVERY: Duration = Duration::from_millis(250);
/// How long an announcement keeps its sender live.
pub const LIVE_WINDOW: Duration = Duration::from_millis(1500);

/// What a node says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub id: u64,
    pub member: Member,
    /// The ids of its `--peers` (itself included).
    pub peers: BTreeSet<u64>,
    /// Whether it holds Raft state (a vote or a log), so belongs to a cluster already.
    pub initialized: bool,
}

/// The latest announcement of each peer, and when it came.
#[derive(Debug, Default)]
pub struct Directory {
    heard: BTreeMap<u64, (Announcement, Instant)>,
}

impl Directory {
    pub fn heard(&mut self, announcement: Announcement, at: Instant) {
        self.heard.insert(announcement.id, (announcement, at));
    }

    /// Peers heard from within [`LIVE_WINDOW`] of `now`.
    pub fn live(&self, now: Instant) -> BTreeMap<u64, &Announcement> {
        self.heard
            .iter()
            .filter(|(_, (_, at))| now.saturating_duration_since(*at) <= LIVE_WINDOW)
            .map(|(id, (announcement, _))| (*id, announcement))
            .collect()
    }

    /// When `id` was last heard from.
    pub fn last_heard(&self, id: u64) -> Option<Instant> {
        self.heard.get(&id).map(|(_, at)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_live_only_while_they_keep_announcing() {
        let start = Instant::now();
        let mut directory = Directory::default();
        let announcement = |id| Announcement {
            id,
            member: Member::default(),
            peers: BTreeSet::from([1, 2]),
            initialized: false,
        };
        directory.heard(announcement(2), start);
        directory.heard(announcement(3), start + Duration::from_secs(1));
        let live = directory.live(start + Duration::from_secs(2));
        assert_eq!(live.keys().copied().collect::<Vec<_>>(), [3]);
        assert_eq!(directory.live(start).len(), 2);
        assert_eq!(directory.last_heard(2), Some(start));
    }
}
