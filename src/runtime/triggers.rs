//! Trigger streams that pass an object on only when what its readers read
//! of it changed: a controller's own objects when a user changed them (its
//! own status writes do not trigger it again), and the router clusters and
//! services a pipeline names when what the pipeline reads of them changed.
//! A cluster rewrites its status several times while it forms, and a
//! service while it registers; each such write woke every pipeline naming
//! them, for changes that could not move them on.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

/// The objects of `stream` whose `view` differs from the one last passed
/// for the same object (by uid); an object seen first always passes.
/// Entries of deleted objects are pruned against `store` once they
/// outnumber the live objects.
pub fn on_change<K, V>(
    stream: impl Stream<Item = Arc<K>>,
    store: Store<K>,
    view: impl Fn(&K) -> V,
) -> impl Stream<Item = Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
    V: Hash,
{
    let mut passed: HashMap<String, u64> = HashMap::new();
    stream.filter(move |object| {
        let mut hasher = DefaultHasher::new();
        view(object).hash(&mut hasher);
        let hash = hasher.finish();
        let changed = passed.insert(object.uid().unwrap_or_default(), hash) != Some(hash);
        if passed.len() > 2 * store.len() + 64 {
            let live: HashSet<String> = store.state().iter().filter_map(|object| object.uid()).collect();
            passed.retain(|uid, _| live.contains(uid));
        }
        std::future::ready(changed)
    })
}

/// The objects of `stream` that `hold` lets through now; one it holds
/// (`Some(delay)`) passes after that delay instead, as `store` holds it by
/// then, if `still_due` says it still needs it (something else may have
/// moved it on meanwhile). While it is held, `prepare` runs for it.
pub fn held<K, P>(
    stream: impl Stream<Item = Arc<K>> + Send + 'static,
    store: Store<K>,
    hold: impl Fn(&K) -> Option<Duration> + Send + 'static,
    still_due: impl Fn(&K) -> bool + Clone + Send + Sync + 'static,
    prepare: impl Fn(Arc<K>) -> P + Send + 'static,
) -> impl Stream<Item = Arc<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    P: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Arc<K>>();
    let now = stream.filter_map(move |object| {
        let delay = hold(&object);
        if let Some(delay) = delay {
            let (sender, store, still_due) = (sender.clone(), store.clone(), still_due.clone());
            let key = ObjectRef::from_obj(object.as_ref());
            let until = tokio::time::Instant::now() + delay;
            let prepared = prepare(object.clone());
            tokio::spawn(async move {
                prepared.await;
                tokio::time::sleep_until(until).await; // the hold asked for
                if let Some(current) = store.get(&key).filter(|current| still_due(current)) {
                    let _ = sender.send(current);
                }
            });
        }
        std::future::ready(delay.is_none().then_some(object))
    });
    let later = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    futures::stream::select(now, later)
}

/// What a user changes on a resource: its spec (generation), labels,
/// annotations and deletion. Status writes change none of these. Nor do
/// finalizers count: the operator adds its own and reconciles in the same
/// pass, and one removed by hand is put back by the next periodic reconcile.
fn user_facing<K: Resource>(object: &K) -> impl Hash + use<'_, K> {
    let meta = object.meta();
    (&meta.generation, &meta.labels, &meta.annotations, meta.deletion_timestamp.is_some())
}

/// The objects of `stream` whose user-facing parts changed since they last passed.
pub fn user_changes<K>(stream: impl Stream<Item = Arc<K>>, store: Store<K>) -> impl Stream<Item = Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    on_change(stream, store, |object: &K| {
        let mut hasher = DefaultHasher::new();
        user_facing(object).hash(&mut hasher);
        hasher.finish()
    })
}

#[cfg(test)]
mod tests {
    use futures::stream;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;

    use super::*;
    use crate::crd::EtlRouterCluster;

    fn config_map(name: &str, view: &str, noise: &str) -> Arc<ConfigMap> {
        let mut object = ConfigMap::default();
        object.metadata.name = Some(name.into());
        object.metadata.namespace = Some("ns".into());
        object.metadata.uid = Some(format!("uid-{name}"));
        object.data =
            Some([("view".to_owned(), view.to_owned()), ("noise".to_owned(), noise.to_owned())].into());
        Arc::new(object)
    }

    #[tokio::test]
    async fn only_a_change_of_the_view_passes() {
        let (store, _writer) = reflector::store::<ConfigMap>();
        let changes = [
            config_map("a", "1", "x"),
            config_map("a", "1", "y"), // noise only
            config_map("b", "1", "x"), // another object, first seen
            config_map("a", "2", "y"),
            config_map("a", "2", "z"), // noise only
            config_map("b", "1", "z"), // noise only
            config_map("a", "1", "z"), // back to an earlier view: a change
        ];
        let view = |map: &ConfigMap| map.data.as_ref().map(|data| data["view"].clone());
        let passed: Vec<(String, String)> = on_change(stream::iter(changes), store, view)
            .map(|map| (map.name_any(), map.data.as_ref().unwrap()["view"].clone()))
            .collect()
            .await;
        let expected = [("a", "1"), ("b", "1"), ("a", "2"), ("a", "1")];
        assert_eq!(passed, expected.map(|(name, view)| (name.to_owned(), view.to_owned())));
    }

    #[tokio::test]
    async fn a_held_object_passes_after_its_delay_and_the_others_at_once() {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let input = futures::stream::poll_fn({
            let mut receiver = receiver;
            move |cx| receiver.poll_recv(cx)
        });
        let delay = std::time::Duration::from_millis(300);
        let (store, mut writer) = reflector::store::<ConfigMap>();
        for name in ["held", "free", "moved-on"] {
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(
                (*config_map(name, "1", "x")).clone(),
            ));
        }
        let due = |map: &ConfigMap| map.name_any() != "moved-on";
        let hold = move |map: &ConfigMap| (map.name_any() != "free").then_some(delay);
        let prepared = Arc::new(std::sync::Mutex::new(Vec::new()));
        let prepare = {
            let prepared = prepared.clone();
            move |map: Arc<ConfigMap>| {
                prepared.lock().unwrap().push(map.name_any());
                std::future::ready(())
            }
        };
        let mut passed = Box::pin(held(input, store, hold, due, prepare));
        let started = tokio::time::Instant::now();
        sender.send(config_map("moved-on", "1", "x")).unwrap();
        sender.send(config_map("held", "1", "x")).unwrap();
        sender.send(config_map("free", "1", "x")).unwrap();
        let first = passed.next().await.unwrap();
        assert_eq!(first.name_any(), "free");
        let second = passed.next().await.unwrap();
        assert_eq!(second.name_any(), "held");
        assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
        // "moved-on" was no longer due when its delay was over: nothing more
        // comes (its timer and "held"'s ran together).
        assert!(tokio::time::timeout(delay, passed.next()).await.is_err());
        assert_eq!(*prepared.lock().unwrap(), ["moved-on", "held"], "prepared while held, and only then");
    }

    fn cluster(generation: i64, phase: Option<crate::crd::ClusterPhase>) -> Arc<EtlRouterCluster> {
        let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/seed.yaml"))
            .unwrap();
        let mut cluster: EtlRouterCluster =
            serde_norway::from_str(yaml.split("\n---\n").next().unwrap()).unwrap();
        cluster.metadata.uid = Some("uid-1".into());
        cluster.metadata.generation = Some(generation);
        cluster.status = phase
            .map(|phase| crate::crd::EtlRouterClusterStatus { phase: Some(phase), ..Default::default() });
        Arc::new(cluster)
    }

    #[tokio::test]
    async fn status_writes_do_not_pass_spec_and_metadata_changes_do() {
        use crate::crd::ClusterPhase::*;
        let (store, _writer) = reflector::store::<EtlRouterCluster>();
        let mut annotated = (*cluster(2, Some(Ready))).clone();
        annotated.annotations_mut().insert("conveyor.etl/paused".into(), "true".into());
        let inputs = vec![
            cluster(1, None),
            cluster(1, Some(Provisioning)),
            cluster(1, Some(Ready)),
            cluster(2, Some(Ready)),
            Arc::new(annotated),
        ];
        let passed: Vec<(Option<i64>, bool)> = user_changes(stream::iter(inputs), store)
            .map(|c| (c.metadata.generation, c.annotations().contains_key("conveyor.etl/paused")))
            .collect()
            .await;
        assert_eq!(passed, [(Some(1), false), (Some(2), false), (Some(2), true)]);
    }
}
