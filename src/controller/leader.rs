//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas run
//! one active and one standby.
//!
//! The decision (create, acquire, renew or wait) is a pure function of the
//! Lease, the time and this replica's identity ([`decide`], [`claimed`],
//! [`released`]); [`Elector`] does the IO around it. Every write is a create
//! or a replace carrying the `resourceVersion` that was read, so of two
//! candidates racing for a free Lease exactly one wins (the other gets 409
//! Conflict and keeps waiting).
//!
//! Timing follows client-go: a candidate tries every retry period; the leader
//! renews every retry period and gives up leading when it has not renewed for
//! the renew deadline (shorter than the lease duration, so it stops before
//! anyone else may take over); a standby takes the Lease once its record has
//! not changed for the holder's `leaseDurationSeconds`, timed on this
//! replica's own monotonic clock from when it saw the record change (as
//! client-go does). The holder's `renewTime` is written for people to read
//! but never compared with the local clock, so clock skew between nodes
//! neither hands a live Lease over nor delays a take-over.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// Where the Lease is, who this replica is, and the timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// The timing must let a leader notice it failed to renew before others
    /// may take over: retry period < renew deadline < lease duration.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration < Duration::from_secs(1) {
            return Err(format!("the lease duration ({:?}) must be at least 1s", self.lease_duration));
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "the renew deadline ({:?}) must be shorter than the lease duration ({:?})",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(format!(
                "the retry period ({:?}) must be above zero and shorter than the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        if self.name.is_empty() || self.namespace.is_empty() || self.identity.is_empty() {
            return Err("the lease name, namespace and identity must not be empty".to_owned());
        }
        Ok(())
    }

    /// `leaseDurationSeconds` as written to the Lease: whole seconds, rounded up.
    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_millis().div_ceil(1000)).unwrap_or(i32::MAX)
    }
}

/// This replica's identity: `POD_NAME` when set, else the host name and a
/// random suffix (two processes on one host never share it).
pub fn default_identity() -> String {
    if let Some(pod) = std::env::var("POD_NAME").ok().filter(|name| !name.is_empty()) {
        return pod;
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "conveyor-etl-operator".to_owned());
    format!("{host}_{:08x}", random() as u32)
}

/// A random number from the standard library's per-process hash keys.
fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    );
    hasher.finish()
}

/// What a candidate does with the Lease as it read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create it, holding it.
    Create,
    /// Free (released or never held) or expired: take it over.
    Acquire,
    /// Ours: renew it.
    Renew,
    /// Held by `holder` for at least `left` more, unless it changes hands.
    Wait { holder: String, left: Duration },
}

/// The Lease's record as this replica last saw it change, and when, on the
/// local monotonic clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub record: LeaseSpec,
    pub at: Instant,
}

impl Observed {
    /// What to remember after reading `record` at `now`: the time moves only
    /// when the record differs from the one seen before (any write changes
    /// it: a renewal writes a new `renewTime`, whatever the writer's clock).
    pub fn after(previous: Option<Observed>, record: &LeaseSpec, now: Instant) -> Observed {
        match previous {
            Some(seen) if seen.record == *record => seen,
            _ => Observed { record: record.clone(), at: now },
        }
    }
}

/// The pure decision: given the Lease (`None` when it does not exist), this
/// replica's identity and how long ago (on this replica's clock) the Lease's
/// record last changed.
pub fn decide(lease: Option<&LeaseSpec>, identity: &str, unchanged_for: Duration) -> Decision {
    let Some(spec) = lease else { return Decision::Create };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == identity {
        return Decision::Renew;
    }
    let claim = Duration::from_secs(spec.lease_duration_seconds.map_or(0, |s| s.max(0) as u64));
    match claim.checked_sub(unchanged_for) {
        Some(left) if !left.is_zero() => Decision::Wait { holder: holder.to_owned(), left },
        // Not renewed for its whole duration, or held without one: nobody can say until when.
        _ => Decision::Acquire,
    }
}

/// The spec to write for `decision` (not `Wait`): held by `identity`, renewed
/// `now`; a take-over also sets the acquire time and counts a transition.
pub fn claimed(
    current: Option<&LeaseSpec>,
    decision: &Decision,
    identity: &str,
    duration_seconds: i32,
    now: Timestamp,
) -> LeaseSpec {
    let mut spec = current.cloned().unwrap_or_default();
    spec.holder_identity = Some(identity.to_owned());
    spec.lease_duration_seconds = Some(duration_seconds);
    spec.renew_time = Some(MicroTime(now));
    match decision {
        Decision::Create => {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(0);
        }
        Decision::Acquire => {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        Decision::Renew | Decision::Wait { .. } => {}
    }
    spec
}

/// The spec that gives the Lease up (as client-go does): no holder, one
/// second left, so a standby takes it at its next try.
pub fn released(current: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(MicroTime(now)),
        ..current.clone()
    }
}

/// The outcome of one try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Leading,
    /// Someone else holds the Lease (`holder`, empty when unknown after losing a race).
    Following {
        holder: String,
    },
}

/// This replica's role, for /readyz and the `conveyor_leader` gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// Leader election is off: the only replica, always active.
    Sole = 0,
    Standby = 1,
    Leader = 2,
}

/// The current [`Role`], shared by the election and the HTTP endpoint.
#[derive(Debug)]
pub struct Leadership(AtomicU8);

impl Leadership {
    pub fn new(role: Role) -> Arc<Leadership> {
        Arc::new(Leadership(AtomicU8::new(role as u8)))
    }

    pub fn set(&self, role: Role) {
        self.0.store(role as u8, Ordering::SeqCst);
    }

    pub fn get(&self) -> Role {
        match self.0.load(Ordering::SeqCst) {
            0 => Role::Sole,
            1 => Role::Standby,
            _ => Role::Leader,
        }
    }

    /// Whether this replica runs the controllers.
    pub fn is_active(&self) -> bool {
        self.get() != Role::Standby
    }
}

/// Why a leader stopped leading.
#[derive(Debug, thiserror::Error)]
#[error("lost the lease {namespace}/{name}: {reason}")]
pub struct LeaseLost {
    pub namespace: String,
    pub name: String,
    pub reason: String,
}

/// The IO around the decision: reads and writes the Lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The record last seen change, for timing its holder's claim.
    observed: std::sync::Mutex<Option<Observed>>,
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Elector {
        Elector { api: Api::namespaced(client, &config.namespace), config, observed: Default::default() }
    }

    /// How long the Lease's record `spec` has been unchanged, as far as this
    /// replica has seen (zero the first time it sees it).
    fn unchanged_for(&self, spec: Option<&LeaseSpec>) -> Duration {
        let mut observed = self.observed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(spec) = spec else {
            *observed = None;
            return Duration::ZERO;
        };
        let seen = Observed::after(observed.take(), spec, Instant::now());
        let unchanged_for = seen.at.elapsed();
        *observed = Some(seen);
        unchanged_for
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// One try: read the Lease, decide, and write it if the decision says so.
    /// A write that loses a race (409) means someone else got there first.
    pub async fn try_acquire_or_renew(&self) -> Result<Outcome, kube::Error> {
        let config = &self.config;
        let current = self.api.get_opt(&config.name).await?;
        let now = Timestamp::now();
        let spec = current.as_ref().and_then(|lease| lease.spec.as_ref());
        let decision = decide(spec, &config.identity, self.unchanged_for(spec));
        if let Decision::Wait { holder, .. } = decision {
            return Ok(Outcome::Following { holder });
        }
        let spec = claimed(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &decision,
            &config.identity,
            config.duration_seconds(),
            now,
        );
        let written = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(config.name.clone()),
                        namespace: Some(config.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            // `current` carries the resourceVersion read above: a replace after
            // anyone else's write fails with 409 Conflict.
            Some(mut lease) => {
                lease.spec = Some(spec);
                self.api.replace(&config.name, &PostParams::default(), &lease).await
            }
        };
        match written {
            Ok(_) => Ok(Outcome::Leading),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Ok(Outcome::Following { holder: String::new() })
            }
            Err(error) => Err(error),
        }
    }

    /// Tries every retry period (jittered) until this replica leads; returns
    /// when the winning try started (the Lease counts as renewed then).
    pub async fn acquire(&self) -> Instant {
        let mut last_holder: Option<String> = None;
        loop {
            let started = Instant::now();
            match self.try_acquire_or_renew().await {
                Ok(Outcome::Leading) => {
                    tracing::info!(
                        lease = %self.config.name, namespace = %self.config.namespace,
                        identity = %self.config.identity, "acquired the lease; leading"
                    );
                    return started;
                }
                Ok(Outcome::Following { holder }) => {
                    if !holder.is_empty() && last_holder.as_deref() != Some(holder.as_str()) {
                        tracing::info!(
                            lease = %self.config.name, %holder, identity = %self.config.identity,
                            "the lease is held by another replica; standing by"
                        );
                        last_holder = Some(holder);
                    }
                }
                Err(error) => {
                    tracing::warn!(lease = %self.config.name, %error, "cannot read or write the lease")
                }
            }
            let jitter = self.config.retry_period.mul_f64((random() % 1000) as f64 / 5000.0);
            tokio::time::sleep(self.config.retry_period + jitter).await;
        }
    }

    /// Renews every retry period while leading; returns once the Lease could
    /// not be renewed for the renew deadline, or another replica holds it.
    /// `acquired` is when the write that won the Lease was started.
    pub async fn keep_renewing(&self, acquired: Instant) -> LeaseLost {
        let config = &self.config;
        let lost = |reason: String| LeaseLost {
            namespace: config.namespace.clone(),
            name: config.name.clone(),
            reason,
        };
        let mut renewed = acquired;
        loop {
            tokio::time::sleep(config.retry_period).await;
            let started = Instant::now();
            let left = config.renew_deadline.saturating_sub(renewed.elapsed());
            match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                Ok(Ok(Outcome::Leading)) => renewed = started,
                Ok(Ok(Outcome::Following { holder })) if !holder.is_empty() => {
                    return lost(format!("it is held by {holder}"));
                }
                Ok(Ok(Outcome::Following { .. })) => {
                    tracing::warn!(lease = %config.name, "renewing the lease lost a write race; retrying")
                }
                Ok(Err(error)) => {
                    tracing::warn!(lease = %config.name, %error, "cannot renew the lease; retrying")
                }
                Err(_) => {}
            }
            if renewed.elapsed() >= config.renew_deadline {
                return lost(format!("not renewed within the renew deadline ({:?})", config.renew_deadline));
            }
        }
    }

    /// Gives the Lease up if this replica still holds it, so a standby takes
    /// over at its next try. Returns whether it was released.
    pub async fn release(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else { return Ok(false) };
        let Some(spec) = lease.spec.as_ref() else { return Ok(false) };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(false);
        }
        lease.spec = Some(released(spec, Timestamp::now()));
        self.api.replace(&self.config.name, &PostParams::default(), &lease).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn held_by(holder: &str, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            renew_time: Some(MicroTime(at(renewed))),
            acquire_time: Some(MicroTime(at(renewed - 100))),
            lease_duration_seconds: Some(duration),
            lease_transitions: Some(3),
            ..Default::default()
        }
    }

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(decide(None, "a", secs(0)), Decision::Create);
    }

    #[test]
    fn a_lease_held_by_this_replica_is_renewed_even_when_expired() {
        assert_eq!(decide(Some(&held_by("a", 0, 15)), "a", secs(5)), Decision::Renew);
        assert_eq!(decide(Some(&held_by("a", 0, 15)), "a", secs(100)), Decision::Renew);
    }

    #[test]
    fn another_holder_is_waited_for_until_its_record_is_unchanged_for_its_duration() {
        let lease = held_by("b", 0, 15);
        assert_eq!(decide(Some(&lease), "a", secs(0)), Decision::Wait { holder: "b".into(), left: secs(15) });
        assert_eq!(decide(Some(&lease), "a", secs(14)), Decision::Wait { holder: "b".into(), left: secs(1) });
        assert_eq!(decide(Some(&lease), "a", secs(15)), Decision::Acquire);
        assert_eq!(decide(Some(&lease), "a", secs(16)), Decision::Acquire);
    }

    #[test]
    fn the_holders_renew_time_is_never_compared_with_the_local_clock() {
        // Written by clocks a day behind and a day ahead: only how long the
        // record has been unchanged here counts.
        for skew in [-86_400, 86_400] {
            let lease = held_by("b", skew, 15);
            assert!(matches!(decide(Some(&lease), "a", secs(1)), Decision::Wait { .. }), "skew {skew}");
            assert_eq!(decide(Some(&lease), "a", secs(15)), Decision::Acquire, "skew {skew}");
        }
    }

    #[test]
    fn the_record_is_timed_from_when_this_replica_saw_it_change() {
        let start = Instant::now();
        let later = |seconds| start + secs(seconds);
        let first = Observed::after(None, &held_by("b", -3_600, 15), start);
        assert_eq!(first.at, start, "a record seen the first time is timed from now");
        let same = Observed::after(Some(first.clone()), &held_by("b", -3_600, 15), later(10));
        assert_eq!(same.at, start, "an unchanged record keeps its time");
        // A renewal from a clock an hour behind still changes the record.
        let renewed = Observed::after(Some(same), &held_by("b", -3_599, 15), later(12));
        assert_eq!(renewed.at, later(12));
        let taken = Observed::after(Some(renewed), &held_by("c", -3_599, 15), later(13));
        assert_eq!(taken.at, later(13), "a new holder is a change");
    }

    #[test]
    fn the_holders_duration_counts_not_the_candidates() {
        // b wrote 30 s; a candidate configured for 15 s still waits 30 s.
        let lease = held_by("b", 0, 30);
        assert!(matches!(decide(Some(&lease), "a", secs(20)), Decision::Wait { .. }));
    }

    #[test]
    fn a_released_or_never_held_lease_is_acquired_at_once() {
        let released = released(&held_by("b", 0, 15), at(1));
        assert_eq!(released.holder_identity, None);
        assert_eq!(released.lease_duration_seconds, Some(1));
        assert_eq!(decide(Some(&released), "a", secs(0)), Decision::Acquire);
        let empty = LeaseSpec { holder_identity: Some(String::new()), ..held_by("", 0, 15) };
        assert_eq!(decide(Some(&empty), "a", secs(0)), Decision::Acquire);
        assert_eq!(decide(Some(&LeaseSpec::default()), "a", secs(0)), Decision::Acquire);
    }

    #[test]
    fn a_holder_without_a_duration_cannot_keep_it() {
        let no_duration = LeaseSpec { lease_duration_seconds: None, ..held_by("b", 0, 15) };
        assert_eq!(decide(Some(&no_duration), "a", secs(0)), Decision::Acquire);
        let no_times = LeaseSpec { renew_time: None, acquire_time: None, ..held_by("b", 0, 15) };
        assert!(matches!(decide(Some(&no_times), "a", secs(0)), Decision::Wait { .. }));
    }

    #[test]
    fn claiming_sets_holder_and_times_and_counts_take_overs_only() {
        let current = held_by("b", 0, 30);
        let acquired = claimed(Some(&current), &Decision::Acquire, "a", 15, at(40));
        assert_eq!(acquired.holder_identity.as_deref(), Some("a"));
        assert_eq!(acquired.lease_duration_seconds, Some(15));
        assert_eq!(acquired.renew_time, Some(MicroTime(at(40))));
        assert_eq!(acquired.acquire_time, Some(MicroTime(at(40))));
        assert_eq!(acquired.lease_transitions, Some(4));

        let renewed = claimed(Some(&acquired), &Decision::Renew, "a", 15, at(42));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(42))));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(40))), "a renewal keeps the acquire time");
        assert_eq!(renewed.lease_transitions, Some(4));

        let created = claimed(None, &Decision::Create, "a", 15, at(0));
        assert_eq!(created.lease_transitions, Some(0));
        assert_eq!(created.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(
            decide(Some(&created), "b", secs(14)),
            Decision::Wait { holder: "a".into(), left: secs(1) }
        );
    }

    fn config(lease: u64, renew: u64, retry: u64) -> LeaseConfig {
        LeaseConfig {
            name: "l".into(),
            namespace: "n".into(),
            identity: "i".into(),
            lease_duration: Duration::from_millis(lease),
            renew_deadline: Duration::from_millis(renew),
            retry_period: Duration::from_millis(retry),
        }
    }

    #[test]
    fn timing_must_order_retry_below_renew_below_duration() {
        assert_eq!(config(15_000, 10_000, 2_000).validate(), Ok(()));
        assert_eq!(config(3_000, 2_000, 500).validate(), Ok(()));
        assert!(config(10_000, 10_000, 2_000).validate().unwrap_err().contains("renew deadline"));
        assert!(config(15_000, 10_000, 10_000).validate().unwrap_err().contains("retry period"));
        assert!(config(15_000, 10_000, 0).validate().is_err());
        assert!(config(500, 300, 100).validate().unwrap_err().contains("at least 1s"));
    }

    #[test]
    fn the_written_duration_rounds_up_to_whole_seconds() {
        assert_eq!(config(15_000, 10_000, 2_000).duration_seconds(), 15);
        assert_eq!(config(2_500, 2_000, 500).duration_seconds(), 3);
    }

    #[test]
    fn identities_differ_between_candidates_on_one_host() {
        if std::env::var_os("POD_NAME").is_none() {
            assert_ne!(default_identity(), default_identity());
        }
    }
}
