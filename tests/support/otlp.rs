//! Real OTLP trace receivers for tests: gRPC (the opentelemetry-proto trace
//! service over tonic) and HTTP/protobuf (axum, `POST /v1/traces`), both
//! keeping every span they receive.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

/// One span as it arrived, ids in lowercase hex.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    pub attributes: HashMap<String, String>,
    /// Names of the span's events (e.g. a log line inside it).
    pub events: Vec<String>,
    /// Attributes of the resource that sent it (`service.name`, ...).
    pub resource: HashMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(list: Vec<KeyValue>) -> HashMap<String, String> {
    list.into_iter()
        .filter_map(|kv| {
            let text = match kv.value?.value? {
                Value::StringValue(text) => text,
                Value::IntValue(n) => n.to_string(),
                Value::BoolValue(b) => b.to_string(),
                Value::DoubleValue(x) => x.to_string(),
                _ => return None,
            };
            Some((kv.key, text))
        })
        .collect()
}

/// Every span received so far; cheap to clone.
#[derive(Clone, Default)]
pub struct Spans(Arc<Mutex<Vec<ReceivedSpan>>>);

impl Spans {
    fn add(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.0.lock().unwrap();
        for resource_spans in request.resource_spans {
            let resource = attributes(resource_spans.resource.map(|r| r.attributes).unwrap_or_default());
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(ReceivedSpan {
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        attributes: attributes(span.attributes),
                        events: span.events.into_iter().map(|e| e.name).collect(),
                        resource: resource.clone(),
                    });
                }
            }
        }
    }

    pub fn all(&self) -> Vec<ReceivedSpan> {
        self.0.lock().unwrap().clone()
    }
}

struct GrpcReceiver(Spans);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// An OTLP/gRPC receiver on loopback: its address and what it receives.
pub async fn grpc_receiver() -> (SocketAddr, Spans) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let spans = Spans::default();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(GrpcReceiver(spans.clone())))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (address, spans)
}

/// An OTLP/HTTP receiver (`application/x-protobuf` on `/v1/traces`) on
/// loopback: its address and what it receives.
pub async fn http_receiver() -> (SocketAddr, Spans) {
    use axum::http::{StatusCode, header};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let spans = Spans::default();
    let received = spans.clone();
    let export = move |body: axum::body::Bytes| async move {
        match ExportTraceServiceRequest::decode(body) {
            Ok(request) => {
                received.add(request);
                let reply = ExportTraceServiceResponse { partial_success: None }.encode_to_vec();
                (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-protobuf")], reply)
            }
            Err(_) => {
                (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/plain")], b"bad protobuf".to_vec())
            }
        }
    };
    let app = axum::Router::new().route("/v1/traces", axum::routing::post(export));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, spans)
}
