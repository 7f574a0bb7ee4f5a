use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::event_series::Publisher;
use kube::Client;
use kube::runtime::reflector::ObjectRef;

use super::cache::Cache;
use super::metrics::Metrics;
use super::retry::Retries;
use super::router_pipelines::PipelineIndex;
use super::snapshot::Snapshots;
use crate::router::mapping::PipelineRead;
use crate::router::{RegisteredService, Router};

/// How often and how fast the controllers look again.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Health poll interval of a settled resource.
    pub health_interval: Duration,
    /// Poll interval while a resource forms, scales or rolls.
    pub progress_interval: Duration,
    /// How often a pipeline's stage figures are read from the router: the one
    /// per-pipeline router read, kept rare so status does not move with them.
    pub stats_interval: Duration,
    /// First retry delay after an error; doubles up to `max_retry_delay`, with jitter.
    pub min_retry_delay: Duration,
    pub max_retry_delay: Duration,
    /// Reconciles of one kind running at once. Bounded so a thousand objects
    /// changing together queue instead of starving each other's router calls
    /// past their deadline (and holding a thousand reconciles in memory).
    pub max_concurrent_reconciles: u16,
    /// How long a reconcile waits for the watch caches' first lists before
    /// it fails (and is retried with backoff) instead of waiting on.
    pub cache_sync_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            health_interval: Duration::from_secs(10),
            progress_interval: Duration::from_secs(2),
            stats_interval: Duration::from_secs(300),
            min_retry_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(60),
            max_concurrent_reconciles: 32,
            cache_sync_timeout: Duration::from_secs(60),
        }
    }
}

/// State a kind keeps across its reconciles (its own memos, snapshots,
/// indexes), one value per type, registered when the kind is wired so that
/// the runtime never names a kind's types.
#[derive(Default)]
struct KindStates(HashMap<TypeId, Box<dyn Any + Send + Sync>>);

impl KindStates {
    fn insert<T: Any + Send + Sync>(&mut self, state: T) {
        let previous = self.0.insert(TypeId::of::<T>(), Box::new(state));
        assert!(previous.is_none(), "{} is registered twice", type_name::<T>());
    }

    fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0.get(&TypeId::of::<T>()).and_then(|state| state.downcast_ref())
    }
}

/// Shared by every reconcile of every kind.
pub struct Context {
    pub client: Client,
    pub router: Arc<dyn Router>,
    /// Publishes Events, remembering only recent ones (for series).
    pub events: Publisher,
    pub timing: Timing,
    /// The watch caches reconciles read instead of the API server.
    pub cache: Cache,
    pub metrics: Arc<Metrics>,
    /// Each router cluster's registered services, read once per health interval
    /// and shared by the cluster and all of its services (keyed by namespace/cluster).
    pub registries: Snapshots<Vec<RegisteredService>>,
    /// Each router cluster's pipelines, read the same way and shared by its
    /// pipelines and its orphan sweep (keyed by namespace/cluster; see [`super::router_pipelines`]).
    pub pipeline_lists: Snapshots<PipelineIndex>,
    /// Each pipeline's config and status as the router last reported them (keyed by pipeline id).
    pub pipeline_reads: Snapshots<Option<PipelineRead>>,
    /// The pipelines each new `ListPipelines` shows changed behind this
    /// operator's back, for the pipeline controller to reconcile.
    pub list_changes: super::router_pipelines::ListChanges,
    /// Objects (by uid) whose finalizer this process added (or is adding
    /// ahead of a held-back reconcile) but whose cached copy may not show it
    /// yet: a reconcile of such a copy goes ahead as if it did, instead of
    /// testing the list again and being refused.
    pub finalizers: super::finalizers::Ledger,
    /// The statuses written whose watch events may not have arrived yet.
    pub written: super::written::Ledger,
    retries: Retries,
    states: KindStates,
}

impl Context {
    pub fn new(client: Client, router: Arc<dyn Router>, timing: Timing, cache: Cache) -> Context {
        let metrics = Arc::new(Metrics::new(router.as_ref(), &cache));
        Context {
            events: Publisher::new(client.clone(), "conveyor-etl-operator", std::env::var("POD_NAME").ok()),
            client,
            router,
            retries: Retries::new(timing.min_retry_delay, timing.max_retry_delay),
            metrics,
            timing,
            cache,
            registries: Snapshots::default(),
            pipeline_lists: Snapshots::default(),
            pipeline_reads: Snapshots::default(),
            list_changes: Default::default(),
            finalizers: Default::default(),
            written: Default::default(),
            states: KindStates::default(),
        }
    }

    /// Keeps `state` for the kind that owns its type, for as long as the
    /// context lives. A kind registers its state when it is wired, before
    /// any reconcile; a type is registered once.
    pub fn register<T: Any + Send + Sync>(&mut self, state: T) {
        self.states.insert(state);
    }

    /// The state of type `T` a kind registered.
    ///
    /// # Panics
    /// When none was: the kind was not wired.
    pub fn state<T: Any + Send + Sync>(&self) -> &T {
        self.states.get().unwrap_or_else(|| panic!("no {} is registered with the context", type_name::<T>()))
    }

    /// The next delay before retrying `object` after an error: exponential,
    /// jittered, capped; never a hot loop.
    pub fn next_retry_delay<K: kube::Resource>(&self, object: &ObjectRef<K>) -> Duration
    where
        K::DynamicType: Eq + std::hash::Hash,
    {
        self.retries.next_delay(object.to_string())
    }

    /// Forgets the error history of `object`: it reconciled cleanly, or it is gone.
    pub fn forget_retries<K: kube::Resource>(&self, object: &ObjectRef<K>)
    where
        K::DynamicType: Eq + std::hash::Hash,
    {
        self.retries.forget(&object.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::KindStates;

    #[derive(Debug, PartialEq)]
    struct Memo(u32);

    #[test]
    fn a_kinds_state_is_found_by_its_type() {
        let mut states = KindStates::default();
        assert_eq!(states.get::<Memo>(), None);
        states.insert(Memo(7));
        states.insert(String::from("another kind's"));
        assert_eq!(states.get::<Memo>(), Some(&Memo(7)));
        assert_eq!(states.get::<String>().map(String::as_str), Some("another kind's"));
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn a_type_is_registered_once() {
        let mut states = KindStates::default();
        states.insert(Memo(1));
        states.insert(Memo(2));
    }
}
