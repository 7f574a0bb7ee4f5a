//! Status conditions shared by every kind: `metav1.Condition` entries whose
//! `lastTransitionTime` moves only when the condition's status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// True, False or Unknown, as Kubernetes spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Status {
    fn from(value: bool) -> Self {
        if value { Status::True } else { Status::False }
    }
}

/// A condition as the reconciler wants it, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub type_: &'static str,
    pub status: Status,
    /// PascalCase, machine-readable.
    pub reason: &'static str,
    /// For a person: what is wrong and what to do.
    pub message: String,
}

impl Wanted {
    pub fn new(
        type_: &'static str,
        status: impl Into<Status>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Wanted { type_, status: status.into(), reason, message: message.into() }
    }
}

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// Ready, Progressing and Degraded sharing one reason and message, so
/// `kubectl describe` tells one story.
pub fn main_conditions(
    ready: Status,
    progressing: bool,
    degraded: bool,
    reason: &'static str,
    message: &str,
) -> [Wanted; 3] {
    [
        Wanted::new(READY, ready, reason, message),
        Wanted::new(PROGRESSING, progressing, reason, message),
        Wanted::new(DEGRADED, degraded, reason, message),
    ]
}

/// The conditions after applying `wanted` to `existing`: each wanted type is
/// replaced, keeping its `lastTransitionTime` unless its status changed;
/// types not wanted are kept as they are (another writer may own them).
pub fn merge(
    existing: &[Condition],
    wanted: &[Wanted],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let updated = |want: &Wanted| {
        let previous = existing.iter().find(|c| c.type_ == want.type_);
        let last_transition_time = match previous {
            Some(previous) if previous.status == want.status.as_str() => {
                previous.last_transition_time.clone()
            }
            _ => now.clone(),
        };
        Condition {
            type_: want.type_.to_string(),
            status: want.status.as_str().to_string(),
            reason: want.reason.to_string(),
            message: want.message.clone(),
            observed_generation: generation,
            last_transition_time,
        }
    };
    // The existing order is kept, new types go last: server-side apply keeps
    // a map list's stored order, so any other order would look like a change
    // on every reconcile and be written again and again.
    let mut result: Vec<Condition> = existing
        .iter()
        .map(|condition| match wanted.iter().find(|w| w.type_ == condition.type_) {
            Some(want) => updated(want),
            None => condition.clone(),
        })
        .collect();
    result.extend(wanted.iter().filter(|w| !existing.iter().any(|c| c.type_ == w.type_)).map(updated));
    result
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn the_stored_order_is_kept_and_new_types_go_last() {
        let now = at(1_000);
        let synced_first = merge(&[], &[Wanted::new("Synced", false, "Failed", "x")], Some(1), &now);
        let wanted = [Wanted::new("Ready", true, "Fine", "ok"), Wanted::new("Synced", true, "Done", "ok")];
        let merged = merge(&synced_first, &wanted, Some(1), &now);
        let types: Vec<&str> = merged.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Synced", "Ready"]);
        assert_eq!(merge(&merged, &wanted, Some(1), &now), merged, "a second merge changes nothing");
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let first =
            merge(&[], &[Wanted::new("Ready", false, "PodsStarting", "0/3 ready")], Some(1), &at(100));
        assert_eq!(first[0].last_transition_time, at(100));

        let same_status =
            merge(&first, &[Wanted::new("Ready", false, "NoQuorum", "electing")], Some(1), &at(200));
        assert_eq!(same_status[0].last_transition_time, at(100), "status unchanged, time kept");
        assert_eq!(same_status[0].reason, "NoQuorum");

        let flipped =
            merge(&same_status, &[Wanted::new("Ready", true, "ClusterHealthy", "ok")], Some(2), &at(300));
        assert_eq!(flipped[0].last_transition_time, at(300));
        assert_eq!(flipped[0].status, "True");
        assert_eq!(flipped[0].observed_generation, Some(2));
    }

    #[test]
    fn conditions_of_other_types_are_kept() {
        let foreign = merge(&[], &[Wanted::new("Custom", true, "Mine", "")], None, &at(1));
        let merged = merge(&foreign, &[Wanted::new("Ready", true, "ClusterHealthy", "ok")], Some(1), &at(2));
        assert_eq!(merged.len(), 2);
        assert!(find(&merged, "Custom").is_some());
        assert_eq!(find(&merged, "Ready").unwrap().status, "True");
    }

    #[test]
    fn unknown_status_is_spelled_out() {
        let merged =
            merge(&[], &[Wanted::new("Ready", Status::Unknown, "RouterUnreachable", "?")], None, &at(1));
        assert_eq!(merged[0].status, "Unknown");
    }
}
