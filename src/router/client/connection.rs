//! The channel cache and single deadline-bounded calls (`unary`), with their helpers.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tracing::Instrument;

use super::{MAX_CACHED, RouterClient};
use crate::router::error::{RouterError, from_status};

impl RouterClient {
    pub(super) fn channel(&self, member: &str) -> Result<Channel, RouterError> {
        let mut channels = lock(&self.channels);
        if let Some(channel) = channels.get(member) {
            return Ok(channel.clone());
        }
        let invalid = |message: String| RouterError::InvalidMember { member: member.to_string(), message };
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{member}"))
            .map_err(|error| invalid(error.to_string()))?
            .connect_timeout(self.options.connect_timeout)
            .timeout(self.options.call_timeout)
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        if channels.len() >= MAX_CACHED {
            channels.clear();
        }
        channels.insert(member.to_string(), channel.clone());
        Ok(channel)
    }

    pub(super) fn evict_channel(&self, member: &str) {
        lock(&self.channels).remove(member);
    }

    /// One unary call to `member`, bounded by the call deadline, as a
    /// `router_call` span (method, member, attempt, outcome) and in the call
    /// metrics. A member that was unreachable or timed out loses its channel,
    /// so the next call reconnects.
    pub(super) async fn unary<T, F, Fut>(
        &self,
        member: &str,
        method: &'static str,
        call: F,
    ) -> Result<T, RouterError>
    where
        F: FnOnce(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let attempt = ATTEMPT.try_with(|attempt| *attempt).unwrap_or(1) as i64;
        let span =
            tracing::info_span!("router_call", method, member, attempt, outcome = tracing::field::Empty);
        let started = Instant::now();
        let result = self.unary_in_span(member, method, call).instrument(span.clone()).await;
        let outcome = result.as_ref().map_or_else(RouterError::label, |_| "ok");
        span.record("outcome", outcome);
        self.metrics.observe(method, outcome, started.elapsed());
        result
    }

    async fn unary_in_span<T, F, Fut>(
        &self,
        member: &str,
        method: &'static str,
        call: F,
    ) -> Result<T, RouterError>
    where
        F: FnOnce(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let channel = self.channel(member)?;
        let timeout = self.options.call_timeout;
        let error = match tokio::time::timeout(timeout, call(channel, timeout)).await {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status)) => from_status(member, method, timeout, &status),
            Err(_elapsed) => RouterError::DeadlineExceeded { member: member.to_string(), method, timeout },
        };
        if matches!(error, RouterError::Unavailable { .. } | RouterError::DeadlineExceeded { .. }) {
            self.evict_channel(member);
        }
        tracing::debug!(member, method, %error, "router call failed");
        Err(error)
    }
}

tokio::task_local! {
    /// Which attempt of a retried operation the calls made now belong to (1 when not retried).
    pub(super) static ATTEMPT: usize;
}

/// A request carrying `grpc-timeout`, so the router can give up when we do,
/// and the trace context of the call's span (`traceparent`), so the trace
/// continues into the router.
pub(super) fn with_deadline<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    crate::telemetry::inject_context(request.metadata_mut());
    request
}

/// Locks a cache; a panic elsewhere while holding it leaves a map that is still valid.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
