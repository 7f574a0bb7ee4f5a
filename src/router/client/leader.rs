//! Leader routing: the leader cache, leader discovery and the bounded retry loop.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::connection::{ATTEMPT, lock};
use super::{MAX_CACHED, Members, Router, RouterClient};
use crate::router::error::{RouterError, service_of};
use crate::router::proto::router::ClusterHealth;

impl RouterClient {
    fn remember_leader(&self, key: &str, leader: &str) {
        let mut leaders = lock(&self.leaders);
        if leaders.len() >= MAX_CACHED && !leaders.contains_key(key) {
            leaders.clear();
        }
        leaders.insert(key.to_string(), leader.to_string());
    }

    fn forget_leader(&self, key: &str) {
        lock(&self.leaders).remove(key);
    }

    /// Runs `op` on the leader of `members`, retrying transient failures with
    /// backoff within the budget of [`ClientOptions`].
    pub(super) async fn on_leader<T, F, Fut>(
        &self,
        members: &Members,
        method: &'static str,
        op: F,
    ) -> Result<T, RouterError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, RouterError>>,
    {
        if members.is_empty() {
            return Err(RouterError::NoMembers);
        }
        let key = members_key(members);
        let started = Instant::now();
        let attempts = AtomicUsize::new(0);
        let budget = self.options.max_retry_time;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.options.min_backoff)
            .with_max_delay(self.options.max_backoff)
            .with_max_times(self.options.max_attempts.saturating_sub(1))
            .with_jitter();
        let result = (|| async {
            let attempt = attempts.fetch_add(1, Ordering::Relaxed) + 1;
            ATTEMPT.scope(attempt, self.attempt_on_leader(members, &key, method, &op)).await
        })
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|error: &RouterError| error.is_transient() && started.elapsed() < budget)
        .notify(|error, delay| tracing::debug!(method, %error, ?delay, "retrying router call"))
        .await;
        match result {
            Err(error) if error.is_transient() => Err(RouterError::Exhausted {
                attempts: attempts.load(Ordering::Relaxed),
                last: Box::new(error),
            }),
            other => other,
        }
    }

    /// One attempt: the cached or discovered leader, following a not-leader hint.
    async fn attempt_on_leader<T, F, Fut>(
        &self,
        members: &Members,
        key: &str,
        method: &'static str,
        op: &F,
    ) -> Result<T, RouterError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, RouterError>>,
    {
        let cached = lock(&self.leaders).get(key).cloned();
        let leader = match cached {
            Some(leader) => leader,
            None => match self.discover_leader(members).await {
                Ok(leader) => {
                    self.remember_leader(key, &leader);
                    leader
                }
                Err(RouterError::Unimplemented { .. }) if service_of(method) == "ServiceRegistry" => {
                    return self.try_members_in_turn(members, key, op).await;
                }
                Err(error) => return Err(error),
            },
        };
        self.call_following_hint(key, &leader, op).await
    }

    /// Calls `op` on `member`; when it answers "not leader" and names the leader,
    /// calls the leader at once. Remembers whoever accepted; forgets the cached
    /// leader on any transient failure.
    async fn call_following_hint<T, F, Fut>(&self, key: &str, member: &str, op: &F) -> Result<T, RouterError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, RouterError>>,
    {
        let (target, result) = match op(member.to_string()).await {
            Err(RouterError::NotLeader { leader: Some(hint), .. }) if hint != member => {
                tracing::debug!(member, leader = %hint, "following the not-leader hint");
                let result = op(hint.clone()).await;
                (hint, result)
            }
            other => (member.to_string(), other),
        };
        match &result {
            Ok(_) => self.remember_leader(key, &target),
            Err(error) if error.is_transient() => self.forget_leader(key),
            Err(_) => {}
        }
        result
    }

    /// For routers without `GetClusterStatus`: each member in turn until one accepts.
    async fn try_members_in_turn<T, F, Fut>(
        &self,
        members: &Members,
        key: &str,
        op: &F,
    ) -> Result<T, RouterError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, RouterError>>,
    {
        let mut last = RouterError::NoMembers;
        for member in members {
            match self.call_following_hint(key, member, op).await {
                Err(error) if error.is_transient() => last = error,
                other => return other,
            }
        }
        Err(last)
    }

    /// Asks every member for its cluster status at once and returns the leader's
    /// endpoint: the first member that says it is the leader, or the address of the
    /// leader a member names (preferring one of `members`). Without a leader the
    /// error says why: no quorum, an election in progress, `RouterAdmin` not
    /// served, or the members could not be reached.
    async fn discover_leader(&self, members: &Members) -> Result<String, RouterError> {
        let mut answers: FuturesUnordered<_> =
            members.iter().map(|member| async move { (member, self.member_status(member).await) }).collect();
        let mut named_leader: Option<String> = None;
        let mut no_quorum = None;
        let mut electing = None;
        let mut unimplemented = None;
        let mut unreachable = None;
        while let Some((member, answer)) = answers.next().await {
            match answer {
                // A member that reports no quorum may still name itself or an
                // old leader (cut off from the others, it keeps its old term):
                // never trust its leader.
                Ok(status) if status.health() == ClusterHealth::Unhealthy => {
                    no_quorum.get_or_insert(RouterError::NoQuorum {
                        member: member.clone(),
                        message: "member reports CLUSTER_HEALTH_UNHEALTHY".to_string(),
                    });
                }
                Ok(status) if status.leader_id != 0 && status.node_id == status.leader_id => {
                    return Ok(member.clone());
                }
                Ok(status) if status.leader_id != 0 => {
                    let address = status
                        .nodes
                        .iter()
                        .find(|node| node.node_id == status.leader_id && !node.address.is_empty())
                        .map(|node| node.address.clone());
                    if let Some(address) = address {
                        if members.contains(&address) {
                            return Ok(address);
                        }
                        named_leader.get_or_insert(address);
                    }
                }
                Ok(_) => {
                    electing.get_or_insert(RouterError::NotLeader { member: member.clone(), leader: None });
                }
                Err(error @ RouterError::Unimplemented { .. }) => unimplemented = Some(error),
                Err(error) => unreachable = Some(error),
            }
        }
        if let Some(address) = named_leader {
            return Ok(address);
        }
        Err(no_quorum.or(electing).or(unimplemented).or(unreachable).unwrap_or(RouterError::NoMembers))
    }
}

/// The leader-cache key of a member set: order-independent.
pub(super) fn members_key(members: &Members) -> String {
    let mut sorted: Vec<&str> = members.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.join(",")
}
