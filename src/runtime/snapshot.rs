//! One router read shared by every object that needs it: a snapshot per key
//! (e.g. one router cluster's registered services) kept for a time to live.
//! Concurrent readers of a stale key wait for the one read in flight instead
//! of each calling the router. A read that fails while the last good one is
//! younger than [`STALE_GRACE`] time-to-lives serves that one instead, so one
//! slow answer does not flip every object of a cluster to Degraded and back;
//! a router that stays silent longer is reported.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::intern;
use crate::router::RouterError;

/// What a read gave: the value, or the error every reader of it sees.
pub type Read<T> = Result<Arc<T>, Arc<RouterError>>;

/// Beyond this many keys, and each time the count has doubled since the last
/// prune, snapshots older than the time to live being asked for are dropped
/// (keys of objects long gone). Doubling keeps the scans linear overall with
/// ten thousand live keys, where pruning on every read above a fixed count
/// would scan them all on every read.
const PRUNE_ABOVE: usize = 1024;

/// How many time-to-lives a good read stands in for failing ones.
pub const STALE_GRACE: u32 = 3;

struct Taken<T> {
    at: Instant,
    /// The members it was read from: another member set is another cluster
    /// state. One copy shared by every snapshot of the same members.
    members: Arc<[String]>,
    read: Read<T>,
    /// The last successful read and when it was made.
    good: Option<(Instant, Arc<T>)>,
}

impl<T> Taken<T> {
    /// When the value it serves was read: a good read stood in for a failed
    /// one is as old as that good read.
    fn value_at(&self) -> Instant {
        match (&self.read, &self.good) {
            (Ok(_), Some((at, _))) => *at,
            _ => self.at,
        }
    }
}

type Slot<T> = Arc<tokio::sync::Mutex<Option<Taken<T>>>>;

pub struct Snapshots<T> {
    slots: Mutex<Slots<T>>,
}

struct Slots<T> {
    by_key: HashMap<String, Slot<T>>,
    /// The count above which the next read prunes.
    prune_above: usize,
}

impl<T> Default for Snapshots<T> {
    fn default() -> Self {
        Snapshots { slots: Mutex::new(Slots { by_key: HashMap::new(), prune_above: PRUNE_ABOVE }) }
    }
}

impl<T> Snapshots<T> {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots<T>> {
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.slots().by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Snapshots<T> {
    /// The snapshot of `key` read from `members` less than `ttl` ago, else a fresh one from `read`.
    pub async fn get<F, Fut>(&self, key: &str, members: &[String], ttl: Duration, read: F) -> Read<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, RouterError>>,
    {
        self.get_timed(key, members, ttl, read).await.0
    }

    /// The last good value of `key` read from `members` and when it was
    /// read, without reading (`None` while a read of it is in flight).
    pub fn latest(&self, key: &str, members: &[String]) -> Option<(Instant, Arc<T>)> {
        let slot = self.slots().by_key.get(key)?.clone();
        let taken = slot.try_lock().ok()?;
        taken.as_ref().filter(|t| *t.members == *members).and_then(|t| t.good.clone())
    }

    /// As [`Snapshots::get`], with when the value given was read.
    pub async fn get_timed<F, Fut>(
        &self,
        key: &str,
        members: &[String],
        ttl: Duration,
        read: F,
    ) -> (Read<T>, Instant)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, RouterError>>,
    {
        let slot = {
            let mut slots = self.slots();
            if slots.by_key.len() > slots.prune_above {
                // A slot in use is kept; so is one read within `ttl`.
                slots.by_key.retain(|_, slot| {
                    slot.try_lock().map_or(true, |taken| taken.as_ref().is_some_and(|t| t.at.elapsed() < ttl))
                });
                slots.prune_above = PRUNE_ABOVE.max(2 * slots.by_key.len());
            }
            slots.by_key.entry(key.to_owned()).or_default().clone()
        };
        let mut taken = slot.lock().await;
        if let Some(taken) = taken.as_ref().filter(|t| *t.members == *members && t.at.elapsed() < ttl) {
            return (taken.read.clone(), taken.value_at());
        }
        let last_good = taken.as_ref().filter(|t| *t.members == *members).and_then(|t| t.good.clone());
        let now = Instant::now();
        let (fresh, good) = match read().await {
            Ok(value) => {
                let value = Arc::new(value);
                (Ok(value.clone()), Some((now, value)))
            }
            Err(error) => match last_good {
                Some((at, value)) if at.elapsed() < ttl * STALE_GRACE => {
                    (Ok(value.clone()), Some((at, value)))
                }
                _ => (Err(Arc::new(error)), None),
            },
        };
        let fresh = Taken { at: now, members: intern::members(members), read: fresh, good };
        let answer = (fresh.read.clone(), fresh.value_at());
        *taken = Some(fresh);
        answer
    }

    /// Records `value`, just read from `members`, as `key`'s snapshot.
    pub fn put(&self, key: &str, members: &[String], value: T) {
        let value = Arc::new(value);
        let now = Instant::now();
        let taken = Taken {
            at: now,
            members: intern::members(members),
            read: Ok(value.clone()),
            good: Some((now, value)),
        };
        let slot = Arc::new(tokio::sync::Mutex::new(Some(taken)));
        self.slots().by_key.insert(key.to_owned(), slot);
    }

    /// Forgets `key`'s snapshot, after a write that changed what it holds.
    pub fn invalidate(&self, key: &str) {
        self.slots().by_key.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn concurrent_readers_share_one_read_until_it_expires_or_is_invalidated() {
        let snapshots: Snapshots<u32> = Snapshots::default();
        let reads = AtomicU32::new(0);
        let members = vec!["10.0.0.1:50051".to_owned()];
        let ttl = Duration::from_secs(60);
        let read = || async {
            tokio::task::yield_now().await;
            Ok(reads.fetch_add(1, Ordering::SeqCst))
        };
        let all = futures::future::join_all((0..10).map(|_| snapshots.get("c", &members, ttl, read))).await;
        assert!(all.iter().all(|r| **r.as_ref().unwrap() == 0), "{all:?}");
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        snapshots.invalidate("c");
        assert_eq!(*snapshots.get("c", &members, ttl, read).await.unwrap(), 1);
        let moved = vec!["10.0.0.2:50051".to_owned()];
        assert_eq!(*snapshots.get("c", &moved, ttl, read).await.unwrap(), 2, "new members, new read");
        assert_eq!(*snapshots.get("c", &moved, Duration::ZERO, read).await.unwrap(), 3, "expired");
        snapshots.put("c", &moved, 7);
        assert_eq!(*snapshots.get("c", &moved, ttl, read).await.unwrap(), 7, "a value put is read back");
        assert_eq!(reads.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn old_keys_are_pruned_once_the_count_doubles_and_live_ones_kept() {
        let snapshots: Snapshots<u32> = Snapshots::default();
        let members = vec!["10.0.0.1:50051".to_owned()];
        let long = Duration::from_secs(60);
        for key in 0..=PRUNE_ABOVE {
            snapshots.get(&key.to_string(), &members, long, || async { Ok(0) }).await.unwrap();
        }
        assert_eq!(snapshots.len(), PRUNE_ABOVE + 1, "nothing pruned at the threshold");
        // Over it: a read with a short time to live drops every older key.
        snapshots.get("new", &members, Duration::ZERO, || async { Ok(1) }).await.unwrap();
        assert_eq!(snapshots.len(), 1);
        // Live keys past the threshold raise it: the next reads do not scan again.
        for key in 0..=2 * PRUNE_ABOVE {
            snapshots.get(&key.to_string(), &members, long, || async { Ok(0) }).await.unwrap();
        }
        assert_eq!(snapshots.len(), 2 * PRUNE_ABOVE + 2);
        snapshots.get("more", &members, Duration::ZERO, || async { Ok(1) }).await.unwrap();
        assert_eq!(snapshots.len(), 2 * PRUNE_ABOVE + 3, "below the raised threshold, no prune");
    }

    #[tokio::test]
    async fn latest_is_the_last_good_value_with_its_time_and_a_stand_in_keeps_its_age() {
        let snapshots: Snapshots<u32> = Snapshots::default();
        let members = vec!["10.0.0.1:50051".to_owned()];
        assert!(snapshots.latest("c", &members).is_none());
        let ttl = Duration::from_millis(50);
        let before = Instant::now();
        let (read, at) = snapshots.get_timed("c", &members, ttl, || async { Ok(5) }).await;
        assert_eq!(*read.unwrap(), 5);
        assert!(at >= before);
        let (latest_at, value) = snapshots.latest("c", &members).unwrap();
        assert_eq!((*value, latest_at), (5, at));
        assert!(snapshots.latest("c", &["other:1".to_owned()]).is_none(), "other members, other state");
        // A failure within the grace serves the old value, as old as it is.
        let fail = || async { Err(RouterError::NoMembers) };
        tokio::time::sleep(ttl).await; // let the snapshot expire
        let (read, stood_in_at) = snapshots.get_timed("c", &members, ttl, fail).await;
        assert_eq!(*read.unwrap(), 5);
        assert_eq!(stood_in_at, at);
        snapshots.put("c", &members, 6);
        let (put_at, value) = snapshots.latest("c", &members).unwrap();
        assert!(*value == 6 && put_at > at);
    }

    #[tokio::test]
    async fn a_failing_read_is_served_the_last_good_one_for_a_grace_then_reported() {
        let snapshots: Snapshots<u32> = Snapshots::default();
        let members = vec!["10.0.0.1:50051".to_owned()];
        let ttl = Duration::from_millis(20);
        let fail = || async { Err(RouterError::NoMembers) };
        assert_eq!(*snapshots.get("c", &members, ttl, || async { Ok(5) }).await.unwrap(), 5);
        tokio::time::sleep(ttl).await; // let the snapshot expire
        assert_eq!(*snapshots.get("c", &members, ttl, fail).await.unwrap(), 5, "within the grace");
        tokio::time::sleep(ttl * STALE_GRACE).await; // outlive the grace
        assert!(snapshots.get("c", &members, ttl, fail).await.is_err(), "past the grace the failure shows");
        snapshots.invalidate("c");
        assert!(snapshots.get("c", &members, ttl, fail).await.is_err(), "nothing good to stand in");
    }
}
