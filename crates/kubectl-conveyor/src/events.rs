//! Events about one object, and the trace id the operator ends its notes with.

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

/// One Event as a step shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventLine {
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    /// The note without its trace id.
    pub note: String,
    /// When it was last seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
    /// How many times it was seen (the recorder folds repeats into a series).
    pub count: i32,
    /// The trace of the reconcile that recorded it, when the note names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// When an Event was last seen: its series, its time, the legacy timestamps
/// (Events written through `core/v1`, as the kubelet writes them), or its creation.
pub fn last_seen(event: &Event) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .map(|series| series.last_observed_time.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.deprecated_first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The trace id an operator Event's note ends with (` (trace <32 hex digits>)`).
pub fn trace_id(note: &str) -> Option<&str> {
    let inner = note.strip_suffix(')')?;
    let (_, id) = inner.rsplit_once(" (trace ")?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// `note` without the trace id at its end.
pub fn without_trace_id(note: &str) -> &str {
    match trace_id(note) {
        Some(id) => &note[..note.len() - id.len() - " (trace )".len()],
        None => note,
    }
}

impl EventLine {
    pub fn of(event: &Event) -> EventLine {
        let note = event.note.clone().unwrap_or_default();
        EventLine {
            type_: event.type_.clone().unwrap_or_default(),
            reason: event.reason.clone().unwrap_or_default(),
            note: without_trace_id(&note).to_owned(),
            at: last_seen(event),
            count: event.series.as_ref().map(|s| s.count).or(event.deprecated_count).unwrap_or(1).max(1),
            trace_id: trace_id(&note).map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn the_trace_id_is_read_from_the_end_of_the_note() {
        let note = format!("Pending → Provisioning: registering (trace {ID})");
        assert_eq!(trace_id(&note), Some(ID));
        assert_eq!(without_trace_id(&note), "Pending → Provisioning: registering");
        assert_eq!(trace_id("no trace here"), None);
        assert_eq!(without_trace_id("no trace here"), "no trace here");
        // Not an id: too short, not hex, or not at the end.
        assert_eq!(trace_id("x (trace 1234)"), None);
        assert_eq!(trace_id(&format!("x (trace {})", "z".repeat(32))), None);
        assert_eq!(trace_id(&format!("x (trace {ID}) and more")), None);
    }

    #[test]
    fn an_event_line_takes_the_series_time_and_count() {
        let event: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e", "creationTimestamp": "2030-01-01T00:00:00Z"},
            "eventTime": "2030-01-01T00:00:01.000000Z",
            "series": {"count": 4, "lastObservedTime": "2030-01-01T00:05:00.000000Z"},
            "type": "Warning", "reason": "BackOff",
            "note": format!("Back-off pulling image (trace {ID})"),
        }))
        .unwrap();
        let line = EventLine::of(&event);
        assert_eq!(line.count, 4);
        assert_eq!(line.at, Some("2030-01-01T00:05:00Z".parse().unwrap()));
        assert_eq!(line.note, "Back-off pulling image");
        assert_eq!(line.trace_id.as_deref(), Some(ID));
        let legacy: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e"}, "deprecatedLastTimestamp": "2030-01-01T00:07:00Z", "deprecatedCount": 9,
        }))
        .unwrap();
        assert_eq!(last_seen(&legacy), Some("2030-01-01T00:07:00Z".parse().unwrap()));
        assert_eq!(EventLine::of(&legacy).count, 9);
    }
}
