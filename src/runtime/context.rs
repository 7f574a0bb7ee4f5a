use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;

use super::cache::Cache;
use super::metrics::Metrics;
use super::retry::Retries;
use super::snapshot::Snapshots;
use crate::router::{GetPipelineResponse, RegisteredService, Router};

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
        }
    }
}

/// A set of pod uids, bounded: past [`PodMemo::LIMIT`] it starts over (each
/// pod is then asked once more).
#[derive(Debug, Default)]
pub struct PodMemo(std::sync::Mutex<std::collections::HashSet<String>>);

impl PodMemo {
    const LIMIT: usize = 4096;

    pub fn contains(&self, uid: &str) -> bool {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(uid)
    }

    pub fn insert(&self, uid: &str) {
        let mut set = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if set.len() >= Self::LIMIT {
            set.clear();
        }
        set.insert(uid.to_owned());
    }
}

/// Shared by every reconcile of every kind.
pub struct Context {
    pub client: Client,
    pub router: Arc<dyn Router>,
    pub recorder: Recorder,
    pub timing: Timing,
    /// The watch caches reconciles read instead of the API server.
    pub cache: Cache,
    pub metrics: Arc<Metrics>,
    /// Each router cluster's registered services, read once per health interval
    /// and shared by all of that cluster's services (keyed by namespace/cluster).
    pub registries: Snapshots<Vec<RegisteredService>>,
    /// Each router cluster's pipelines, read the same way (keyed by namespace/cluster).
    pub pipeline_lists: Snapshots<crate::pipeline::PipelineIndex>,
    /// Each pipeline's config and status as the router last reported them (keyed by pipeline id).
    pub pipeline_reads: Snapshots<Option<GetPipelineResponse>>,
    /// Router pods (by uid) whose router answered `GetClusterStatus` with
    /// UNIMPLEMENTED: a router build does not change under a running pod, so
    /// each is asked once, and its cluster's health comes from its pods.
    pub without_router_admin: PodMemo,
    /// Objects (by uid) whose finalizer this process added but whose cached
    /// copy may not show it yet: a reconcile of such a copy goes ahead as if
    /// it did, instead of testing the list again and being refused.
    pub finalizer_added: std::sync::Mutex<std::collections::HashSet<String>>,
    retries: Retries,
}

impl Context {
    pub fn new(client: Client, router: Arc<dyn Router>, timing: Timing, cache: Cache) -> Context {
        let reporter =
            Reporter { controller: "conveyor-etl-operator".into(), instance: std::env::var("POD_NAME").ok() };
        let metrics = Arc::new(Metrics::new(router.as_ref(), &cache));
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            router,
            retries: Retries::new(timing.min_retry_delay, timing.max_retry_delay),
            metrics,
            timing,
            cache,
            registries: Snapshots::default(),
            pipeline_lists: Snapshots::default(),
            pipeline_reads: Snapshots::default(),
            without_router_admin: PodMemo::default(),
            finalizer_added: Default::default(),
        }
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
