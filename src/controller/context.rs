use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use tokio::sync::OnceCell;

use super::Error;
use crate::router::Router;
use crate::router_cluster::build::PdbApi;

/// How often and how fast the controllers look again.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Health poll interval of a settled cluster.
    pub health_interval: Duration,
    /// Health poll interval while a cluster forms, scales or rolls.
    pub progress_interval: Duration,
    /// First retry delay after an error; doubles up to `max_retry_delay`, with jitter.
    pub min_retry_delay: Duration,
    pub max_retry_delay: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            health_interval: Duration::from_secs(10),
            progress_interval: Duration::from_secs(2),
            min_retry_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(60),
        }
    }
}

/// Shared by every reconcile of every kind.
pub struct Context {
    pub client: Client,
    pub router: Arc<dyn Router>,
    pub recorder: Recorder,
    pub timing: Timing,
    pdb_api: OnceCell<PdbApi>,
    /// Per-object error backoff, reset by a successful reconcile.
    backoffs: Mutex<HashMap<String, ExponentialBackoff>>,
}

impl Context {
    pub fn new(client: Client, router: Arc<dyn Router>, timing: Timing) -> Context {
        let reporter =
            Reporter { controller: "conveyor-etl-operator".into(), instance: std::env::var("POD_NAME").ok() };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            router,
            timing,
            pdb_api: OnceCell::new(),
            backoffs: Mutex::default(),
        }
    }

    /// The PodDisruptionBudget API the server serves, discovered once.
    pub async fn pdb_api(&self) -> Result<PdbApi, Error> {
        self.pdb_api
            .get_or_try_init(|| crate::router_cluster::observe::discover_pdb_api(&self.client))
            .await
            .copied()
    }

    /// The next delay before retrying `object` after an error: exponential,
    /// jittered, capped; never a hot loop.
    pub fn next_retry_delay<K: kube::Resource>(&self, object: &ObjectRef<K>) -> Duration
    where
        K::DynamicType: Eq + std::hash::Hash,
    {
        let mut backoffs = self.backoffs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let backoff = backoffs.entry(object.to_string()).or_insert_with(|| self.backoff());
        backoff.next().unwrap_or(self.timing.max_retry_delay)
    }

    /// Forgets the error history of `object` after it reconciled cleanly.
    pub fn reset_retry_delay<K: kube::Resource>(&self, object: &ObjectRef<K>)
    where
        K::DynamicType: Eq + std::hash::Hash,
    {
        let mut backoffs = self.backoffs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        backoffs.remove(&object.to_string());
    }

    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.timing.min_retry_delay)
            .with_max_delay(self.timing.max_retry_delay)
            .with_jitter()
            .without_max_times()
            .build()
    }
}
