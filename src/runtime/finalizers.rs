//! Which objects this process gave the cleanup finalizer, and the finalizer
//! added ahead of a held-back reconcile. A new pipeline waiting inside the
//! reference grace for what it names is not reconciled until that is usable
//! ([`super::triggers::held`]); it gets its finalizer while it waits, so the
//! reconcile that follows (when its cluster and services turn Ready, a
//! thousand at once when a whole manifest was applied) makes no patch of
//! its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use tokio::sync::{Notify, Semaphore};

use super::reconciler::{FINALIZER, Reconciler};
use super::{Context, Error};

/// Finalizer patches made ahead at once: enough to be done while a cluster
/// forms, few enough to leave the API server to the reconciles.
const AHEAD_CONCURRENCY: usize = 4;

/// How long a reconcile waits for a patch made ahead of it before going on
/// (and adding the finalizer itself if the patch did not land).
const AHEAD_WAIT: Duration = Duration::from_secs(10);

enum Entry {
    /// A patch ahead waits for a permit; a reconcile that comes first takes
    /// the work over (the entry goes, and the patch is not made).
    Queued,
    /// A patch is in flight; its end is notified.
    Adding(Arc<Notify>),
    /// Our patch landed; the cached copy may not show it yet.
    Added,
}

/// By uid: the objects whose finalizer this process added or is adding.
pub struct Ledger {
    entries: Mutex<HashMap<String, Entry>>,
    ahead: Semaphore,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger { entries: Mutex::default(), ahead: Semaphore::new(AHEAD_CONCURRENCY) }
    }
}

impl Ledger {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn mark_added(&self, uid: &str) {
        if let Some(Entry::Adding(done)) = self.entries().insert(uid.to_owned(), Entry::Added) {
            done.notify_waiters();
        }
    }

    fn forget(&self, uid: &str) {
        if let Some(Entry::Adding(done)) = self.entries().remove(uid) {
            done.notify_waiters();
        }
    }

    /// Whether this process added the finalizer of `uid`, after waiting (at
    /// most [`AHEAD_WAIT`]) for a patch made ahead that is in flight; one
    /// still queued is taken over (the caller adds the finalizer).
    /// With `cached_shows_it`, the cached copy holds it (or needs none): the
    /// entry has served and is dropped.
    pub async fn added(&self, uid: &str, cached_shows_it: bool) -> bool {
        if cached_shows_it {
            self.forget(uid);
            return false;
        }
        let done = {
            let mut entries = self.entries();
            match entries.get(uid) {
                None => return false,
                Some(Entry::Queued) => {
                    entries.remove(uid);
                    return false;
                }
                Some(Entry::Added) => return true,
                Some(Entry::Adding(done)) => done.clone(),
            }
        };
        let notified = done.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if matches!(self.entries().get(uid), Some(Entry::Adding(_))) {
            let _ = tokio::time::timeout(AHEAD_WAIT, notified).await;
        }
        matches!(self.entries().get(uid), Some(Entry::Added))
    }

    /// Queues a patch ahead for `uid` unless one is known; `false` if known.
    fn queue(&self, uid: &str) -> bool {
        let mut entries = self.entries();
        if entries.contains_key(uid) {
            return false;
        }
        entries.insert(uid.to_owned(), Entry::Queued);
        true
    }

    /// Marks the queued patch of `uid` in flight; `false` when a reconcile
    /// took the work over meanwhile.
    fn begin(&self, uid: &str) -> bool {
        let mut entries = self.entries();
        match entries.get_mut(uid) {
            Some(entry @ Entry::Queued) => {
                *entry = Entry::Adding(Arc::new(Notify::new()));
                true
            }
            _ => false,
        }
    }
}

/// Adds the cleanup finalizer to `object` ahead of its first reconcile, if
/// it needs one and holds none. A failure is only logged: the reconcile adds
/// it as usual, and reports what keeps it from doing so.
pub async fn add_ahead<K: Reconciler>(ctx: &Context, object: &K) {
    let meta = object.meta();
    let uid = object.uid().unwrap_or_default();
    let has = object.finalizers().iter().any(|f| f == FINALIZER);
    if has || meta.deletion_timestamp.is_some() || !object.needs_cleanup() || !ctx.finalizers.queue(&uid) {
        return;
    }
    let _permit = ctx.finalizers.ahead.acquire().await;
    if !ctx.finalizers.begin(&uid) {
        return;
    }
    match add(ctx, object).await {
        Ok(()) => ctx.finalizers.mark_added(&uid),
        Err(error) => {
            tracing::debug!(name = %object.name_any(), %error, "finalizer not added ahead; the reconcile adds it");
            ctx.finalizers.forget(&uid);
        }
    }
}

/// The patch kube's finalizer helper makes: the list as seen tested, then
/// [`FINALIZER`] appended.
async fn add<K: Reconciler>(ctx: &Context, object: &K) -> Result<(), Error> {
    let namespace = object.namespace().ok_or_else(|| Error::InvalidObject("no metadata.namespace".into()))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let current = object.finalizers();
    let patch = if current.is_empty() {
        serde_json::json!([
            { "op": "test", "path": "/metadata/finalizers", "value": null },
            { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] },
        ])
    } else {
        serde_json::json!([
            { "op": "test", "path": "/metadata/finalizers", "value": current },
            { "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER },
        ])
    };
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|e| Error::InvalidObject(e.to_string()))?;
    api.patch::<K>(&object.name_any(), &PatchParams::default(), &Patch::Json(patch)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reconcile_waits_for_the_patch_in_flight_and_sees_how_it_ended() {
        let ledger = Arc::new(Ledger::default());
        assert!(!ledger.added("a", false).await, "unknown: not added");
        assert!(ledger.queue("a"));
        assert!(!ledger.queue("a"), "one patch ahead per object");
        assert!(ledger.begin("a"));
        let waiter = tokio::spawn({
            let ledger = ledger.clone();
            async move { ledger.added("a", false).await }
        });
        tokio::task::yield_now().await;
        ledger.mark_added("a");
        assert!(waiter.await.unwrap(), "the waiter sees the patch landed");
        assert!(ledger.added("a", false).await);
        assert!(!ledger.added("a", true).await, "a copy that shows it drops the entry");
        assert!(!ledger.added("a", false).await);

        assert!(ledger.queue("b") && ledger.begin("b"));
        let waiter = tokio::spawn({
            let ledger = ledger.clone();
            async move { ledger.added("b", false).await }
        });
        tokio::task::yield_now().await;
        ledger.forget("b");
        assert!(!waiter.await.unwrap(), "a failed patch ahead: the reconcile adds it itself");

        assert!(ledger.queue("c"));
        assert!(!ledger.added("c", false).await, "a reconcile before the patch's turn adds it itself");
        assert!(!ledger.begin("c"), "and the patch ahead is not made");
    }
}
