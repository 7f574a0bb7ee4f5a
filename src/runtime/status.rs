//! Status written by server-side apply, only when it changed, with the
//! `Synced` condition every kind carries.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;

use super::conditions::{self, Wanted};
use super::{Context, Error, FIELD_MANAGER, events};

/// True when the last reconcile applied the spec; False with the error's
/// reason when it failed (health is still reported beside it).
pub const SYNCED: &str = "Synced";

/// The `Synced` condition after a reconcile that ended in `outcome`.
pub fn synced(outcome: Result<(), &Error>) -> Wanted {
    match outcome {
        Ok(()) => Wanted::new(SYNCED, true, "ReconcileSucceeded", "the last reconcile succeeded"),
        Err(error) => Wanted::new(SYNCED, false, error.reason(), condition_message(error)),
    }
}

/// The error without the timing detail (attempt counts) that differs from
/// one failure to the next; the Warning Event carries the full error.
fn condition_message(error: &Error) -> String {
    match error {
        Error::Router(error) => format!("router request failed: {}", error.summary()),
        Error::Reported(error) => condition_message(error),
        other => other.to_string(),
    }
}

/// The failure to announce with a Warning Event when `Synced` went False, or
/// its reason or message changed, between two condition lists.
pub fn new_failure<'a>(previous: &[Condition], next: &'a [Condition]) -> Option<&'a Condition> {
    let next = conditions::find(next, SYNCED).filter(|c| c.status == "False")?;
    let same = conditions::find(previous, SYNCED)
        .is_some_and(|p| p.status == next.status && p.reason == next.reason && p.message == next.message);
    (!same).then_some(next)
}

/// Server-side apply of the whole status as the operator's one field manager:
/// a full `{apiVersion, kind, status}` body, so fields the operator stops
/// setting are removed.
pub async fn apply<K>(ctx: &Context, object: &K, status: &impl Serialize) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let namespace = object.namespace().ok_or_else(|| Error::InvalidObject("no metadata.namespace".into()))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let written = api
        .patch_status(&object.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(body))
        .await?;
    // As the watch event will bring it, for a reconcile that comes before that event.
    if let (Some(uid), Ok(value)) = (written.uid(), serde_json::to_value(&written)) {
        ctx.written.record(&uid, written.resource_version(), &value["status"]);
    }
    Ok(())
}

/// Now, to the second: the API server stores condition times in seconds, so
/// a finer time would differ from the stored one and look like a change.
pub fn now() -> Time {
    let now = k8s_openapi::jiff::Timestamp::now();
    Time(k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// A status change as `kubectl describe` should tell it.
pub struct Story<'a> {
    /// The phase before, `None` for a new object.
    pub from: Option<String>,
    pub to: String,
    pub before: &'a [Condition],
    pub after: &'a [Condition],
    /// Whether the transition is a Warning Event.
    pub warning: bool,
    /// An ordinary wait at the start of the object's life (its dependencies
    /// are not Ready yet): the status tells it, no Event is published.
    pub quiet: bool,
}

impl<'a> Story<'a> {
    /// The change from `from` with conditions `before` to `to` with `after`.
    pub fn new<P: std::fmt::Debug>(
        from: Option<P>,
        to: P,
        before: &'a [Condition],
        after: &'a [Condition],
        warning: bool,
    ) -> Story<'a> {
        Story {
            from: from.map(|p| format!("{p:?}")),
            to: format!("{to:?}"),
            before,
            after,
            warning,
            quiet: false,
        }
    }

    /// Marks the change as an ordinary initial wait when `waiting` holds
    /// and the object had no phase or was already waiting in `to`.
    pub fn quiet_when(mut self, waiting: bool) -> Story<'a> {
        self.quiet = waiting && self.from.as_ref().is_none_or(|from| *from == self.to);
        self
    }
}

/// Server-side applies `status` when it differs from `previous`, then records
/// the Events its change tells (see [`announce`]). Returns whether it wrote.
pub async fn write_changed<K, S>(
    ctx: &Context,
    object: &K,
    previous: &S,
    next: &S,
    story: Story<'_>,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if previous == next {
        return Ok(false);
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(changed = ?changed_fields(previous, next), "status changed");
    }
    apply(ctx, object, next).await?;
    announce(ctx, object, story).await;
    Ok(true)
}

/// The top-level status fields that differ between `previous` and `next`,
/// and the types of the conditions that differ: what a write was for.
fn changed_fields(previous: &impl Serialize, next: &impl Serialize) -> Vec<String> {
    let (before, after) = (serde_json::to_value(previous), serde_json::to_value(next));
    let (Ok(serde_json::Value::Object(before)), Ok(serde_json::Value::Object(after))) = (before, after)
    else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut changed = Vec::new();
    for key in keys {
        let (old, new) = (before.get(key), after.get(key));
        if old == new {
            continue;
        }
        let conditions = |value: Option<&serde_json::Value>| -> Vec<serde_json::Value> {
            value.and_then(|v| v.as_array().cloned()).unwrap_or_default()
        };
        if key == "conditions" {
            let (old, new) = (conditions(old), conditions(new));
            for condition in &new {
                if !old.contains(condition) {
                    changed.push(format!("conditions.{}", condition["type"].as_str().unwrap_or("?")));
                }
            }
        } else {
            changed.push(key.clone());
        }
    }
    changed
}

/// Records the Events a written status change tells: a Warning when `Synced`
/// newly failed, and one Event when the phase or the `Ready` reason changed,
/// carrying Ready's reason and message, unless the change is a quiet wait.
pub async fn announce<K: Resource<DynamicType = ()>>(ctx: &Context, object: &K, story: Story<'_>) {
    if let Some(failure) = new_failure(story.before, story.after) {
        events::publish(ctx, object, true, &failure.reason, failure.message.clone()).await;
    }
    fn ready_of(list: &[Condition]) -> Option<&Condition> {
        conditions::find(list, "Ready")
    }
    let reason_of = |list| ready_of(list).map(|c| c.reason.clone());
    let unchanged =
        story.from.as_deref() == Some(story.to.as_str()) && reason_of(story.before) == reason_of(story.after);
    if unchanged || story.quiet {
        return;
    }
    let ready = ready_of(story.after);
    let reason = ready.map(|c| c.reason.clone()).unwrap_or_default();
    let message = ready.map(|c| c.message.as_str()).unwrap_or_default();
    let to = &story.to;
    let note = match &story.from {
        Some(from) if from == to => format!("{to}: {message}"),
        Some(from) => format!("{from} → {to}: {message}"),
        None => format!("new → {to}: {message}"),
    };
    events::publish(ctx, object, story.warning, &reason, note).await
}

#[cfg(test)]
mod tests {
    use super::Story;

    #[test]
    fn the_changed_fields_name_top_level_fields_and_condition_types() {
        let before = serde_json::json!({"phase": "Pending", "cluster": "a", "conditions": [
            {"type": "Ready", "status": "False"}, {"type": "Synced", "status": "True"}]});
        let after = serde_json::json!({"phase": "Ready", "cluster": "a", "health": "ok", "conditions": [
            {"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}]});
        assert_eq!(super::changed_fields(&before, &after), ["conditions.Ready", "health", "phase"]);
    }

    #[test]
    fn only_a_wait_from_nothing_or_within_the_same_phase_is_quiet() {
        let quiet = |from: Option<&str>, to: &str, waiting: bool| {
            Story::new(from, to, &[], &[], false).quiet_when(waiting).quiet
        };
        assert!(quiet(None, "Pending", true));
        assert!(quiet(Some("Pending"), "Pending", true));
        assert!(!quiet(Some("Ready"), "Pending", true), "falling back is told");
        assert!(!quiet(None, "Pending", false), "a problem to fix is told");
        assert!(!quiet(Some("Pending"), "Ready", true));
    }

    #[test]
    fn failures_differing_only_in_attempt_counts_give_the_same_synced_condition() {
        use crate::router::RouterError;
        use crate::runtime::Error;
        let gave_up = |attempts| {
            let last = RouterError::NoQuorum { member: "10.0.0.1:50051".into(), message: "no quorum".into() };
            Error::Router(RouterError::Exhausted { attempts, last: Box::new(last) })
        };
        assert_eq!(super::synced(Err(&gave_up(2))), super::synced(Err(&gave_up(5))));
        let reported = |attempts| Error::Reported(Box::new(gave_up(attempts)));
        assert_eq!(super::synced(Err(&reported(2))), super::synced(Err(&reported(5))));
        assert!(super::synced(Err(&gave_up(2))).message.contains("no quorum"));
    }
}
