//! A trace continues from the operator into the router: every router call
//! carries the W3C `traceparent` of a child span of the caller's span, and the
//! simulator reads it from each request.

mod support;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

use conveyor_etl_operator::router::{Router, RouterClient};
use conveyor_etl_operator::sim::{SimCluster, SimOptions};
use support::router_sim::{fast_options, node_addr};

/// `(trace id, parent span id)` of a `traceparent` value `00-<trace>-<span>-<flags>`.
fn parse(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "not a W3C traceparent: {traceparent:?}");
    assert_eq!(parts[0], "00");
    (parts[1].to_string(), parts[2].to_string())
}

#[tokio::test]
async fn router_calls_carry_the_trace_of_the_span_that_made_them() {
    let provider = SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let nodes = (1..=3).map(|id| (u64::from(id), node_addr(71, id))).collect();
    let sim = SimCluster::start(nodes, SimOptions::default()).await.unwrap();
    let client = RouterClient::new(fast_options());
    let member = sim.endpoints()[0].clone();

    let mut traces = Vec::new();
    for _ in 0..2 {
        let reconcile = tracing::info_span!("reconcile");
        let context = reconcile.context();
        let ids = context.span().span_context().clone();
        client.member_status(&member).instrument(reconcile).await.unwrap();
        let recorded = sim.traceparents("GetClusterStatus");
        let (trace, parent) = parse(recorded.last().expect("the simulator saw the call"));
        assert_eq!(trace, ids.trace_id().to_string(), "the call continues the caller's trace");
        assert_ne!(parent, "0000000000000000", "a real parent span");
        traces.push(trace);
    }
    assert_ne!(traces[0], traces[1], "two reconciles are two traces");
    sim.shutdown().await;
}

#[tokio::test]
async fn without_a_recorded_trace_nothing_is_sent() {
    let sim = SimCluster::start(vec![(1, node_addr(72, 1))], SimOptions::default()).await.unwrap();
    let client = RouterClient::new(fast_options());
    client.member_status(&sim.endpoints()[0]).await.unwrap();
    assert_eq!(sim.traceparents("GetClusterStatus"), [""], "no tracer, no traceparent");
    sim.shutdown().await;
}
