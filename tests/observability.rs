//! The operator binary's telemetry end to end, on the real control plane:
//! a transition's Event and log line name the trace that made it, and that
//! trace reaches a real OTLP receiver (gRPC or HTTP/protobuf); `/metrics`
//! parses and tells the transitions and the objects per phase as they
//! change; a collector that is down costs one warning, not reconciles; no
//! exporter means no trace id; a watch that fails is counted; the seed's
//! pipeline submission is one trace from its reconcile into the router.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;

use support::kubelet::FakeKubelet;
use support::operator_process::OperatorProcess;
use support::otlp::{self, ReceivedSpan, Spans};
use support::{ControlPlane, eventually, kubectl_ok, repo_path, shared_with_crds, test_namespace};

const DEADLINE: Duration = Duration::from_secs(60);
/// Formation, registration and submission of the whole seed, on a shared machine.
const SEED_READY: Duration = Duration::from_secs(180);

/// Creates a fresh namespace on the shared control plane.
async fn namespace(plane: &ControlPlane, prefix: &str) -> String {
    test_namespace(&plane.client().await, prefix).await
}

fn apply_seed(plane: &ControlPlane, namespace: &str) {
    let seed = repo_path("deploy/examples/seed.yaml");
    kubectl_ok(plane, &["apply", "-n", namespace, "-f", seed.to_str().unwrap()]);
}

/// The notes of the Events about router cluster `name`.
async fn cluster_event_notes(plane: &ControlPlane, namespace: &str, name: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(plane.client().await, namespace);
    api.list(&ListParams::default())
        .await
        .map(|list| list.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|event| {
            event.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("EtlRouterCluster") && r.name.as_deref() == Some(name)
            })
        })
        .filter_map(|event| event.note)
        .collect()
}

/// The trace id a note ends with: `... (trace <32 hex digits>)`.
fn trace_id_of(note: &str) -> Option<String> {
    let id = note.strip_suffix(')')?.rsplit_once(" (trace ")?.1;
    (id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())).then(|| id.to_owned())
}

/// The first note about `name`'s move into Provisioning, once published.
async fn provisioning_note(plane: &ControlPlane, namespace: &str) -> String {
    eventually(DEADLINE, "the Event of the move to Provisioning", || async {
        cluster_event_notes(plane, namespace, "my-cluster")
            .await
            .into_iter()
            .find(|n| n.contains("→ Provisioning"))
    })
    .await
}

/// Parses the Prometheus/OpenMetrics text format strictly enough to catch
/// a broken exposition: `# HELP`/`# TYPE`/`# UNIT` comments, samples
/// `name{label="value",...} number`, and `# EOF` last. Returns series → value.
fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "the exposition ends with # EOF");
    let valid_name = |name: &str| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for line in &lines[..lines.len() - 1] {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let keyword = words.next().unwrap_or_default();
            assert!(["HELP", "TYPE", "UNIT"].contains(&keyword), "unknown comment {line:?}");
            assert!(valid_name(words.next().unwrap_or_default()), "bad metric name in {line:?}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            number => number.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(valid_name(name), "bad metric name in {line:?}");
        let labels = &series[name.len()..];
        if !labels.is_empty() {
            let inner = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}'));
            let inner = inner.unwrap_or_else(|| panic!("bad label set in {line:?}"));
            for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                let (label, quoted) = pair.split_once('=').unwrap_or_else(|| panic!("bad label in {line:?}"));
                assert!(valid_name(label) && quoted.starts_with('"'), "bad label {pair:?} in {line:?}");
            }
        }
        assert!(samples.insert(series.to_owned(), value).is_none(), "series twice: {line:?}");
    }
    samples
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> Option<f64> {
    samples.get(series).copied()
}

/// Scrapes until `check` holds on the parsed samples.
async fn scrape_until(
    operator: &OperatorProcess,
    what: &str,
    check: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    eventually(DEADLINE, what, || {
        let samples = operator.metrics().map(|text| parse_exposition(&text));
        std::future::ready(samples.filter(|samples| check(samples)))
    })
    .await
}

/// The operator binary exporting its spans over OTLP/gRPC to `address`, in batches every 100 ms.
fn exporting_to(plane: &ControlPlane, namespace: &str, address: std::net::SocketAddr) -> OperatorProcess {
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{address}")),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ];
    OperatorProcess::start(plane, namespace, &env, &[])
}

fn exported_traces(spans: &Spans) -> HashSet<String> {
    spans.all().into_iter().map(|span| span.trace_id).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn transitions_link_to_exported_traces_and_metrics_follow_the_objects() {
    let plane = shared_with_crds();
    let namespace = namespace(plane, "obs-grpc").await;
    let (address, spans) = otlp::grpc_receiver().await;
    let operator = exporting_to(plane, &namespace, address);
    apply_seed(plane, &namespace);

    // The Event names a trace, and that trace is exported.
    let note = provisioning_note(plane, &namespace).await;
    let trace = trace_id_of(&note).unwrap_or_else(|| panic!("no trace id in {note:?}"));
    // The kind's span ends before the reconcile span around it: the two may
    // come in different export batches, so wait for both.
    let in_trace = eventually(DEADLINE, "the Event's trace, both its spans, at the receiver", || {
        let in_trace: Vec<ReceivedSpan> =
            spans.all().into_iter().filter(|span| span.trace_id == trace).collect();
        let complete = ["reconcile", "reconcile_router_cluster"]
            .iter()
            .all(|name| in_trace.iter().any(|span| span.name == *name));
        std::future::ready(complete.then_some(in_trace))
    })
    .await;
    let reconcile = in_trace.iter().find(|span| span.name == "reconcile").expect("the reconcile span");
    assert_eq!(reconcile.attributes.get("kind").map(String::as_str), Some("EtlRouterCluster"));
    assert_eq!(reconcile.attributes.get("object"), Some(&format!("{namespace}/my-cluster")));
    assert_eq!(reconcile.resource.get("service.name").map(String::as_str), Some("conveyor-etl-operator"));
    let kind_span =
        in_trace.iter().find(|span| span.name == "reconcile_router_cluster").expect("the kind's span");
    assert_eq!(kind_span.parent_span_id, reconcile.span_id, "the kind's span is inside the reconcile span");
    assert!(kind_span.events.iter().any(|e| e == "phase transition"), "transition span event: {kind_span:?}");

    // Its log line is JSON (stderr is no terminal) and carries the object and the same trace.
    let line = eventually(DEADLINE, "the transition's log line", || {
        let found = operator
            .lines()
            .into_iter()
            .find(|l| l.contains("phase transition") && l.contains("Provisioning"));
        std::future::ready(found)
    })
    .await;
    let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let outer = json["spans"].as_array().and_then(|spans| spans.iter().find(|s| s["name"] == "reconcile"));
    let outer = outer.unwrap_or_else(|| panic!("no reconcile span in {line}"));
    assert_eq!(outer["trace_id"], trace.as_str(), "{line}");
    assert_eq!(outer["object"], format!("{namespace}/my-cluster"), "{line}");

    // /metrics parses, and counts what happened: one transition, one cluster in Provisioning.
    let objects = |phase: &str| format!(r#"conveyor_objects{{kind="EtlRouterCluster",phase="{phase}"}}"#);
    let samples = scrape_until(&operator, "the cluster counted in Provisioning", |s| {
        value(s, &objects("Provisioning")) == Some(1.0)
    })
    .await;
    assert_eq!(value(&samples, &objects("Pending")), Some(0.0));
    assert_eq!(value(&samples, &objects("Ready")), Some(0.0));
    let transitions: Vec<(&String, &f64)> = samples
        .iter()
        .filter(|(series, _)| series.starts_with(r#"conveyor_transitions_total{kind="EtlRouterCluster""#))
        .collect();
    assert_eq!(
        transitions,
        [(
            &r#"conveyor_transitions_total{kind="EtlRouterCluster",from="Pending",to="Provisioning"}"#
                .to_owned(),
            &1.0
        )],
        "exactly the transition the Events tell"
    );
    let notes = cluster_event_notes(plane, &namespace, "my-cluster").await;
    assert_eq!(notes.iter().filter(|n| n.contains(" → ")).count(), 1, "{notes:?}");

    // The gauge follows a deletion.
    kubectl_ok(plane, &["delete", "-n", &namespace, "etlrc", "my-cluster", "--wait=false"]);
    scrape_until(&operator, "the deleted cluster no longer counted", |s| {
        value(s, &objects("Provisioning")) == Some(0.0)
    })
    .await;
}

/// The per-object gauges the alerts read: a router cluster's phase, Ready,
/// members and leader by name, a Degraded one told as such, and its series
/// gone once it is deleted.
#[tokio::test(flavor = "multi_thread")]
async fn per_object_metrics_name_a_degraded_cluster_and_go_with_it() {
    let plane = shared_with_crds();
    let namespace = namespace(plane, "obs-objects").await;
    let kubelet = FakeKubelet::start(plane.client().await, &namespace, "my-cluster", 50051).await;
    let operator =
        OperatorProcess::start(plane, &namespace, &[("CONVEYOR_HEALTH_INTERVAL", "1s".into())], &[]);
    apply_seed(plane, &namespace);
    let object = |metric: &str| {
        format!(r#"{metric}{{kind="EtlRouterCluster",namespace="{namespace}",name="my-cluster"}}"#)
    };
    let cluster = |metric: &str| format!(r#"{metric}{{namespace="{namespace}",name="my-cluster"}}"#);
    let phase = |phase: &str| {
        format!(
            r#"conveyor_object_phase{{kind="EtlRouterCluster",namespace="{namespace}",name="my-cluster",phase="{phase}"}}"#
        )
    };
    let ready =
        scrape_until(&operator, "the cluster Ready by name", |s| value(s, &phase("Ready")) == Some(1.0))
            .await;
    assert_eq!(value(&ready, &object("conveyor_object_ready")), Some(1.0));
    assert_eq!(value(&ready, &phase("Degraded")), Some(0.0));
    assert_eq!(value(&ready, &cluster("conveyor_router_cluster_members")), Some(3.0));
    assert_eq!(value(&ready, &cluster("conveyor_router_cluster_members_healthy")), Some(3.0));
    assert_eq!(value(&ready, &cluster("conveyor_router_cluster_leader")), Some(1.0));
    assert!(
        value(&ready, &cluster("conveyor_router_cluster_term")).is_some_and(|term| term >= 1.0),
        "{ready:?}"
    );

    // A follower that stops answering: Degraded, not Ready, one member unhealthy.
    let leader = kubelet.sim.leader().expect("a leader");
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    kubelet.sim.slow_node(follower, Duration::from_secs(3600));
    let degraded = scrape_until(&operator, "the cluster Degraded by name", |s| {
        value(s, &phase("Degraded")) == Some(1.0)
    })
    .await;
    assert_eq!(value(&degraded, &phase("Ready")), Some(0.0));
    assert_eq!(value(&degraded, &object("conveyor_object_ready")), Some(0.0));
    assert_eq!(value(&degraded, &cluster("conveyor_router_cluster_members_healthy")), Some(2.0));
    assert_eq!(value(&degraded, &cluster("conveyor_router_cluster_leader")), Some(1.0));

    // Deleted: every series naming it goes.
    kubelet.sim.slow_node(follower, Duration::ZERO);
    kubectl_ok(plane, &["delete", "-n", &namespace, "etlrc", "my-cluster", "--wait=false"]);
    let gone = scrape_until(&operator, "no series naming the deleted cluster", |s| {
        !s.keys().any(|series| series.contains(r#"name="my-cluster""#))
    })
    .await;
    assert!(gone.keys().any(|series| series.starts_with("conveyor_objects{")), "{gone:?}");
    drop(operator);
    kubelet.stop().await;
}

/// `kubectl get <kind> <name>`'s `.status.phase`, empty when there is none yet.
fn phase(plane: &ControlPlane, namespace: &str, kind: &str, name: &str) -> String {
    let output =
        support::kubectl(plane, &["get", "-n", namespace, kind, name, "-o", "jsonpath={.status.phase}"]);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `(trace id, parent span id)` of a W3C `traceparent`, `00-<trace>-<span>-<flags>`.
fn traceparent_ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert!(parts.len() == 4 && parts[0] == "00", "not a W3C traceparent: {traceparent:?}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// The span with id `id`, if it arrived.
fn span_by_id<'a>(spans: &'a [ReceivedSpan], id: &str) -> Option<&'a ReceivedSpan> {
    spans.iter().find(|span| span.span_id == id)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seeds_pipeline_submission_is_one_trace_from_reconcile_into_the_router() {
    let plane = shared_with_crds();
    let namespace = namespace(plane, "obs-seed").await;
    let (address, spans) = otlp::grpc_receiver().await;
    let kubelet = FakeKubelet::start(plane.client().await, &namespace, "my-cluster", 50051).await;
    let operator = exporting_to(plane, &namespace, address);
    apply_seed(plane, &namespace);
    let services = repo_path("deploy/examples/services.yaml");
    kubectl_ok(plane, &["apply", "-n", &namespace, "-f", services.to_str().unwrap()]);
    let objects = [
        ("EtlRouterCluster", "my-cluster"),
        ("EtlSource", "kafka-users"),
        ("EtlTransform", "filter-active"),
        ("EtlTransform", "enrich-geo"),
        ("EtlSink", "clickhouse-analytics"),
        ("EtlPipeline", "user-analytics"),
    ];
    for (kind, name) in objects {
        eventually(SEED_READY, &format!("{kind} {name} Ready"), || {
            std::future::ready((phase(plane, &namespace, kind, name) == "Ready").then_some(()))
        })
        .await;
    }

    // The router saw the submission with a traceparent; its span arrived,
    // and is a router_call inside the pipeline's reconcile.
    let submitted = kubelet.sim.traceparents("CreatePipeline");
    assert_eq!(submitted.len(), 1, "one submission: {submitted:?}");
    let (trace, call_span) = traceparent_ids(&submitted[0]);
    let in_trace = eventually(DEADLINE, "the submission's spans at the receiver", || {
        let in_trace: Vec<ReceivedSpan> =
            spans.all().into_iter().filter(|span| span.trace_id == trace).collect();
        let complete = in_trace.iter().any(|span| span.span_id == call_span)
            && in_trace.iter().any(|span| span.name == "reconcile");
        std::future::ready(complete.then_some(in_trace))
    })
    .await;
    let call = span_by_id(&in_trace, &call_span).unwrap();
    assert_eq!(call.name, "router_call");
    assert_eq!(call.attributes.get("method").map(String::as_str), Some("CreatePipeline"));
    assert_eq!(call.attributes.get("outcome").map(String::as_str), Some("ok"), "{call:?}");
    assert!(call.attributes.contains_key("member") && call.attributes.contains_key("attempt"), "{call:?}");
    let mut ancestors = Vec::new();
    let mut parent = call.parent_span_id.clone();
    while let Some(span) = span_by_id(&in_trace, &parent) {
        ancestors.push(span.name.clone());
        parent = span.parent_span_id.clone();
        if span.name == "reconcile" {
            assert_eq!(span.attributes.get("kind").map(String::as_str), Some("EtlPipeline"));
            assert_eq!(span.attributes.get("object"), Some(&format!("{namespace}/user-analytics")));
            assert_eq!(span.attributes.get("result").map(String::as_str), Some("ok"), "{span:?}");
        }
    }
    let position = |name: &str| ancestors.iter().position(|a| a == name);
    assert!(
        position("reconcile_pipeline").is_some_and(|inner| position("reconcile") == Some(inner + 1)),
        "the call sits inside the pipeline's reconcile: {ancestors:?}"
    );

    // Every kind's reconciles arrived as spans with their attributes, and each
    // kind's machine reported a transition as a span event.
    let all = spans.all();
    let kind_spans = [
        ("EtlRouterCluster", "reconcile_router_cluster"),
        ("EtlSource", "reconcile_service"),
        ("EtlTransform", "reconcile_service"),
        ("EtlSink", "reconcile_service"),
        ("EtlPipeline", "reconcile_pipeline"),
    ];
    for (kind, inner) in kind_spans {
        let reconciles: Vec<&ReceivedSpan> = all
            .iter()
            .filter(|span| {
                span.name == "reconcile" && span.attributes.get("kind").map(String::as_str) == Some(kind)
            })
            .collect();
        assert!(!reconciles.is_empty(), "no reconcile span of {kind}");
        for span in &reconciles {
            for attribute in ["object", "generation", "result", "trace_id"] {
                assert!(
                    span.attributes.contains_key(attribute),
                    "{kind}'s reconcile span lacks {attribute}: {span:?}"
                );
            }
            assert_eq!(span.attributes["trace_id"], span.trace_id, "the recorded trace id is the span's own");
        }
        let transitions: Vec<&ReceivedSpan> = all
            .iter()
            .filter(|span| span.name == inner && reconciles.iter().any(|r| r.span_id == span.parent_span_id))
            .filter(|span| span.events.iter().any(|e| e == "phase transition"))
            .collect();
        let into_ready =
            transitions.iter().find(|span| span.attributes.get("phase").map(String::as_str) == Some("Ready"));
        let into_ready =
            into_ready.unwrap_or_else(|| panic!("no {inner} span of {kind} with a transition to Ready"));
        for attribute in ["event", "from"] {
            assert!(
                into_ready.attributes.contains_key(attribute),
                "{kind}'s {inner} lacks {attribute}: {into_ready:?}"
            );
        }
    }

    // `kubectl describe` of the pipeline names the trace of its move to Ready.
    let described = kubectl_ok(plane, &["describe", "-n", &namespace, "etlpipeline", "user-analytics"]);
    let exported = exported_traces(&spans);
    let named: Vec<String> = described
        .lines()
        .filter(|line| line.contains("→ Ready"))
        .filter_map(|line| trace_id_of(line.trim_end()))
        .collect();
    assert!(!named.is_empty(), "no transition Event with a trace in:\n{described}");
    assert!(named.iter().all(|id| exported.contains(id)), "{named:?} not all exported");

    // /metrics counts every kind in Ready, and the pipeline's transitions end in Ready.
    let samples = scrape_until(&operator, "every kind counted in Ready", |s| {
        kind_spans.iter().all(|(kind, _)| {
            value(s, &format!(r#"conveyor_objects{{kind="{kind}",phase="Ready"}}"#)).is_some_and(|n| n >= 1.0)
        })
    })
    .await;
    assert_eq!(value(&samples, r#"conveyor_objects{kind="EtlTransform",phase="Ready"}"#), Some(2.0));
    let into_ready: f64 = samples
        .iter()
        .filter(|(series, _)| {
            series.starts_with(r#"conveyor_transitions_total{kind="EtlPipeline""#)
                && series.ends_with(r#"to="Ready"}"#)
        })
        .map(|(_, n)| n)
        .sum();
    assert_eq!(into_ready, 1.0, "the pipeline went Ready once");
    drop(operator);
    kubelet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_go_over_http_protobuf_named_by_the_environment() {
    let plane = shared_with_crds();
    let namespace = namespace(plane, "obs-http").await;
    let (address, spans) = otlp::http_receiver().await;
    let _operator = OperatorProcess::start(
        plane,
        &namespace,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{address}")),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
            ("OTEL_SERVICE_NAME", "conveyor-under-test".into()),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,team=etl".into()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
        &[],
    );
    apply_seed(plane, &namespace);
    let note = provisioning_note(plane, &namespace).await;
    let trace = trace_id_of(&note).unwrap_or_else(|| panic!("no trace id in {note:?}"));
    let span = eventually(DEADLINE, "the Event's reconcile span over HTTP", || {
        let found = spans.all().into_iter().find(|span| span.trace_id == trace && span.name == "reconcile");
        std::future::ready(found)
    })
    .await;
    assert_eq!(span.resource.get("service.name").map(String::as_str), Some("conveyor-under-test"));
    assert_eq!(span.resource.get("deployment.environment").map(String::as_str), Some("test"));
    assert_eq!(span.resource.get("team").map(String::as_str), Some("etl"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_is_down_costs_one_warning_and_no_reconcile() {
    let plane = shared_with_crds();
    let namespace = namespace(plane, "obs-down").await;
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let operator = OperatorProcess::start(
        plane,
        &namespace,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{closed}")),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500".into()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
        &[],
    );
    apply_seed(plane, &namespace);
    provisioning_note(plane, &namespace).await;
    let warnings = || -> Vec<String> {
        operator.lines().into_iter().filter(|line| line.contains("cannot export spans")).collect()
    };
    eventually(DEADLINE, "a warning about the collector", || {
        std::future::ready((!warnings().is_empty()).then_some(()))
    })
    .await;

    // A Provisioning cluster is reconciled every 2 s, and each reconcile's
    // spans make an export attempt that fails: let four more go by.
    let reconciles = r#"conveyor_reconciles_total{kind="EtlRouterCluster"}"#;
    let before =
        scrape_until(&operator, "a reconcile counted", |s| value(s, reconciles).is_some()).await[reconciles];
    let samples = scrape_until(&operator, "four more reconciles", |s| {
        value(s, reconciles).is_some_and(|n| n >= before + 4.0)
    })
    .await;
    let duration = |part: &str| {
        value(&samples, &format!(r#"conveyor_reconcile_duration_seconds_{part}{{kind="EtlRouterCluster"}}"#))
    };
    let mean = duration("sum").unwrap() / duration("count").unwrap();
    assert!(mean < 0.5, "reconciles slowed down by the missing collector: mean {mean} s");
    assert_eq!(warnings().len(), 1, "one warning, not one per batch: {:#?}", warnings());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_exporter_events_carry_no_trace_and_text_logs_on_request() {
    let plane = shared_with_crds();
    let namespace = namespace(plane, "obs-none").await;
    let operator = OperatorProcess::start(plane, &namespace, &[], &["--log-format", "text"]);
    apply_seed(plane, &namespace);
    let note = provisioning_note(plane, &namespace).await;
    assert!(!note.contains("(trace "), "no exporter, no trace id: {note:?}");
    let line = eventually(DEADLINE, "the transition's log line", || {
        std::future::ready(operator.lines().into_iter().find(|l| l.contains("phase transition")))
    })
    .await;
    assert!(serde_json::from_str::<serde_json::Value>(&line).is_err(), "asked for text: {line}");
    assert!(
        line.contains(&format!("object=\"{namespace}/my-cluster\""))
            || line.contains(&format!("object={namespace}/my-cluster")),
        "{line}"
    );
    assert!(!line.contains("trace_id"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_sampling_off_events_carry_no_trace() {
    let plane = shared_with_crds();
    let namespace = namespace(plane, "obs-unsampled").await;
    let (address, _spans) = otlp::grpc_receiver().await;
    let _operator = OperatorProcess::start(
        plane,
        &namespace,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{address}")),
            ("OTEL_TRACES_SAMPLER", "always_off".into()),
        ],
        &[],
    );
    apply_seed(plane, &namespace);
    let note = provisioning_note(plane, &namespace).await;
    assert!(!note.contains("(trace "), "an unsampled trace is not named: {note:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_watches_are_counted_as_restarts() {
    let plane = shared_with_crds();
    let namespace = namespace(plane, "obs-forbidden").await;
    // The restricted user may read the CRDs (the start-up check) but watch nothing.
    kubectl_ok(
        plane,
        &[
            "create",
            "clusterrole",
            "obs-crd-reader",
            "--verb=get,list",
            "--resource=customresourcedefinitions.apiextensions.k8s.io",
        ],
    );
    kubectl_ok(
        plane,
        &[
            "create",
            "clusterrolebinding",
            "obs-crd-reader",
            "--clusterrole=obs-crd-reader",
            &format!("--user={}", support::control_plane::RESTRICTED_USER),
        ],
    );
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(kubeconfig.path(), plane.kubeconfig_yaml(support::control_plane::RESTRICTED_USER))
        .unwrap();
    let operator = OperatorProcess::start(
        plane,
        &namespace,
        &[("KUBECONFIG", kubeconfig.path().to_str().unwrap().to_owned())],
        &[],
    );
    let restarts = r#"conveyor_watch_restarts_total{kind="EtlRouterCluster"}"#;
    scrape_until(&operator, "a counted watch restart", |s| value(s, restarts).is_some_and(|n| n >= 1.0))
        .await;
    assert_eq!(operator.get("/readyz").map(|(code, _)| code), Some(503), "never listed, never ready");
}
