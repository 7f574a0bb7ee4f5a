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

use crate::router::RouterError;

/// What a read gave: the value, or the error every reader of it sees.
pub type Read<T> = Result<Arc<T>, Arc<RouterError>>;

/// Beyond this many keys, snapshots older than the time to live being asked
/// for are dropped (keys of objects long gone).
const PRUNE_ABOVE: usize = 1024;

/// How many time-to-lives a good read stands in for failing ones.
pub const STALE_GRACE: u32 = 3;

struct Taken<T> {
    at: Instant,
    /// The members it was read from: another member set is another cluster state.
    members: Vec<String>,
    read: Read<T>,
    /// The last successful read and when it was made.
    good: Option<(Instant, Arc<T>)>,
}

type Slot<T> = Arc<tokio::sync::Mutex<Option<Taken<T>>>>;

pub struct Snapshots<T> {
    slots: Mutex<HashMap<String, Slot<T>>>,
}

impl<T> Default for Snapshots<T> {
    fn default() -> Self {
        Snapshots { slots: Mutex::default() }
    }
}

impl<T> Snapshots<T> {
    /// The snapshot of `key` read from `members` less than `ttl` ago, else a fresh one from `read`.
    pub async fn get<F, Fut>(&self, key: &str, members: &[String], ttl: Duration, read: F) -> Read<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, RouterError>>,
    {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if slots.len() > PRUNE_ABOVE {
                // A slot in use is kept; so is one read within `ttl`.
                slots.retain(|_, slot| {
                    slot.try_lock().map_or(true, |taken| taken.as_ref().is_some_and(|t| t.at.elapsed() < ttl))
                });
            }
            slots.entry(key.to_owned()).or_default().clone()
        };
        let mut taken = slot.lock().await;
        if let Some(taken) = taken.as_ref().filter(|t| t.members == members && t.at.elapsed() < ttl) {
            return taken.read.clone();
        }
        let last_good = taken.as_ref().filter(|t| t.members == members).and_then(|t| t.good.clone());
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
        *taken = Some(Taken { at: now, members: members.to_vec(), read: fresh.clone(), good });
        fresh
    }

    /// Records `value`, just read from `members`, as `key`'s snapshot.
    pub fn put(&self, key: &str, members: &[String], value: T) {
        let value = Arc::new(value);
        let now = Instant::now();
        let taken =
            Taken { at: now, members: members.to_vec(), read: Ok(value.clone()), good: Some((now, value)) };
        let slot = Arc::new(tokio::sync::Mutex::new(Some(taken)));
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(key.to_owned(), slot);
    }

    /// Forgets `key`'s snapshot, after a write that changed what it holds.
    pub fn invalidate(&self, key: &str) {
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(key);
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
