//! The statuses this process wrote whose watch events may not have reached
//! the caches yet. A reconcile that starts on a cached copy older than the
//! operator's own last status write (a second trigger right after the
//! first reconcile wrote) would take the old status for the current one:
//! it would write again, and a status built on the old one can drop what
//! the first write recorded. The operator is the only writer of these
//! statuses, so until the cache shows the status it wrote, a reconcile
//! reads that status in place of the cached one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long a written status stands in for the cached one at most. Watch
/// events arrive within moments; should one never come (a broken watch),
/// the cache is believed again after this, and a status someone else
/// wrote is not overridden for longer.
const STANDS_IN_FOR: Duration = Duration::from_secs(10);

struct Written {
    /// The object's `resourceVersion` after the write.
    version: Option<String>,
    /// The status as written, compact JSON (a fraction of a `Value`'s memory).
    status: String,
    at: Instant,
}

/// How often expired entries are looked for: a scan of every entry on
/// every write and reconcile would cost O(entries) each time.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Ledger {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_uid: HashMap<String, Written>,
    pruned_at: Option<Instant>,
}

impl Entries {
    /// Drops what a watch event never confirmed within [`STANDS_IN_FOR`],
    /// at most once per [`PRUNE_EVERY`].
    fn prune(&mut self) {
        if self.pruned_at.is_some_and(|at| at.elapsed() < PRUNE_EVERY) {
            return;
        }
        self.by_uid.retain(|_, written| written.at.elapsed() < STANDS_IN_FOR);
        self.pruned_at = Some(Instant::now());
    }
}

impl Ledger {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a status written to `uid`, the object then at `version`.
    pub fn record(&self, uid: &str, version: Option<String>, status: &serde_json::Value) {
        let mut entries = self.entries();
        entries.prune();
        let status = status.to_string();
        entries.by_uid.insert(uid.to_owned(), Written { version, status, at: Instant::now() });
    }

    /// `object`, with the status this process last wrote in place of its
    /// own when the cached copy does not show that write yet.
    pub fn fresher<K>(&self, object: Arc<K>) -> Arc<K>
    where
        K: Resource + Serialize + DeserializeOwned,
    {
        let Some(uid) = object.uid() else { return object };
        let mut entries = self.entries();
        if entries.by_uid.is_empty() {
            return object;
        }
        // A cluster is reconciled at least once per health interval: what a
        // watch event never confirmed goes with it, idle or not.
        entries.prune();
        let by_uid = &mut entries.by_uid;
        let Some(written) = by_uid.get(&uid).filter(|written| written.at.elapsed() < STANDS_IN_FOR) else {
            return object;
        };
        if object.resource_version() == written.version {
            by_uid.remove(&uid);
            return object;
        }
        let Ok(mut value) = serde_json::to_value(&*object) else { return object };
        let cached = value.get("status").map(serde_json::Value::to_string);
        if cached.as_deref() == Some(written.status.as_str()) {
            // The write has arrived (and something else changed since).
            by_uid.remove(&uid);
            return object;
        }
        let Ok(status) = serde_json::from_str(&written.status) else { return object };
        value["status"] = status;
        match serde_json::from_value(value) {
            Ok(fresher) => {
                tracing::debug!("the cached copy predates this process's status write; reading that status");
                Arc::new(fresher)
            }
            Err(_) => object,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().by_uid.len()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Pod, PodStatus};

    use super::*;

    fn pod(version: &str, phase: Option<&str>) -> Arc<Pod> {
        let mut pod = Pod::default();
        pod.metadata.uid = Some("uid-1".into());
        pod.metadata.resource_version = Some(version.into());
        pod.status = phase.map(|phase| PodStatus { phase: Some(phase.into()), ..Default::default() });
        Arc::new(pod)
    }

    fn phase(pod: &Pod) -> Option<&str> {
        pod.status.as_ref()?.phase.as_deref()
    }

    #[test]
    fn a_copy_older_than_the_write_reads_the_written_status_until_the_write_arrives() {
        let ledger = Ledger::default();
        let unwritten = pod("1", None);
        assert!(Arc::ptr_eq(&ledger.fresher(unwritten.clone()), &unwritten), "nothing written: as cached");

        ledger.record("uid-1", Some("2".into()), &serde_json::json!({"phase": "Running"}));
        // The stale copy (version 1, no status) reads the written status.
        assert_eq!(phase(&ledger.fresher(pod("1", None))), Some("Running"));
        assert_eq!(ledger.len(), 1, "kept until the write arrives");
        // The write's own event: as cached, and forgotten.
        let arrived = pod("2", Some("Running"));
        assert!(Arc::ptr_eq(&ledger.fresher(arrived.clone()), &arrived));
        assert_eq!(ledger.len(), 0);
    }

    #[test]
    fn a_newer_copy_showing_the_written_status_is_taken_as_cached() {
        let ledger = Ledger::default();
        ledger.record("uid-1", Some("2".into()), &serde_json::json!({"phase": "Running"}));
        // A label edit after the write: another version, the same status.
        let edited = pod("3", Some("Running"));
        assert!(Arc::ptr_eq(&ledger.fresher(edited.clone()), &edited));
        assert_eq!(ledger.len(), 0);
    }
}
