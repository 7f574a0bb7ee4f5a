//! Kubernetes Events, the story `kubectl describe` tells.

use kube::Resource;

use super::Context;
use super::event_series::Draft;

/// The API server refuses Event notes over 1 kB.
const NOTE_LIMIT: usize = 1000;
/// kube's recorder names an Event `<object name>.<nanoseconds in 16 hex
/// digits>`, and the API server refuses names over 253 characters.
const EVENT_NAME_SUFFIX: usize = 17;
const NAME_LIMIT: usize = 253;

/// Records an Event about `object`. Callers publish only when something changed.
/// Inside a sampled trace the note ends with ` (trace <id>)`, so a person can
/// go from `kubectl describe` to the trace of the reconcile that published it.
///
/// An Event tells the story; it never decides it. A refused Event (the API
/// server refuses every new object in a namespace being deleted, so a
/// cleanup's Event there always fails) is logged and counted in
/// `conveyor_events_unpublished_total`, and the reconcile goes on.
pub async fn publish<K>(ctx: &Context, object: &K, warning: bool, reason: &str, note: String)
where
    K: Resource<DynamicType = ()>,
{
    let name = object.meta().name.as_deref().unwrap_or_default();
    if !recordable(name) {
        // Every publish would be refused and fail the reconcile before its
        // status is written; the status tells the story instead.
        tracing::debug!(name, reason, "no Event: the object's name leaves no room for an Event's name");
        return;
    }
    let regarding = object.object_ref(&());
    let draft = Draft {
        regarding: &regarding,
        warning,
        reason,
        action: "Reconcile",
        note: with_trace_id(note.clone(), crate::telemetry::current_trace_id().as_deref()),
        same_as: &note,
    };
    if let Err(error) = ctx.events.publish(draft).await {
        ctx.metrics.event_unpublished(K::kind(&()).as_ref());
        if namespace_terminating(&error) {
            tracing::debug!(name, reason, %error, "no Event: the namespace is being deleted");
        } else {
            tracing::warn!(name, reason, %error, "Event refused");
        }
    }
}

/// The API server's answer to a create in a namespace being deleted.
fn namespace_terminating(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 403
        && status.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating")))
}

/// Whether an Event about an object called `name` can be named within the limit.
fn recordable(name: &str) -> bool {
    name.len() + EVENT_NAME_SUFFIX <= NAME_LIMIT
}

/// `note` within the API server's limit, the trace id (if any) kept whole at its end.
fn with_trace_id(note: String, trace_id: Option<&str>) -> String {
    match trace_id {
        Some(id) => {
            let suffix = format!(" (trace {id})");
            truncate(note, NOTE_LIMIT - suffix.len()) + &suffix
        }
        None => truncate(note, NOTE_LIMIT),
    }
}

fn truncate(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn objects_whose_names_leave_no_room_for_an_event_name_get_none() {
        // Found by the chaos suite: a pipeline named at the 253-character
        // limit never got a status, its every reconcile failing on the Event.
        assert!(super::recordable(&"p".repeat(236)));
        assert!(!super::recordable(&"p".repeat(237)));
        assert!(!super::recordable(&"p".repeat(253)));
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(super::truncate("abc".into(), 10), "abc");
        assert_eq!(super::truncate("aé".into(), 2), "a");
        assert_eq!(super::truncate("x".repeat(1200), 1000).len(), 1000);
    }

    #[test]
    fn the_trace_id_ends_the_note_and_survives_truncation() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            super::with_trace_id("Pending → Provisioning".into(), Some(id)),
            format!("Pending → Provisioning (trace {id})")
        );
        assert_eq!(super::with_trace_id("plain".into(), None), "plain");
        let long = super::with_trace_id("é".repeat(800), Some(id));
        assert!(long.len() <= 1000, "{}", long.len());
        assert!(long.ends_with(&format!(" (trace {id})")), "{long}");
    }
}
