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
//! anyone else may take over); a standby takes the Lease once its holder's
//! `renewTime + leaseDurationSeconds` has passed. Expiry is read from the
//! Lease's own times, so the replicas' clocks must agree to well within
//! `lease duration - renew deadline`.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
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
    /// Held by `holder` until `expires`.
    Wait { holder: String, expires: Timestamp },
}

/// The pure decision: given the Lease (`None` when it does not exist), this
/// replica's identity and the time now.
pub fn decide(lease: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease else { return Decision::Create };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == identity {
        return Decision::Renew;
    }
    match expiry(spec) {
        Some(expires) if now < expires => Decision::Wait { holder: holder.to_owned(), expires },
        // Expired, or held without a renew time or duration: nobody can say until when.
        _ => Decision::Acquire,
    }
}

/// When the holder's claim runs out: its last renewal plus its lease duration.
fn expiry(spec: &LeaseSpec) -> Option<Timestamp> {
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    let seconds = spec.lease_duration_seconds?;
    renewed.checked_add(SignedDuration::from_secs(i64::from(seconds))).ok()
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
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Elector {
        Elector { api: Api::namespaced(client, &config.namespace), config }
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
        let decision = decide(current.as_ref().and_then(|lease| lease.spec.as_ref()), &config.identity, now);
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

    #[test]
    fn no_lease_is_created() {
        assert_eq!(decide(None, "a", at(0)), Decision::Create);
    }

    #[test]
    fn a_lease_held_by_this_replica_is_renewed_even_when_expired() {
        assert_eq!(decide(Some(&held_by("a", 0, 15)), "a", at(5)), Decision::Renew);
        assert_eq!(decide(Some(&held_by("a", 0, 15)), "a", at(100)), Decision::Renew);
    }

    #[test]
    fn another_holder_is_waited_for_until_renew_time_plus_duration() {
        let lease = held_by("b", 0, 15);
        assert_eq!(decide(Some(&lease), "a", at(0)), Decision::Wait { holder: "b".into(), expires: at(15) });
        assert_eq!(decide(Some(&lease), "a", at(14)), Decision::Wait { holder: "b".into(), expires: at(15) });
        assert_eq!(decide(Some(&lease), "a", at(15)), Decision::Acquire);
        assert_eq!(decide(Some(&lease), "a", at(16)), Decision::Acquire);
    }

    #[test]
    fn the_holders_duration_counts_not_the_candidates() {
        // b wrote 30 s; a candidate configured for 15 s still waits 30 s.
        let lease = held_by("b", 0, 30);
        assert!(matches!(decide(Some(&lease), "a", at(20)), Decision::Wait { .. }));
    }

    #[test]
    fn a_released_or_never_held_lease_is_acquired_at_once() {
        let released = released(&held_by("b", 0, 15), at(1));
        assert_eq!(released.holder_identity, None);
        assert_eq!(released.lease_duration_seconds, Some(1));
        assert_eq!(decide(Some(&released), "a", at(1)), Decision::Acquire);
        let empty = LeaseSpec { holder_identity: Some(String::new()), ..held_by("", 0, 15) };
        assert_eq!(decide(Some(&empty), "a", at(0)), Decision::Acquire);
        assert_eq!(decide(Some(&LeaseSpec::default()), "a", at(0)), Decision::Acquire);
    }

    #[test]
    fn a_holder_without_renew_time_or_duration_cannot_keep_it() {
        let no_duration = LeaseSpec { lease_duration_seconds: None, ..held_by("b", 0, 15) };
        assert_eq!(decide(Some(&no_duration), "a", at(0)), Decision::Acquire);
        let no_times = LeaseSpec { renew_time: None, acquire_time: None, ..held_by("b", 0, 15) };
        assert_eq!(decide(Some(&no_times), "a", at(0)), Decision::Acquire);
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
            decide(Some(&created), "b", at(14)),
            Decision::Wait { holder: "a".into(), expires: at(15) }
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
