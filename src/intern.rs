//! One copy of each text, partition list and member list that many cached
//! objects repeat: ten thousand pipelines name the same few services,
//! endpoints, stage ids and router members, and as separate allocations
//! those copies were about a tenth of the operator's memory at that scale
//! (docs/heap-profile.md).
//!
//! A value no object holds any more is dropped when the set has doubled
//! since it was last pruned, so churn (endpoints that move) does not grow it
//! for ever.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, LazyLock, Mutex};

/// Below this many values the set is not pruned.
const PRUNE_ABOVE: usize = 256;

static TEXTS: LazyLock<Mutex<Interned<str>>> = LazyLock::new(Default::default);
static PARTITIONS: LazyLock<Mutex<Interned<[u32]>>> = LazyLock::new(Default::default);
static MEMBERS: LazyLock<Mutex<Interned<[String]>>> = LazyLock::new(Default::default);

/// The shared copy of `text`.
pub fn text(text: &str) -> Arc<str> {
    lock(&TEXTS).get(text)
}

/// The shared copy of `partitions`.
pub fn partitions(partitions: &[u32]) -> Arc<[u32]> {
    lock(&PARTITIONS).get(partitions)
}

/// The shared copy of a router cluster's `members` (each router read of a
/// pipeline remembers the members it was read from).
pub fn members(members: &[String]) -> Arc<[String]> {
    lock(&MEMBERS).get(members)
}

fn lock<T: ?Sized>(set: &Mutex<Interned<T>>) -> std::sync::MutexGuard<'_, Interned<T>> {
    set.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Interned<T: ?Sized> {
    values: HashSet<Arc<T>>,
    prune_above: usize,
}

impl<T: ?Sized> Default for Interned<T> {
    fn default() -> Self {
        Interned { values: HashSet::new(), prune_above: PRUNE_ABOVE }
    }
}

impl<T: ?Sized + Eq + Hash> Interned<T>
where
    for<'a> Arc<T>: From<&'a T>,
{
    fn get(&mut self, value: &T) -> Arc<T> {
        if let Some(shared) = self.values.get(value) {
            return shared.clone();
        }
        if self.values.len() >= self.prune_above {
            // Held by the set alone: no object names it any more.
            self.values.retain(|shared| Arc::strong_count(shared) > 1);
            self.prune_above = PRUNE_ABOVE.max(2 * self.values.len());
        }
        let shared = Arc::from(value);
        self.values.insert(shared.clone());
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_copy() {
        let a = text("intern-test-endpoint:50051");
        let b = text(&String::from("intern-test-endpoint:50051"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &text("intern-test-other:50051")));
        assert!(Arc::ptr_eq(&partitions(&[7, 8, 9]), &partitions(&[7, 8, 9])));
        let routers = ["intern-test-0:50051".to_owned(), "intern-test-1:50051".to_owned()];
        assert!(Arc::ptr_eq(&members(&routers), &members(&routers.clone())));
    }

    #[test]
    fn values_nobody_holds_are_dropped_as_the_set_grows() {
        let mut set = Interned::<str>::default();
        let kept = set.get("kept");
        for i in 0..10 * PRUNE_ABOVE {
            set.get(&format!("churned-{i}"));
        }
        assert!(set.values.len() <= 2 * PRUNE_ABOVE, "{} values held", set.values.len());
        assert!(Arc::ptr_eq(&kept, &set.get("kept")), "a value still held stays shared");
    }
}
