//! One simulated node's gRPC server: its own listener (SO_REUSEADDR, so a restart
//! can bind the same address at once), serving `RouterAdmin` and `ServiceRegistry`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use conveyor_router_contract::proto::registry::service_registry_server::ServiceRegistryServer;
use conveyor_router_contract::proto::router::router_admin_server::RouterAdminServer;

use super::admin::AdminService;
use super::cluster::Shared;
use super::conn::Connections;
use super::registry::RegistryService;

/// A running node server. [`NodeServer::stop`] closes the listener (new
/// connections are refused) and cuts the open connections.
#[derive(Debug)]
pub(crate) struct NodeServer {
    task: JoinHandle<()>,
    connections: Arc<Connections>,
}

/// The node's span for one request, continuing the caller's trace; the
/// caller's `traceparent` is recorded so tests can prove the link.
fn handling_span(node: u64, request: &http::Request<()>, shared: &Shared) -> tracing::Span {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let method = request.uri().path().rsplit('/').next().unwrap_or_default().to_owned();
    let traceparent = request.headers().get("traceparent").and_then(|value| value.to_str().ok());
    shared.record_traceparent(&method, traceparent);
    let span = tracing::info_span!("router_sim_call", node, method);
    let _ = span.set_parent(conveyor_telemetry::extract_context(request.headers()));
    span
}

impl NodeServer {
    /// Binds `addr` (port 0: any free port) and serves node `id`. Returns the
    /// server and the address it listens on.
    pub fn start(id: u64, addr: SocketAddr, shared: Arc<Shared>) -> io::Result<(NodeServer, SocketAddr)> {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.set_nodelay(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(1024)?;
        let local = listener.local_addr()?;

        let connections = Arc::new(Connections::default());
        let tracked = connections.clone();
        let incoming = TcpListenerStream::new(listener).map(move |accepted| {
            let stream = accepted?;
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(node = id, %error, "could not set TCP_NODELAY");
            }
            Ok::<_, io::Error>(tracked.track(stream))
        });

        let admin = RouterAdminServer::new(AdminService::new(id, shared.clone()));
        let recorder = shared.clone();
        let registry = ServiceRegistryServer::new(RegistryService::new(id, shared));
        let task = tokio::spawn(async move {
            let served = Server::builder()
                .trace_fn(move |request| handling_span(id, request, &recorder))
                .add_service(admin)
                .add_service(registry)
                .serve_with_incoming(incoming)
                .await;
            if let Err(error) = served {
                tracing::warn!(node = id, %error, "simulated node stopped serving");
            }
        });
        tracing::debug!(node = id, %local, "simulated node listening");
        Ok((NodeServer { task, connections }, local))
    }

    /// Stops accepting (the listener is closed when this returns, so new
    /// connections are refused) and cuts every open connection.
    pub async fn stop(self) {
        self.task.abort();
        // Wait for the task to drop the listener; its result is only "cancelled".
        let _ = self.task.await;
        self.connections.kill_all();
    }

    /// Like [`NodeServer::stop`] without waiting: the listener closes when the
    /// aborted task is next polled.
    pub fn abort(self) {
        self.task.abort();
        self.connections.kill_all();
    }
}
