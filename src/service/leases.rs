//! Registrations on routers whose registry is per member and leased (the
//! public router: in memory, outside Raft, each registration holding a 30 s
//! lease renewed by `Heartbeat`). Whether a cluster's router is one is asked
//! once per member set: its `Heartbeat` either opens or answers UNIMPLEMENTED.
//!
//! Per cluster, [`Leases`] holds the registrations this operator keeps there
//! and, per member, one task with one heartbeat stream carrying all of them.
//! Each round the task registers on its member whatever the member does not
//! hold as kept (new, changed, or answered `acknowledged=false`, as after the
//! member restarted), renews every other lease, and records when each was
//! last renewed; rounds are a third of a lease apart. A broken stream is
//! reopened after a jittered backoff capped at a third of a lease. Services
//! are assessed from the record ([`Leases::view`]), which moves with every
//! heartbeat while what a user reads (alive on which members) does not.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use futures::channel::mpsc;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::assess::differences;
use crate::router::proto::registry::HeartbeatRequest;
use crate::router::{RegisterRequest, Router, RouterError};

/// The lease assumed until a member's Register answer tells it (the public router's).
const DEFAULT_LEASE: Duration = Duration::from_secs(30);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one member holds of what this operator registered there.
#[derive(Debug, Default)]
struct Held {
    /// The member's lease, from its Register answers.
    lease: Option<Duration>,
    /// Per service id: the request registered and when its lease was last granted or renewed.
    renewed: HashMap<String, (RegisterRequest, Instant)>,
    registration_ids: HashMap<String, String>,
}

impl Held {
    fn lease(&self) -> Duration {
        self.lease.unwrap_or(DEFAULT_LEASE)
    }

    fn alive(&self, service_id: &str, request: &RegisterRequest, now: Instant) -> bool {
        self.renewed.get(service_id).is_some_and(|(held, renewed)| {
            held == request && now.saturating_duration_since(*renewed) <= self.lease()
        })
    }
}

struct Member {
    task: JoinHandle<()>,
    held: Arc<Mutex<Held>>,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Cluster {
    kept: watch::Sender<BTreeMap<String, RegisterRequest>>,
    /// Woken after every round of every member's task.
    rounds: Arc<Notify>,
    /// When each registration was first kept.
    since: HashMap<String, Instant>,
    members: BTreeMap<String, Member>,
}

/// What the operator knows of one service's leases on a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseView {
    /// The keeper holds this very request for the service.
    pub kept: bool,
    /// Members (endpoints) where its lease is not alive.
    pub lapsed: Vec<String>,
    pub members: usize,
    /// Less than a lease since it was first kept (still being registered).
    pub first_lease: bool,
    /// The registration id a member gave it.
    pub registration_id: Option<String>,
}

/// The leases of every cluster with a leased registry (see the module docs).
pub struct Leases {
    router: Arc<dyn Router>,
    clusters: Mutex<HashMap<String, Cluster>>,
    /// Whether each member set's router serves `Heartbeat`.
    modes: Mutex<HashMap<String, bool>>,
}

impl Leases {
    pub fn new(router: Arc<dyn Router>) -> Leases {
        Leases { router, clusters: Mutex::default(), modes: Mutex::default() }
    }

    /// Whether the router of `members` serves `Heartbeat` (so its registry
    /// is per member and leased): asked of one member after another until
    /// one answers, once per member set.
    pub async fn serves_heartbeat(&self, members: &[String]) -> Result<bool, RouterError> {
        let key = members_key(members);
        if let Some(known) = lock(&self.modes).get(&key) {
            return Ok(*known);
        }
        let mut last = RouterError::NoMembers;
        for member in members {
            let (_requests, idle) = mpsc::unbounded();
            let served = match self.router.heartbeat(member, idle).await {
                Ok(_) => true,
                Err(RouterError::Unimplemented { .. }) => false,
                Err(error) => {
                    last = error;
                    continue;
                }
            };
            tracing::info!(members = %key, leased = served, "asked the router whether it serves Heartbeat");
            lock(&self.modes).insert(key, served);
            return Ok(served);
        }
        Err(last)
    }

    /// Keeps `request` registered on every one of `members` of cluster `key`
    /// (no router call here: the members' tasks register and renew). Members
    /// no longer listed are let go.
    pub fn keep(&self, key: &str, members: &[String], request: &RegisterRequest) {
        let service_id = service_id_of(request);
        let mut clusters = lock(&self.clusters);
        let cluster = clusters.entry(key.to_owned()).or_insert_with(|| Cluster {
            kept: watch::channel(BTreeMap::new()).0,
            rounds: Arc::default(),
            since: HashMap::new(),
            members: BTreeMap::new(),
        });
        cluster.kept.send_if_modified(|kept| {
            if kept.get(&service_id) == Some(request) {
                return false;
            }
            kept.insert(service_id.clone(), request.clone());
            true
        });
        cluster.since.entry(service_id).or_insert_with(Instant::now);
        cluster.members.retain(|member, _| members.contains(member));
        for member in members {
            if !cluster.members.contains_key(member) {
                let held = Arc::new(Mutex::new(Held::default()));
                let task = tokio::spawn(keep_member(
                    self.router.clone(),
                    member.clone(),
                    cluster.kept.subscribe(),
                    held.clone(),
                    cluster.rounds.clone(),
                ));
                cluster.members.insert(member.clone(), Member { task, held });
            }
        }
    }

    /// Waits (at most `deadline`) until `request`'s lease is known alive on
    /// every member of cluster `key`, woken by the members' rounds.
    pub async fn settle(&self, key: &str, request: &RegisterRequest, deadline: Duration) {
        let Some(rounds) = lock(&self.clusters).get(key).map(|cluster| cluster.rounds.clone()) else {
            return;
        };
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let round = rounds.notified();
            tokio::pin!(round);
            round.as_mut().enable();
            if self.view(key, request).lapsed.is_empty() {
                return;
            }
            if tokio::time::timeout_at(until, round).await.is_err() {
                return;
            }
        }
    }

    /// Whether cluster `key`'s keeper keeps this very `request`.
    pub fn keeps(&self, key: &str, request: &RegisterRequest) -> bool {
        let clusters = lock(&self.clusters);
        clusters
            .get(key)
            .is_some_and(|cluster| cluster.kept.borrow().get(&service_id_of(request)) == Some(request))
    }

    /// What is known of `request`'s leases on cluster `key`.
    pub fn view(&self, key: &str, request: &RegisterRequest) -> LeaseView {
        let service_id = service_id_of(request);
        let clusters = lock(&self.clusters);
        let Some(cluster) = clusters.get(key) else {
            return LeaseView {
                kept: false,
                lapsed: Vec::new(),
                members: 0,
                first_lease: false,
                registration_id: None,
            };
        };
        let now = Instant::now();
        let kept = cluster.kept.borrow().get(&service_id) == Some(request);
        let mut lapsed = Vec::new();
        let (mut registration_id, mut lease) = (None, DEFAULT_LEASE);
        for (member, state) in &cluster.members {
            let held = lock(&state.held);
            lease = held.lease();
            if !held.alive(&service_id, request, now) {
                lapsed.push(member.clone());
            }
            registration_id = registration_id.or_else(|| held.registration_ids.get(&service_id).cloned());
        }
        let first_lease =
            cluster.since.get(&service_id).is_some_and(|since| now.saturating_duration_since(*since) < lease);
        LeaseView { kept, lapsed, members: cluster.members.len(), first_lease, registration_id }
    }

    /// Stops renewing `service_id` on cluster `key` and deregisters it from
    /// every member. A member that cannot be reached is left to let the lease
    /// lapse (no one renews it now); any other refusal is returned.
    pub async fn release(&self, key: &str, members: &[String], service_id: &str) -> Result<(), RouterError> {
        {
            let mut clusters = lock(&self.clusters);
            if let Some(cluster) = clusters.get_mut(key) {
                cluster.kept.send_if_modified(|kept| kept.remove(service_id).is_some());
                cluster.since.remove(service_id);
                for member in cluster.members.values() {
                    lock(&member.held).renewed.remove(service_id);
                }
                if cluster.kept.borrow().is_empty() {
                    clusters.remove(key);
                }
            }
        }
        let answers = futures::future::join_all(
            members.iter().map(|member| self.router.deregister_on_member(member, service_id)),
        )
        .await;
        for (member, answer) in members.iter().zip(answers) {
            match answer {
                Ok(()) => {}
                Err(error) if error.is_transient() => {
                    tracing::info!(%member, service_id, %error, "member unreachable; its lease of the registration lapses unrenewed");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

fn service_id_of(request: &RegisterRequest) -> String {
    request.identity.as_ref().map(|identity| identity.service_id.clone()).unwrap_or_default()
}

fn members_key(members: &[String]) -> String {
    let mut sorted: Vec<&str> = members.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.join(",")
}

/// Keeps the registrations of `kept` alive on `member` until the cluster's
/// keeper lets it go (its task is aborted, or `kept` closes).
async fn keep_member(
    router: Arc<dyn Router>,
    member: String,
    mut kept: watch::Receiver<BTreeMap<String, RegisterRequest>>,
    held: Arc<Mutex<Held>>,
    rounds: Arc<Notify>,
) {
    let mut backoff = reconnect_backoff(DEFAULT_LEASE);
    loop {
        let error = match renew_over_one_stream(router.as_ref(), &member, &mut kept, &held, &rounds).await {
            Ok(()) => return,
            Err((error, renewed)) => {
                if renewed {
                    backoff = reconnect_backoff(lock(&held).lease());
                }
                error
            }
        };
        if matches!(error, RouterError::Unimplemented { .. }) {
            tracing::warn!(%member, %error, "the member stopped serving Heartbeat; its leases are no longer renewed");
            return;
        }
        let delay = backoff.next().unwrap_or(DEFAULT_LEASE / 3);
        tracing::debug!(%member, %error, ?delay, "heartbeat stream failed; reopening");
        tokio::time::sleep(delay).await; // the retry delay, jittered and capped
    }
}

/// Reconnect delays: from 100 ms, doubling, jittered, capped at a third of a lease.
fn reconnect_backoff(lease: Duration) -> impl Iterator<Item = Duration> + Send {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(lease / 3)
        .with_jitter()
        .without_max_times()
        .build()
}

/// One stream's life: rounds of register-what-is-missing and renew-the-rest,
/// a third of a lease apart or at once when the kept set changes. `Ok` when
/// the keeper let go; otherwise the error and whether any round succeeded.
async fn renew_over_one_stream(
    router: &dyn Router,
    member: &str,
    kept: &mut watch::Receiver<BTreeMap<String, RegisterRequest>>,
    held: &Mutex<Held>,
    rounds: &Notify,
) -> Result<(), (RouterError, bool)> {
    let (requests, outgoing) = mpsc::unbounded();
    let mut answers = router.heartbeat(member, outgoing).await.map_err(|error| (error, false))?;
    let mut renewed_once = false;
    loop {
        let wanted = kept.borrow_and_update().clone();
        lock(held).renewed.retain(|service_id, _| wanted.contains_key(service_id));
        let unknown: Vec<&String> = wanted
            .iter()
            .filter(|(service_id, request)| {
                lock(held).renewed.get(*service_id).is_none_or(|(registered, _)| registered != *request)
            })
            .map(|(service_id, _)| service_id)
            .collect();
        // What the member holds already (after an operator restart, or a new
        // service the member has from before) is renewed, not registered again.
        let listed = if unknown.is_empty() {
            Vec::new()
        } else {
            router.list_services_on_member(member).await.map_err(|error| (error, renewed_once))?
        };
        let mut to_renew: Vec<&String> = wanted.keys().filter(|id| !unknown.contains(id)).collect();
        for service_id in unknown {
            let request = &wanted[service_id];
            let holds = listed.iter().any(|service| {
                service.identity.as_ref().is_some_and(|identity| &identity.service_id == service_id)
                    && differences(service, request).is_empty()
            });
            if holds {
                to_renew.push(service_id);
            } else {
                register(router, member, request, held).await.map_err(|error| (error, renewed_once))?;
            }
        }
        for service_id in &to_renew {
            let registration_id = lock(held).registration_ids.get(*service_id).cloned().unwrap_or_default();
            let request =
                HeartbeatRequest { service_id: (*service_id).clone(), registration_id, ..Default::default() };
            if requests.unbounded_send(request).is_err() {
                return Err((
                    RouterError::Unavailable {
                        member: member.to_owned(),
                        message: "the heartbeat stream closed".into(),
                    },
                    renewed_once,
                ));
            }
        }
        let wait = lock(held).lease() / 3;
        for service_id in to_renew {
            let answer = match tokio::time::timeout(wait, answers.next()).await {
                Ok(Some(Ok(answer))) => answer,
                Ok(Some(Err(error))) => return Err((error, renewed_once)),
                Ok(None) | Err(_) => {
                    let message = "the heartbeat stream ended or went silent".to_owned();
                    return Err((
                        RouterError::Unavailable { member: member.to_owned(), message },
                        renewed_once,
                    ));
                }
            };
            if answer.acknowledged {
                let mut held = lock(held);
                // The public router answers its lease as the next deadline.
                if let Some(lease) = answer.next_heartbeat_deadline.and_then(|d| duration(d.seconds, d.nanos))
                {
                    held.lease = Some(lease);
                }
                held.renewed.insert(service_id.clone(), (wanted[service_id].clone(), Instant::now()));
            } else {
                // The member holds no such registration (it restarted, or the lease lapsed).
                tracing::info!(%member, %service_id, "the member does not hold the registration; registering again");
                lock(held).renewed.remove(service_id);
                register(router, member, &wanted[service_id], held)
                    .await
                    .map_err(|error| (error, renewed_once))?;
            }
        }
        renewed_once = true;
        rounds.notify_waiters();
        // A third of the lease, as this round's answers told it.
        let pace = lock(held).lease() / 3;
        tokio::select! {
            _ = tokio::time::sleep(pace) => {} // the renewal pace
            changed = kept.changed() => if changed.is_err() { return Ok(()) },
        }
    }
}

async fn register(
    router: &dyn Router,
    member: &str,
    request: &RegisterRequest,
    held: &Mutex<Held>,
) -> Result<(), RouterError> {
    let response = router.register_on_member(member, request.clone()).await?;
    let service_id = service_id_of(request);
    let mut held = lock(held);
    if let Some(lease) = response.lease_ttl.and_then(|d| duration(d.seconds, d.nanos)) {
        held.lease = Some(lease);
    }
    held.registration_ids.insert(service_id.clone(), response.registration_id);
    held.renewed.insert(service_id, (request.clone(), Instant::now()));
    Ok(())
}

/// A positive protobuf duration.
fn duration(seconds: i64, nanos: i32) -> Option<Duration> {
    let duration = Duration::new(u64::try_from(seconds).ok()?, u32::try_from(nanos).ok()?);
    (!duration.is_zero()).then_some(duration)
}
