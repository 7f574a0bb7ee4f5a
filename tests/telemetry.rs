//! Traces leave the real binary over OTLP/gRPC: a reconcile of a router
//! cluster arrives at a collector as a span carrying its event and phase.

mod support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tonic::{Request, Response, Status};

use support::{ControlPlane, eventually, install_crds, kubectl_ok, repo_path};

/// Span name → its string attributes, as received.
type Received = Arc<Mutex<Vec<(String, HashMap<String, String>)>>>;

struct Collector {
    received: Received,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut received = self.received.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let attributes = span
                        .attributes
                        .into_iter()
                        .filter_map(|kv| match kv.value?.value? {
                            Value::StringValue(text) => Some((kv.key, text)),
                            _ => None,
                        })
                        .collect();
                    received.push((span.name, attributes));
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reconciles_are_exported_as_otlp_spans() {
    let plane = ControlPlane::start();
    install_crds(&plane);

    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let collector = Collector { received: received.clone() };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let mut operator = Command::new(env!("CARGO_BIN_EXE_conveyor-etl-operator"))
        .env("KUBECONFIG", &plane.kubeconfig)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{address}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("CONVEYOR_HTTP_ADDRESS", "127.0.0.1:0")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seed = repo_path("deploy/examples/seed.yaml");
    kubectl_ok(&plane, &["apply", "-n", "default", "-f", seed.to_str().unwrap()]);

    let span = eventually(Duration::from_secs(60), "a reconcile span at the collector", || async {
        let received = received.lock().unwrap();
        received
            .iter()
            .find(|(name, attributes)| name == "reconcile_router_cluster" && attributes.contains_key("phase"))
            .cloned()
    })
    .await;
    let _ = operator.kill();
    let _ = operator.wait();

    let attributes = span.1;
    assert_eq!(attributes.get("name").map(String::as_str), Some("my-cluster"));
    assert_eq!(attributes.get("namespace").map(String::as_str), Some("default"));
    let event = attributes.get("event").map(String::as_str).unwrap_or_default();
    assert!(["NotDeployed", "PodsStarting"].contains(&event), "unexpected event {attributes:?}");
    assert!(
        ["Provisioning", "RaftForming", "Pending"].contains(&attributes["phase"].as_str()),
        "unexpected phase {attributes:?}"
    );
}
