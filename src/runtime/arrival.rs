//! References applied together with their referrer (one `kubectl apply`, a
//! Helm release, a GitOps sync) reach the operator's watch caches in no set
//! order: a pipeline may be seen before its cluster and services, a service
//! before its cluster. While the referrer is younger than [`REFERENCE_GRACE`]
//! a reference missing from the caches is on its way, a quiet wait; once it
//! is older, a reference still missing is reported.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// How long after its creation a referrer waits for what it references
/// before reporting it missing. Measured from `metadata.creationTimestamp`
/// (whole seconds) on the operator's clock; a referrer whose creation lies
/// ahead of that clock is given no grace, so the wait never exceeds it.
pub const REFERENCE_GRACE: Duration = Duration::from_secs(10);

/// What is left of the grace of a referrer created at `created`, at `now`;
/// `None` once it is over (or its creation is unknown or ahead of `now`).
pub fn grace_left(created: Option<&Time>, now: Timestamp) -> Option<Duration> {
    let created = created?.0;
    if created > now {
        return None;
    }
    let age = Duration::try_from(now.duration_since(created)).ok()?;
    REFERENCE_GRACE.checked_sub(age).filter(|left| !left.is_zero())
}

/// [`grace_left`] now.
pub fn grace_left_now(created: Option<&Time>) -> Option<Duration> {
    grace_left(created, Timestamp::now())
}

/// The words a condition adds to a reference not seen yet: why it is not
/// reported missing, and until when.
pub fn on_its_way(referrer: &str) -> String {
    format!(
        "it may be on its way (applied with this {referrer}); it is reported missing if still absent {} s after \
         the {referrer} was created",
        REFERENCE_GRACE.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    #[test]
    fn a_referrer_is_given_the_grace_from_its_creation_and_no_more() {
        let created = Time(at(0));
        assert_eq!(grace_left(Some(&created), at(0)), Some(REFERENCE_GRACE));
        assert_eq!(grace_left(Some(&created), at(3)), Some(REFERENCE_GRACE - Duration::from_secs(3)));
        assert_eq!(grace_left(Some(&created), at(10)), None);
        assert_eq!(grace_left(Some(&created), at(3600)), None);
    }

    #[test]
    fn an_unknown_or_future_creation_gets_no_grace() {
        assert_eq!(grace_left(None, at(0)), None);
        assert_eq!(
            grace_left(Some(&Time(at(5))), at(0)),
            None,
            "a clock behind the server's waits no longer"
        );
    }
}
