//! A trace continues from the operator into the router: every router call is
//! a `router_call` span (method, member, attempt, outcome) under the caller's
//! span, and its request carries that very span's W3C `traceparent`, which the
//! simulator reads from each request.

mod support;

use opentelemetry::Value;
use opentelemetry::trace::{SpanId, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

use conveyor_etl_operator::router::{Router, RouterClient};
use conveyor_router_sim::{SimCluster, SimOptions};
use support::router_sim::{fast_options, node_addr};

/// `(trace id, parent span id)` of a `traceparent` value `00-<trace>-<span>-<flags>`.
fn parse(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "not a W3C traceparent: {traceparent:?}");
    assert_eq!(parts[0], "00");
    (parts[1].to_string(), parts[2].to_string())
}

fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.clone())
}

/// The client's call metrics in the text format, as the operator exports them.
fn encoded_metrics(client: &RouterClient) -> String {
    let mut registry = prometheus_client::registry::Registry::with_prefix("conveyor");
    client.metrics().register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

#[tokio::test]
async fn router_calls_carry_the_traceparent_of_their_own_span() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let nodes = (1..=3).map(|id| (u64::from(id), node_addr(71, id))).collect();
    let sim = SimCluster::start(nodes, SimOptions::default()).await.unwrap();
    let client = RouterClient::new(fast_options());
    let member = sim.endpoints()[0].clone();

    let mut traces = Vec::new();
    for round in 0..20 {
        exporter.reset();
        let reconcile = tracing::info_span!("reconcile");
        let caller = reconcile.context().span().span_context().clone();
        client.member_status(&member).instrument(reconcile).await.unwrap();
        let recorded = sim.traceparents("GetClusterStatus");
        let (trace, parent) = parse(recorded.last().expect("the simulator saw the call"));

        let spans = exporter.get_finished_spans().unwrap();
        let call = spans
            .iter()
            .find(|span| span.name == "router_call")
            .unwrap_or_else(|| panic!("round {round}: no router_call span among {spans:?}"));
        assert_eq!(call.parent_span_id, caller.span_id(), "round {round}: the call is a child of its caller");
        assert_eq!(call.span_context.trace_id(), caller.trace_id());
        assert_eq!(
            trace,
            caller.trace_id().to_string(),
            "round {round}: the call continues the caller's trace"
        );
        assert_eq!(
            parent,
            call.span_context.span_id().to_string(),
            "round {round}: the router's parent is the router_call span itself"
        );
        assert_ne!(call.span_context.span_id(), SpanId::INVALID);
        assert_eq!(attribute(call, "method"), Some("GetClusterStatus".into()));
        assert_eq!(attribute(call, "member"), Some(member.clone().into()));
        assert_eq!(attribute(call, "attempt"), Some(Value::I64(1)));
        assert_eq!(attribute(call, "outcome"), Some("ok".into()));
        traces.push(trace);
    }
    traces.dedup();
    assert_eq!(traces.len(), 20, "every reconcile is its own trace");
    let text = encoded_metrics(&client);
    assert!(
        text.contains(r#"conveyor_router_calls_total{method="GetClusterStatus",outcome="ok"} 20"#),
        "{text}"
    );
    assert!(
        text.contains(r#"conveyor_router_call_duration_seconds_count{method="GetClusterStatus"} 20"#),
        "{text}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn retried_calls_are_numbered_by_attempt_and_fail_with_their_outcome() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    // Nothing listens here: every attempt finds the member unreachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let client = RouterClient::new(support::router_sim::fast_options());
    let error = client
        .list_services(&[closed], conveyor_etl_operator::router::ServiceType::Unspecified)
        .instrument(tracing::info_span!("reconcile"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("attempt"), "{error}");

    let spans = exporter.get_finished_spans().unwrap();
    let mut attempts: Vec<i64> = spans
        .iter()
        .filter(|span| span.name == "router_call")
        .filter_map(|span| match attribute(span, "attempt") {
            Some(Value::I64(attempt)) => Some(attempt),
            _ => None,
        })
        .collect();
    attempts.dedup();
    assert!(attempts.len() >= 2 && attempts[0] == 1 && attempts[1] == 2, "attempts {attempts:?}");
    assert!(
        spans
            .iter()
            .filter(|span| span.name == "router_call")
            .all(|span| attribute(span, "outcome") == Some("unavailable".into())),
        "{spans:?}"
    );
    let calls = spans.iter().filter(|span| span.name == "router_call").count();
    let text = encoded_metrics(&client);
    let failed =
        format!(r#"conveyor_router_calls_total{{method="GetClusterStatus",outcome="unavailable"}} {calls}"#);
    assert!(text.contains(&failed), "{failed} not in {text}");
}

#[tokio::test]
async fn without_a_recorded_trace_nothing_is_sent() {
    // A subscriber without OpenTelemetry, set before any span: tracing caches
    // whether a span is enabled process-wide, and a thread with no subscriber
    // at all racing the other tests could have `router_call` cached as off.
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry());
    let sim = SimCluster::start(vec![(1, node_addr(72, 1))], SimOptions::default()).await.unwrap();
    let client = RouterClient::new(fast_options());
    client.member_status(&sim.endpoints()[0]).await.unwrap();
    assert_eq!(sim.traceparents("GetClusterStatus"), [""], "no tracer, no traceparent");
    sim.shutdown().await;
}
