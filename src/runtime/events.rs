//! Kubernetes Events, the story `kubectl describe` tells.

use kube::Resource;
use kube::runtime::events::{Event, EventType};

use super::{Context, Error};

/// The API server refuses Event notes over 1 kB.
const NOTE_LIMIT: usize = 1000;

/// Records an Event about `object`. Callers publish only when something changed.
pub async fn publish<K>(
    ctx: &Context,
    object: &K,
    warning: bool,
    reason: &str,
    note: String,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()>,
{
    let event = Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.to_owned(),
        note: Some(truncate(note, NOTE_LIMIT)),
        action: "Reconcile".into(),
        secondary: None,
    };
    ctx.recorder.publish(&event, &object.object_ref(&())).await?;
    Ok(())
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
    fn truncation_respects_character_boundaries() {
        assert_eq!(super::truncate("abc".into(), 10), "abc");
        assert_eq!(super::truncate("aé".into(), 2), "a");
        assert_eq!(super::truncate("x".repeat(1200), 1000).len(), 1000);
    }
}
