//! Calls to one member's own registry, for routers whose registry is per
//! node and leased (the public router): registering and deregistering there
//! (no leader routing, no retry: the lease keeper retries), and its
//! `Heartbeat` stream.

use std::time::Instant;

use futures::StreamExt;
use futures::channel::mpsc;
use futures::stream::BoxStream;

use super::RouterClient;
use crate::router::error::{RouterError, from_status};
use crate::router::proto::registry::service_registry_client::ServiceRegistryClient;
use crate::router::proto::registry::{HeartbeatRequest, HeartbeatResponse};

/// The answers of a heartbeat stream, one per request, in order.
pub type HeartbeatAnswers = BoxStream<'static, Result<HeartbeatResponse, RouterError>>;

impl RouterClient {
    /// Opens `member`'s `Heartbeat` stream: what is sent on `requests` goes
    /// out, the answers come back. Opening is bounded by the call deadline;
    /// the stream itself lives until either side ends it.
    pub(super) async fn open_heartbeat(
        &self,
        member: &str,
        requests: mpsc::UnboundedReceiver<HeartbeatRequest>,
    ) -> Result<HeartbeatAnswers, RouterError> {
        let channel = self.channel(member)?;
        let timeout = self.options.call_timeout;
        let started = Instant::now();
        let mut request = tonic::Request::new(requests);
        crate::telemetry::inject_context(request.metadata_mut());
        let opened =
            tokio::time::timeout(timeout, ServiceRegistryClient::new(channel).heartbeat(request)).await;
        let result = match opened {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(from_status(member, "Heartbeat", timeout, &status)),
            Err(_elapsed) => Err(RouterError::DeadlineExceeded {
                member: member.to_string(),
                method: "Heartbeat",
                timeout,
            }),
        };
        let outcome = result.as_ref().map_or_else(RouterError::label, |_| "ok");
        self.metrics.observe("Heartbeat", outcome, started.elapsed());
        if matches!(result, Err(RouterError::Unavailable { .. } | RouterError::DeadlineExceeded { .. })) {
            self.evict_channel(member);
        }
        let member = member.to_string();
        let answers = result?
            .map(move |answer| answer.map_err(|status| from_status(&member, "Heartbeat", timeout, &status)));
        Ok(answers.boxed())
    }
}
