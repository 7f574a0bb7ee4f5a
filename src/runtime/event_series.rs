//! Publishing Events with a bounded memory. kube's `Recorder` keeps every
//! Event it published in the last six minutes, whole, and scans them all on
//! each publish: at ten thousand pipelines applied at once that is tens of
//! megabytes and a cost per Event that grows with the number of objects.
//! This publisher remembers only the most recent Events, by a hash of what
//! makes two of them the same, so a repeat within [`SERIES_WINDOW`] still
//! becomes a series (one Event whose count rises) and nothing else grows.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

/// A repeat within this window joins the earlier Event's series (kube's recorder uses the same).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// How many recent Events are remembered; older ones are forgotten first.
pub const REMEMBERED: usize = 4096;

/// One Event to publish about an object.
pub struct Draft<'a> {
    pub regarding: &'a ObjectReference,
    pub warning: bool,
    pub reason: &'a str,
    pub action: &'a str,
    /// The note as shown; `same_as` is what makes two notes the same story
    /// (the note without its trace id, which differs every time).
    pub note: String,
    pub same_as: &'a str,
}

/// Where an earlier Event was published, and how often.
#[derive(Clone, Debug, PartialEq)]
struct Published {
    namespace: String,
    name: String,
    count: i32,
    at: Instant,
}

/// The most recent Events, at most `capacity`, oldest forgotten first.
#[derive(Debug)]
struct Recent {
    capacity: usize,
    window: Duration,
    by_key: HashMap<u64, Published>,
    /// Keys in the order first published (a key appears once).
    order: VecDeque<u64>,
}

impl Recent {
    fn new(capacity: usize, window: Duration) -> Recent {
        Recent { capacity, window, by_key: HashMap::new(), order: VecDeque::new() }
    }

    /// The Event a repeat of `key` at `now` joins, with its new count.
    fn repeat_of(&self, key: u64, now: Instant) -> Option<(String, String, i32)> {
        let published = self.by_key.get(&key)?;
        (now.duration_since(published.at) < self.window)
            .then(|| (published.namespace.clone(), published.name.clone(), published.count + 1))
    }

    fn remember(&mut self, key: u64, published: Published) {
        if self.by_key.insert(key, published).is_none() {
            self.order.push_back(key);
        }
        while self.by_key.len() > self.capacity {
            let Some(oldest) = self.order.pop_front() else { break };
            self.by_key.remove(&oldest);
        }
    }
}

/// Publishes Events as `controller` (`instance`, when set, names the replica).
pub struct Publisher {
    client: Client,
    controller: String,
    instance: Option<String>,
    recent: Mutex<Recent>,
}

impl Publisher {
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Publisher {
        Publisher {
            client,
            controller: controller.to_owned(),
            instance,
            recent: Mutex::new(Recent::new(REMEMBERED, SERIES_WINDOW)),
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub async fn publish(&self, draft: Draft<'_>) -> Result<(), kube::Error> {
        let key = key_of(&draft);
        let now = Instant::now();
        let repeat = self.recent().repeat_of(key, now);
        let namespace = draft.regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let published = match repeat {
            Some((namespace, name, count)) => {
                let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
                let series = serde_json::json!({"series": EventSeries {
                    count,
                    last_observed_time: MicroTime(Timestamp::now()),
                }});
                events.patch(&name, &PatchParams::default(), &Patch::Merge(&series)).await?;
                Published { namespace, name, count, at: now }
            }
            None => {
                let event = self.new_event(&draft, &namespace);
                let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
                events.create(&PostParams::default(), &event).await?;
                let name = event.metadata.name.unwrap_or_default();
                Published { namespace, name, count: 1, at: now }
            }
        };
        self.recent().remember(key, published);
        Ok(())
    }

    fn new_event(&self, draft: &Draft<'_>, namespace: &str) -> K8sEvent {
        let now = Timestamp::now();
        let object = draft.regarding.name.as_deref().unwrap_or(&self.controller);
        K8sEvent {
            metadata: ObjectMeta {
                namespace: Some(namespace.to_owned()),
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(draft.action.to_owned()),
            reason: Some(draft.reason.to_owned()),
            note: Some(draft.note.clone()),
            regarding: Some(draft.regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone().unwrap_or_else(|| self.controller.clone())),
            type_: Some(if draft.warning { "Warning" } else { "Normal" }.to_owned()),
            ..K8sEvent::default()
        }
    }
}

/// What makes two Events the same story: the object (by uid, so a new object
/// of the same name starts afresh), the type, the reason and the note.
fn key_of(draft: &Draft<'_>) -> u64 {
    let mut hasher = DefaultHasher::new();
    let object = draft.regarding;
    (&object.namespace, &object.kind, &object.name, &object.uid).hash(&mut hasher);
    (draft.warning, draft.reason, draft.action, draft.same_as).hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(name: &str, at: Instant) -> Published {
        Published { namespace: "n".into(), name: name.into(), count: 1, at }
    }

    #[test]
    fn a_repeat_within_the_window_joins_the_series_and_one_after_it_starts_anew() {
        let start = Instant::now();
        let mut recent = Recent::new(8, Duration::from_secs(60));
        assert_eq!(recent.repeat_of(1, start), None);
        recent.remember(1, published("a.1", start));
        assert_eq!(recent.repeat_of(1, start + Duration::from_secs(59)), Some(("n".into(), "a.1".into(), 2)));
        recent.remember(1, Published { count: 2, ..published("a.1", start + Duration::from_secs(59)) });
        assert_eq!(
            recent.repeat_of(1, start + Duration::from_secs(100)),
            Some(("n".into(), "a.1".into(), 3))
        );
        assert_eq!(recent.repeat_of(1, start + Duration::from_secs(200)), None, "past the window");
        assert_eq!(recent.repeat_of(2, start), None, "another key");
    }

    #[test]
    fn memory_is_bounded_oldest_forgotten_first() {
        let now = Instant::now();
        let mut recent = Recent::new(3, Duration::from_secs(60));
        for key in 0..10 {
            recent.remember(key, published(&format!("e.{key}"), now));
            recent.remember(key, published(&format!("e.{key}"), now)); // a repeat takes no more room
        }
        assert_eq!(recent.by_key.len(), 3);
        assert_eq!(recent.order.len(), 3);
        assert!(recent.repeat_of(9, now).is_some() && recent.repeat_of(7, now).is_some());
        assert!(recent.repeat_of(6, now).is_none() && recent.repeat_of(0, now).is_none());
    }

    #[test]
    fn the_key_ignores_the_trace_id_but_not_the_object_reason_or_story() {
        let object = |uid: &str| ObjectReference {
            namespace: Some("n".into()),
            kind: Some("EtlPipeline".into()),
            name: Some("p".into()),
            uid: Some(uid.into()),
            ..ObjectReference::default()
        };
        let (one, other) = (object("u1"), object("u2"));
        let draft = |regarding, reason, note: &str, same_as| Draft {
            regarding,
            warning: false,
            reason,
            action: "Reconcile",
            note: note.to_owned(),
            same_as,
        };
        let base = key_of(&draft(&one, "Submitted", "a (trace 1)", "a"));
        assert_eq!(base, key_of(&draft(&one, "Submitted", "a (trace 2)", "a")));
        assert_ne!(base, key_of(&draft(&other, "Submitted", "a (trace 1)", "a")));
        assert_ne!(base, key_of(&draft(&one, "Degraded", "a (trace 1)", "a")));
        assert_ne!(base, key_of(&draft(&one, "Submitted", "b (trace 1)", "b")));
    }
}
