//! Where the operator looks: every namespace, or a list of them. Several
//! namespaces are watched one watch each (namespaced RBAC allows no wider
//! list), all feeding one cache per type; a relist of one namespace must
//! then neither wipe the others from the cache nor miss what went while the
//! watch was down, which [`MergedRelists`] takes care of.

use std::collections::{HashMap, HashSet};

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use kube::runtime::watcher::Event;

/// The namespaces the operator watches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Namespaces {
    /// Every namespace (cluster-wide RBAC).
    #[default]
    All,
    /// Only these, each with its own watch (namespaced RBAC is enough).
    Only(Vec<String>),
}

impl Namespaces {
    /// The list as given: empty names dropped, duplicates once, in order;
    /// nothing left means every namespace.
    pub fn from_list<S: AsRef<str>>(names: &[S]) -> Namespaces {
        let mut seen = HashSet::new();
        let names: Vec<String> = names
            .iter()
            .map(|name| name.as_ref().trim())
            .filter(|name| !name.is_empty() && seen.insert(name.to_owned()))
            .map(str::to_owned)
            .collect();
        if names.is_empty() { Namespaces::All } else { Namespaces::Only(names) }
    }

    /// Each watch's namespace: `[None]` for all namespaces.
    pub fn scopes(&self) -> Vec<Option<&str>> {
        match self {
            Namespaces::All => vec![None],
            Namespaces::Only(names) => names.iter().map(|name| Some(name.as_str())).collect(),
        }
    }

    /// The first namespace listed, if any (where a Lease defaults to).
    pub fn first(&self) -> Option<&str> {
        match self {
            Namespaces::All => None,
            Namespaces::Only(names) => names.first().map(String::as_str),
        }
    }
}

impl std::fmt::Display for Namespaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Namespaces::All => f.write_str("<all>"),
            Namespaces::Only(names) => f.write_str(&names.join(",")),
        }
    }
}

impl From<Option<String>> for Namespaces {
    fn from(namespace: Option<String>) -> Namespaces {
        Namespaces::from_list(namespace.as_slice())
    }
}

impl From<Option<&str>> for Namespaces {
    fn from(namespace: Option<&str>) -> Namespaces {
        Namespaces::from_list(namespace.as_slice())
    }
}

/// Merges the watch events of several namespaces into events that keep one
/// shared store whole. kube's store swaps its whole content when a list
/// ends (`InitDone`), which would drop the other namespaces' objects; here a
/// namespace's relist (`Init`, `InitApply`…, `InitDone`) becomes an `Apply`
/// per object listed and, at its end, a `Delete` for each object of that
/// namespace the store holds but the list no longer had. Once every
/// namespace has listed for the first time, one relist of the store's own
/// content marks the store ready (kube's controllers wait for that).
/// Runs on the merged stream, so no other event comes between the parts of
/// what one call returns.
pub struct MergedRelists<K: kube::Resource + Clone + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store: Store<K>,
    /// Namespaces whose first list has not ended yet.
    unlisted: HashSet<String>,
    /// The names listed so far by each namespace's relist in progress.
    listing: HashMap<String, HashSet<String>>,
}

impl<K> MergedRelists<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    pub fn new(namespaces: &[String], store: Store<K>) -> Self {
        MergedRelists { store, unlisted: namespaces.iter().cloned().collect(), listing: HashMap::new() }
    }

    pub fn translate(&mut self, namespace: &str, event: Event<K>) -> Vec<Event<K>> {
        match event {
            Event::Init => {
                self.listing.insert(namespace.to_owned(), HashSet::new());
                Vec::new()
            }
            Event::InitApply(object) => {
                self.listing.entry(namespace.to_owned()).or_default().insert(object.name_any());
                vec![Event::Apply(object)]
            }
            Event::InitDone => {
                let listed = self.listing.remove(namespace).unwrap_or_default();
                let (gone, kept): (Vec<_>, Vec<_>) = self.store.state().into_iter().partition(|object| {
                    object.namespace().as_deref() == Some(namespace) && !listed.contains(&object.name_any())
                });
                let mut events: Vec<Event<K>> =
                    gone.into_iter().map(|object| Event::Delete((*object).clone())).collect();
                if self.unlisted.remove(namespace) && self.unlisted.is_empty() {
                    events.push(Event::Init);
                    events.extend(kept.into_iter().map(|object| Event::InitApply((*object).clone())));
                    events.push(Event::InitDone);
                }
                events
            }
            other => vec![other],
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector::store::Writer;

    use super::*;

    fn map(namespace: &str, name: &str) -> ConfigMap {
        serde_json::from_value(serde_json::json!({"metadata": {"namespace": namespace, "name": name}}))
            .unwrap()
    }

    fn names(store: &Store<ConfigMap>) -> Vec<String> {
        let mut names: Vec<String> = store
            .state()
            .iter()
            .map(|object| format!("{}/{}", object.namespace().unwrap(), object.name_any()))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_list_is_trimmed_deduplicated_and_empty_means_all() {
        assert_eq!(
            Namespaces::from_list(&["a", " b", "a", ""]),
            Namespaces::Only(vec!["a".into(), "b".into()])
        );
        assert_eq!(Namespaces::from_list::<&str>(&[]), Namespaces::All);
        assert_eq!(Namespaces::from(Some(String::new())), Namespaces::All);
        assert_eq!(Namespaces::All.scopes(), [None]);
        assert_eq!(Namespaces::from_list(&["a", "b"]).scopes(), [Some("a"), Some("b")]);
        assert_eq!(Namespaces::from_list(&["a", "b"]).to_string(), "a,b");
    }

    #[test]
    fn a_relist_of_one_namespace_keeps_the_others_and_drops_what_went_meanwhile() {
        let mut writer: Writer<ConfigMap> = Writer::default();
        let store = writer.as_reader();
        let mut merged = MergedRelists::new(&["a".to_owned(), "b".to_owned()], store.clone());
        let mut feed = |namespace: &str, event| {
            for event in merged.translate(namespace, event) {
                writer.apply_watcher_event(&event);
            }
        };
        let ready = |store: &Store<ConfigMap>| store.wait_until_ready().now_or_never().is_some();
        feed("a", Event::Init);
        feed("a", Event::InitApply(map("a", "x")));
        feed("a", Event::InitApply(map("a", "gone")));
        feed("a", Event::InitDone);
        assert!(!ready(&store), "ready before b has listed");
        feed("b", Event::Init);
        feed("b", Event::InitApply(map("b", "y")));
        feed("b", Event::InitDone);
        assert_eq!(names(&store), ["a/gone", "a/x", "b/y"]);
        assert!(ready(&store), "not ready once every namespace has listed");

        // a's watch restarts; "gone" was deleted while it was down.
        feed("a", Event::Init);
        feed("a", Event::InitApply(map("a", "x")));
        feed("a", Event::InitApply(map("a", "new")));
        feed("a", Event::InitDone);
        assert_eq!(names(&store), ["a/new", "a/x", "b/y"]);

        // Ordinary events pass through.
        feed("b", Event::Delete(map("b", "y")));
        feed("b", Event::Apply(map("b", "z")));
        assert_eq!(names(&store), ["a/new", "a/x", "b/z"]);
    }
}
