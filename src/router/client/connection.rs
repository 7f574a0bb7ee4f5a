//! The channel cache and single deadline-bounded calls (`unary`), with their helpers.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

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

    /// One unary call to `member`, bounded by the call deadline. A member that was
    /// unreachable or timed out loses its channel, so the next call reconnects.
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
        let span = tracing::info_span!("router_call", method, member, outcome = tracing::field::Empty);
        let channel = self.channel(member)?;
        let timeout = self.options.call_timeout;
        let answer = tokio::time::timeout(timeout, call(channel, timeout)).instrument(span.clone()).await;
        let error = match answer {
            Ok(Ok(response)) => {
                span.record("outcome", "ok");
                return Ok(response.into_inner());
            }
            Ok(Err(status)) => from_status(member, method, timeout, &status),
            Err(_elapsed) => RouterError::DeadlineExceeded { member: member.to_string(), method, timeout },
        };
        span.record("outcome", error.label());
        if matches!(error, RouterError::Unavailable { .. } | RouterError::DeadlineExceeded { .. }) {
            self.evict_channel(member);
        }
        tracing::debug!(member, method, %error, "router call failed");
        Err(error)
    }
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
