//! Watch caches: one reflector per watched type, shared by every controller
//! that reads or is triggered by it. Reconciles read these stores instead of
//! GETting objects, so an unchanged object costs the API server nothing.
//! `managedFields` and kubectl's last-applied annotation are stripped
//! before an object is stored (see [`trim`]).

use std::any::Any;
use std::hash::Hash;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::{self, ReflectHandle, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::de::DeserializeOwned;

use super::namespaces::{MergedRelists, Namespaces};
use super::subscription::Subscription;
use crate::crd::{EtlPipeline, EtlRouterCluster, EtlSink, EtlSource, EtlTransform};
use crate::intern;

/// The annotation `kubectl apply` (client-side) keeps the whole applied
/// object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what the operator never reads and what would dominate the caches'
/// memory: `managedFields`, and the last-applied annotation, a second copy
/// of the object for everyone who uses `kubectl apply` without
/// `--server-side`. The operator never writes either back: its writes are
/// status applies and JSON patches of the finalizers.
/// A pipeline's stages take the shared copies of their texts and partitions
/// ([`intern`]): ten thousand pipelines repeat the same few.
pub fn trim<K: Resource + 'static>(object: &mut K) {
    object.managed_fields_mut().clear();
    if let Some(annotations) = object.meta_mut().annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            object.meta_mut().annotations = None;
        }
    }
    if let Some(status) =
        (object as &mut dyn Any).downcast_mut::<EtlPipeline>().and_then(|p| p.status.as_mut())
    {
        for stage in &mut status.stages {
            stage.id = intern::text(&stage.id);
            stage.service = intern::text(&stage.service);
            stage.endpoint = stage.endpoint.as_deref().map(intern::text);
            stage.assigned_partitions = intern::partitions(&stage.assigned_partitions);
        }
    }
}

/// How many events a slow subscriber may lag behind before the watch waits for it.
const SUBSCRIBER_BUFFER: usize = 1024;

/// One watched type: the writer that fills its store and fans events out to
/// subscribed controllers, and the watch that feeds it.
pub struct Watch<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    /// One watch per namespace listed (one for all namespaces).
    sources: Vec<Source<K>>,
    config: watcher::Config,
    writer: Writer<K>,
    synced: Synced,
    /// Counts the watch's failures, each followed by a restart with backoff.
    restarts: Counter,
}

impl<K> Watch<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    fn new(sources: Vec<Source<K>>, config: watcher::Config, synced: &Synced) -> (Watch<K>, Store<K>) {
        let writer = Writer::new_shared(SUBSCRIBER_BUFFER, Default::default());
        let store = writer.as_reader();
        synced.listed.send_modify(|count| count.watches += sources.len());
        let restarts = synced.restarts_of(&K::kind(&Default::default()));
        (Watch { sources, config, writer, synced: synced.clone(), restarts }, store)
    }

    /// A stream of every object the watch applies, read from the store.
    pub fn subscribe(&self) -> Subscription<ReflectHandle<K>> {
        Subscription(self.writer.subscribe().expect("a shared writer always hands out subscribers"))
    }
}

impl<K> Watch<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    /// A cache without subscribers, for a type that is only read, never followed.
    fn unshared(
        sources: Vec<Source<K>>,
        config: watcher::Config,
        dyntype: K::DynamicType,
        synced: &Synced,
    ) -> (Watch<K>, Store<K>) {
        let restarts = synced.restarts_of(&K::kind(&dyntype));
        let writer = Writer::new(dyntype);
        let store = writer.as_reader();
        synced.listed.send_modify(|count| count.watches += sources.len());
        (Watch { sources, config, writer, synced: synced.clone(), restarts }, store)
    }

    fn run(self) -> BoxFuture<'static, ()> {
        let kind = std::any::type_name::<K>();
        let Watch { sources, config, writer, synced, restarts } = self;
        let store = writer.as_reader();
        let several = sources.len() > 1;
        let namespaces: Vec<Option<String>> = sources.iter().map(|source| source.namespace.clone()).collect();
        let count = sources.len();
        let streams = sources.into_iter().map(|Source { namespace, api }| {
            watcher(api, config.clone())
                .default_backoff()
                .modify(trim)
                .map(move |event| (namespace.clone(), event))
                .boxed()
        });
        let merged = futures::stream::select_all(streams);
        let events = if several {
            let namespaces: Vec<String> = namespaces.into_iter().flatten().collect();
            let mut relists = MergedRelists::new(&namespaces, store);
            merged
                .flat_map(move |(namespace, event)| {
                    let events: Vec<_> = match (event, namespace) {
                        (Ok(event), Some(namespace)) => {
                            relists.translate(&namespace, event).into_iter().map(Ok).collect()
                        }
                        (event, _) => vec![event],
                    };
                    futures::stream::iter(events)
                })
                .boxed()
        } else {
            merged.map(|(_, event)| event).boxed()
        };
        // The store's first InitDone: every source has listed (merged
        // relists end the first lists of all namespaces with one).
        let mut listed = false;
        events
            .reflect_shared(writer)
            .for_each(move |event| {
                match event {
                    Ok(watcher::Event::InitDone) if !listed => {
                        listed = true;
                        synced.listed.send_modify(|counts| counts.listed += count);
                    }
                    Err(error) => {
                        restarts.inc();
                        tracing::warn!(kind, %error, "watch failed; retrying with backoff");
                    }
                    Ok(_) => {}
                }
                std::future::ready(())
            })
            .boxed()
    }
}

/// One namespace's watch (`None`: every namespace).
struct Source<K> {
    namespace: Option<String>,
    api: Api<K>,
}

/// What every watch reports to: how many watches there are and how many have
/// completed their first list (readiness is tracked here rather than with
/// `Store::wait_until_ready`, whose one-shot channel wakes only the last of
/// several concurrent waiters), and each watch's restarts.
type Synced = Arc<Reports>;

struct Reports {
    listed: tokio::sync::watch::Sender<Listed>,
    restarts: Family<WatchLabels, Counter>,
}

impl Reports {
    fn restarts_of(&self, kind: &str) -> Counter {
        self.restarts.get_or_create(&WatchLabels { kind: kind.to_owned() }).clone()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatchLabels {
    kind: String,
}

#[derive(Clone, Copy, Debug, Default)]
struct Listed {
    watches: usize,
    listed: usize,
}

impl Listed {
    fn all(&self) -> bool {
        self.listed >= self.watches
    }
}

fn is_ready(synced: &tokio::sync::watch::Receiver<Listed>) -> bool {
    synced.borrow().all()
}

/// Every caller is woken, however many wait at once.
async fn ready(synced: &tokio::sync::watch::Receiver<Listed>) {
    // An error means the watches were dropped: the operator is stopping.
    let _ = synced.clone().wait_for(Listed::all).await;
}

/// Which objects of the shared types the operator watches.
#[derive(Clone, Debug)]
pub struct Selectors {
    /// Label selector of the objects the operator creates.
    pub owned: String,
    /// Label selector of the router pods.
    pub pods: String,
}

/// Read access to every watch cache; cheap to clone.
#[derive(Clone)]
pub struct Cache {
    pub router_clusters: Store<EtlRouterCluster>,
    pub stateful_sets: Store<StatefulSet>,
    pub services: Store<Service>,
    pub config_maps: Store<ConfigMap>,
    pub pods: Store<Pod>,
    pub pdbs: Store<PodDisruptionBudget>,
    pub sources: Store<EtlSource>,
    pub transforms: Store<EtlTransform>,
    pub sinks: Store<EtlSink>,
    pub pipelines: Store<EtlPipeline>,
    synced: tokio::sync::watch::Receiver<Listed>,
    restarts: Family<WatchLabels, Counter>,
}

/// The watches behind a [`Cache`]. Controllers subscribe to them before
/// [`Watches::run`] drives them all.
pub struct Watches {
    pub router_clusters: Watch<EtlRouterCluster>,
    pub stateful_sets: Watch<StatefulSet>,
    pub services: Watch<Service>,
    pub config_maps: Watch<ConfigMap>,
    pub pods: Watch<Pod>,
    /// Read from the cache only: a changed budget is put right at the next periodic reconcile.
    pdbs: Watch<PodDisruptionBudget>,
    pub sources: Watch<EtlSource>,
    pub transforms: Watch<EtlTransform>,
    pub sinks: Watch<EtlSink>,
    pub pipelines: Watch<EtlPipeline>,
}

/// One watch source per scope of `namespaces`.
fn api<K>(client: &Client, namespaces: &Namespaces) -> Vec<Source<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    namespaces
        .scopes()
        .into_iter()
        .map(|scope| Source {
            namespace: scope.map(str::to_owned),
            api: match scope {
                Some(namespace) => Api::namespaced(client.clone(), namespace),
                None => Api::all(client.clone()),
            },
        })
        .collect()
}

impl Watches {
    /// The watches of `namespaces`.
    pub fn new(client: &Client, namespaces: &Namespaces, selectors: &Selectors) -> (Watches, Cache) {
        let namespace = namespaces;
        let owned = || watcher::Config::default().labels(&selectors.owned);
        let synced: Synced = Arc::new(Reports {
            listed: tokio::sync::watch::Sender::new(Listed::default()),
            restarts: Family::default(),
        });
        let (router_clusters, clusters_store) =
            Watch::new(api(client, namespace), watcher::Config::default(), &synced);
        let (stateful_sets, sets_store) = Watch::new(api(client, namespace), owned(), &synced);
        let (services, services_store) = Watch::new(api(client, namespace), owned(), &synced);
        let (config_maps, maps_store) = Watch::new(api(client, namespace), owned(), &synced);
        let (pods, pods_store) =
            Watch::new(api(client, namespace), watcher::Config::default().labels(&selectors.pods), &synced);
        let (pdbs, pdbs_store) = Watch::unshared(api(client, namespace), owned(), (), &synced);
        let every = watcher::Config::default;
        let (sources, sources_store) = Watch::new(api(client, namespace), every(), &synced);
        let (transforms, transforms_store) = Watch::new(api(client, namespace), every(), &synced);
        let (sinks, sinks_store) = Watch::new(api(client, namespace), every(), &synced);
        let (pipelines, pipelines_store) = Watch::new(api(client, namespace), every(), &synced);
        let cache = Cache {
            router_clusters: clusters_store,
            stateful_sets: sets_store,
            services: services_store,
            config_maps: maps_store,
            pods: pods_store,
            pdbs: pdbs_store,
            sources: sources_store,
            transforms: transforms_store,
            sinks: sinks_store,
            pipelines: pipelines_store,
            synced: synced.listed.subscribe(),
            restarts: synced.restarts.clone(),
        };
        let watches = Watches {
            router_clusters,
            stateful_sets,
            services,
            config_maps,
            pods,
            pdbs,
            sources,
            transforms,
            sinks,
            pipelines,
        };
        (watches, cache)
    }

    /// Drives every watch; runs until dropped.
    pub async fn run(self) {
        futures::future::join_all([
            self.router_clusters.run(),
            self.stateful_sets.run(),
            self.services.run(),
            self.config_maps.run(),
            self.pods.run(),
            self.pdbs.run(),
            self.sources.run(),
            self.transforms.run(),
            self.sinks.run(),
            self.pipelines.run(),
        ])
        .await;
    }
}

impl Cache {
    /// Whether every store has been filled by its first list, without waiting.
    pub fn is_ready(&self) -> bool {
        is_ready(&self.synced)
    }

    /// Resolves once every store has been filled by its first list.
    pub async fn ready(&self) {
        ready(&self.synced).await
    }

    /// Adds `watch_restarts_total` (by kind) to `registry`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "watch_restarts",
            "Watch failures, each followed by a restart with backoff, by kind",
            self.restarts.clone(),
        );
    }
}

/// The object named `name` in `namespace` from `store`.
pub fn get<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    store.get(&reflector::ObjectRef::new(name).within(namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_drops_managed_fields_and_the_last_applied_copy_only() {
        let mut pipeline: EtlPipeline = serde_json::from_value(serde_json::json!({
            "apiVersion": "conveyor.etl/v1", "kind": "EtlPipeline",
            "metadata": {"name": "p", "namespace": "ns",
                "annotations": {LAST_APPLIED: "{\"spec\":{}}", "team": "data"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"source": "s", "sink": "k"},
        }))
        .unwrap();
        trim(&mut pipeline);
        assert!(pipeline.managed_fields().is_empty());
        assert_eq!(pipeline.annotations().keys().collect::<Vec<_>>(), ["team"]);
        pipeline.annotations_mut().remove("team");
        pipeline.annotations_mut().insert(LAST_APPLIED.into(), "{}".into());
        trim(&mut pipeline);
        assert_eq!(pipeline.metadata.annotations, None, "no empty map left behind");
    }

    #[test]
    fn two_cached_pipelines_share_their_stages_texts_and_partitions() {
        let cached = || {
            let mut pipeline: EtlPipeline = serde_json::from_value(serde_json::json!({
                "apiVersion": "conveyor.etl/v1", "kind": "EtlPipeline",
                "metadata": {"name": "p", "namespace": "ns"},
                "spec": {"source": "s", "sink": "k"},
                "status": {"stages": [
                    {"id": "source", "service": "s", "endpoint": "s.ns:50051", "assignedPartitions": [0, 1]},
                    {"id": "sink", "service": "k"},
                ]},
            }))
            .unwrap();
            trim(&mut pipeline);
            pipeline.status.unwrap().stages
        };
        let (first, second) = (cached(), cached());
        assert_eq!(first, second);
        for (a, b) in first.iter().zip(&second) {
            assert!(Arc::ptr_eq(&a.id, &b.id) && Arc::ptr_eq(&a.service, &b.service));
            assert!(Arc::ptr_eq(&a.assigned_partitions, &b.assigned_partitions));
        }
        assert!(Arc::ptr_eq(first[0].endpoint.as_ref().unwrap(), second[0].endpoint.as_ref().unwrap()));
        assert_eq!(*first[0].assigned_partitions, [0, 1]);
    }

    #[tokio::test]
    async fn every_concurrent_waiter_wakes_when_the_last_watch_has_listed() {
        let synced = tokio::sync::watch::Sender::new(Listed { watches: 2, listed: 0 });
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let receiver = synced.subscribe();
                tokio::spawn(async move { ready(&receiver).await })
            })
            .collect();
        tokio::task::yield_now().await;
        synced.send_modify(|count| count.listed += 1);
        assert!(!is_ready(&synced.subscribe()));
        synced.send_modify(|count| count.listed += 1);
        assert!(is_ready(&synced.subscribe()));
        for waiter in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("a waiter was never woken")
                .unwrap();
        }
    }
}
