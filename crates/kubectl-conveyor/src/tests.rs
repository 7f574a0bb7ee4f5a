//! The pure parts on objects built from JSON: the why chain, the graph and
//! the renderers.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::kinds::Kind;
use crate::snapshot::Snapshot;
use crate::why::{State, why};
use crate::{graph, render};

const NS: &str = "shop";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn now() -> Timestamp {
    "2030-01-01T00:10:00Z".parse().unwrap()
}

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": NS, "uid": format!("uid-{name}"), "creationTimestamp": "2030-01-01T00:00:00Z"})
}

fn conditions(ready: &str, reason: &str, message: &str) -> Value {
    json!([{"type": "Ready", "status": ready, "reason": reason, "message": message,
            "lastTransitionTime": "2030-01-01T00:05:00Z"}])
}

fn cluster(phase: &str, ready: &str, reason: &str, message: &str) -> Value {
    json!({
        "apiVersion": "conveyor.etl/v1", "kind": "EtlRouterCluster", "metadata": meta("my-cluster"),
        "spec": {"replicas": 3, "image": "conveyor-etl-router:v2"},
        "status": {"phase": phase, "readyReplicas": 2, "replicas": 3, "leader": "my-cluster-0", "leaderId": 1, "term": 7,
                   "members": [
                       {"nodeId": 1, "pod": "my-cluster-0", "role": "Leader", "healthy": true},
                       {"nodeId": 2, "pod": "my-cluster-1", "role": "Follower", "healthy": false},
                       {"nodeId": 3, "pod": "my-cluster-2", "role": "Follower", "healthy": true}],
                   "conditions": conditions(ready, reason, message)}
    })
}

fn service(kind: &str, name: &str, ready: &str, reason: &str, health: &str) -> Value {
    json!({
        "apiVersion": "conveyor.etl/v1", "kind": kind, "metadata": meta(name),
        "spec": {"grpc": {"endpoint": format!("{name}-svc:50051")}},
        "status": {"phase": if ready == "True" { "Ready" } else { "Pending" }, "cluster": "my-cluster",
                   "health": health, "assignedPartitions": [0, 1],
                   "conditions": conditions(ready, reason, &format!("{name} says {reason}"))}
    })
}

fn pipeline(ready: &str, reason: &str, message: &str) -> Value {
    json!({
        "apiVersion": "conveyor.etl/v1", "kind": "EtlPipeline", "metadata": meta("user-analytics"),
        "spec": {"source": "kafka-users", "steps": ["filter-active", "enrich-geo"], "sink": "clickhouse-analytics",
                 "dlq": {"enabled": true, "maxRetries": 3}},
        "status": {"phase": if ready == "True" { "Ready" } else { "Pending" }, "cluster": "my-cluster", "routerVersion": 4,
                   "stages": [{"id": "source", "service": "kafka-users", "endpoint": "10.0.0.9:50051",
                               "assignedPartitions": [0, 1, 2]},
                              {"id": "step-1", "service": "enrich-geo", "errorsRising": true}],
                   "conditions": conditions(ready, reason, message)}
    })
}

fn pod(ordinal: u32, ready: bool, extra_status: Value) -> Value {
    let name = format!("my-cluster-{ordinal}");
    let mut status = json!({
        "phase": if ready { "Running" } else { "Pending" },
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                        "lastTransitionTime": "2030-01-01T00:01:00Z"}],
        "containerStatuses": [{"name": "router", "ready": ready, "restartCount": ordinal, "image": "i", "imageID": "",
                               "state": {"running": {}}}],
    });
    if let (Some(status), Some(extra)) = (status.as_object_mut(), extra_status.as_object()) {
        status.extend(extra.clone());
    }
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"),
                        "labels": {"conveyor.etl/cluster": "my-cluster"}, "creationTimestamp": "2030-01-01T00:00:00Z"},
           "spec": {"nodeName": format!("node-{ordinal}"), "containers": [{"name": "router"}]},
           "status": status})
}

fn event(kind: &str, name: &str, type_: &str, reason: &str, note: &str, at: &str) -> Value {
    json!({"metadata": {"name": format!("{name}.{reason}.{at}"), "namespace": NS},
           "regarding": {"kind": kind, "name": name, "namespace": NS, "uid": format!("uid-{name}")},
           "type": type_, "reason": reason, "note": note, "eventTime": at})
}

fn all_services_ready() -> Vec<Value> {
    vec![
        service("EtlSource", "kafka-users", "True", "Registered", "Healthy"),
        service("EtlTransform", "filter-active", "True", "Registered", "Healthy"),
        service("EtlTransform", "enrich-geo", "True", "Registered", "Healthy"),
        service("EtlSink", "clickhouse-analytics", "True", "Registered", "Healthy"),
    ]
}

fn snapshot(objects: Vec<Value>) -> Snapshot {
    let mut s = Snapshot::default();
    for object in objects {
        let kind = object["kind"].as_str().map(str::to_owned);
        match kind.as_deref() {
            Some("EtlRouterCluster") => s.clusters.push(serde_json::from_value(object).unwrap()),
            Some("EtlPipeline") => s.pipelines.push(serde_json::from_value(object).unwrap()),
            Some("EtlSource") => s.sources.push(serde_json::from_value(object).unwrap()),
            Some("EtlTransform") => s.transforms.push(serde_json::from_value(object).unwrap()),
            Some("EtlSink") => s.sinks.push(serde_json::from_value(object).unwrap()),
            Some("Pod") => s.pods.push(serde_json::from_value(object).unwrap()),
            _ => s.events.push(serde_json::from_value(object).unwrap()),
        }
    }
    s
}

#[test]
fn a_pipeline_waiting_for_a_missing_transform_names_it_with_its_event_and_trace() {
    let mut objects = vec![
        cluster("Ready", "True", "ClusterHealthy", "every member healthy"),
        pipeline("False", "ReferencesMissing", "EtlTransform enrich-geo does not exist"),
        event(
            "EtlPipeline",
            "user-analytics",
            "Normal",
            "ReferencesMissing",
            &format!("Provisioning → Pending: EtlTransform enrich-geo does not exist (trace {TRACE})"),
            "2030-01-01T00:09:00.000000Z",
        ),
        event(
            "EtlPipeline",
            "user-analytics",
            "Normal",
            "Submitting",
            "older",
            "2030-01-01T00:09:30.000000Z",
        ),
    ];
    objects.extend(all_services_ready().into_iter().filter(|s| s["metadata"]["name"] != "enrich-geo"));
    let chain = why(&snapshot(objects), NS, Kind::Pipeline, "user-analytics");
    assert_eq!(chain.steps.len(), 2, "{chain:#?}");
    let cause = chain.first_cause().unwrap();
    assert_eq!(
        (cause.kind.as_str(), cause.name.as_str(), cause.state),
        ("EtlTransform", "enrich-geo", State::Missing)
    );
    assert_eq!(cause.via, "spec.steps[1]");
    // The Event told of the condition's reason, not merely the latest one.
    assert_eq!(chain.steps[0].event.as_ref().unwrap().reason, "ReferencesMissing");
    assert_eq!(chain.steps[0].trace_id(), Some(TRACE));
    let text = render::why(&chain, now());
    assert!(
        text.contains("First cause: EtlTransform/enrich-geo does not exist (spec.steps[1] of EtlPipeline/user-analytics)"),
        "{text}"
    );
    assert!(text.contains(&format!("trace:   {TRACE}")), "{text}");
    assert!(text.contains("reason ReferencesMissing"), "{text}");
    assert!(
        !text.contains(&format!("(trace {TRACE})")),
        "the trace id is shown once, on its own line: {text}"
    );
}

fn image_pull_failure() -> Vec<Value> {
    let mut objects = vec![
        cluster("Unavailable", "False", "PodsNotReady", "2 of 3 router pods ready"),
        pipeline("False", "RouterClusterNotReady", "EtlRouterCluster my-cluster is not Ready"),
        pod(0, true, json!({})),
        // Starting: not ready, but nothing of its own to say.
        pod(
            1,
            false,
            json!({"containerStatuses": [{"name": "router", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                                           "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        ),
        pod(
            2,
            false,
            json!({"containerStatuses": [{"name": "router", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                                           "state": {"waiting": {"reason": "ImagePullBackOff",
                                                                 "message": "Back-off pulling image \"conveyor-etl-router:v2\""}}}]}),
        ),
        event(
            "Pod",
            "my-cluster-2",
            "Warning",
            "Failed",
            "Failed to pull image \"conveyor-etl-router:v2\": not found",
            "2030-01-01T00:08:00.000000Z",
        ),
        event(
            "Pod",
            "my-cluster-2",
            "Normal",
            "BackOff",
            "Back-off pulling image",
            "2030-01-01T00:08:30.000000Z",
        ),
        event("Pod", "my-cluster-2", "Normal", "Scheduled", "assigned", "2030-01-01T00:00:01.000000Z"),
        event(
            "EtlRouterCluster",
            "my-cluster",
            "Warning",
            "PodsNotReady",
            &format!("Ready → Unavailable: 2 of 3 router pods ready (trace {TRACE})"),
            "2030-01-01T00:07:00.000000Z",
        ),
    ];
    objects.extend(all_services_ready());
    objects
}

#[test]
fn a_router_pod_that_cannot_pull_its_image_is_the_first_cause() {
    let chain = why(&snapshot(image_pull_failure()), NS, Kind::Pipeline, "user-analytics");
    let path: Vec<String> = chain.steps.iter().map(|s| format!("{}/{}", s.kind, s.name)).collect();
    assert_eq!(path, ["EtlPipeline/user-analytics", "EtlRouterCluster/my-cluster", "Pod/my-cluster-2"]);
    let cause = chain.first_cause().unwrap();
    assert_eq!(cause.reason.as_deref(), Some("ImagePullBackOff"));
    assert!(cause.message.as_deref().unwrap().contains("Back-off pulling image"), "{cause:#?}");
    // The latest Warning, not the latest Event.
    let event = cause.event.as_ref().unwrap();
    assert_eq!((event.type_.as_str(), event.reason.as_str()), ("Warning", "Failed"));
    assert_eq!(chain.steps[1].trace_id(), Some(TRACE));
    let text = render::why(&chain, now());
    assert!(
        text.contains(
            "First cause: Pod/my-cluster-2: ImagePullBackOff: container router: Back-off pulling image"
        ),
        "{text}"
    );
    assert!(text.contains("Warning Failed, 2m0s ago: Failed to pull image"), "{text}");
    assert!(text.contains("node node-2, restarts 0"), "{text}");

    // The same pod, asked about through the cluster or a service waiting for it.
    let chain = why(&snapshot(image_pull_failure()), NS, Kind::RouterCluster, "my-cluster");
    assert_eq!(chain.first_cause().unwrap().name, "my-cluster-2");
    let mut objects = image_pull_failure();
    objects.push(service("EtlTransform", "filter-active", "False", "RouterClusterNotReady", "Unknown"));
    objects.retain(|o| {
        !(o["kind"] == "EtlTransform"
            && o["metadata"]["name"] == "filter-active"
            && o["status"]["phase"] == "Ready")
    });
    let chain = why(&snapshot(objects), NS, Kind::Transform, "filter-active");
    let path: Vec<&str> = chain.steps.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(path, ["EtlTransform", "EtlRouterCluster", "Pod"]);
}

#[test]
fn a_pipeline_follows_a_service_that_is_not_ready_to_its_cluster() {
    let mut objects = vec![
        cluster("Unavailable", "False", "QuorumLost", "no leader"),
        pipeline("False", "ReferencesNotReady", "EtlSink clickhouse-analytics is not Ready"),
        pod(0, true, json!({})),
        pod(1, true, json!({})),
        pod(2, true, json!({})),
    ];
    objects.extend(all_services_ready().into_iter().filter(|s| s["kind"] != "EtlSink"));
    objects.push(service("EtlSink", "clickhouse-analytics", "False", "RouterClusterNotReady", "Unknown"));
    let chain = why(&snapshot(objects), NS, Kind::Pipeline, "user-analytics");
    let path: Vec<String> =
        chain.steps.iter().map(|s| format!("{}/{} via {:?}", s.kind, s.name, s.via)).collect();
    assert_eq!(
        path,
        [
            "EtlPipeline/user-analytics via \"\"",
            "EtlSink/clickhouse-analytics via \"spec.sink\"",
            "EtlRouterCluster/my-cluster via \"its router cluster\"",
            // Every pod ready: the member the router reports unhealthy.
            "Pod/my-cluster-1 via \"a member the router reports unhealthy\"",
        ]
    );
    assert!(
        chain
            .first_cause()
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .contains("Raft member 2 (Follower) unhealthy")
    );
    assert!(chain.steps[1].details.contains(&"router reports health Unknown".to_owned()));
}

#[test]
fn a_service_with_a_cause_of_its_own_is_not_followed_to_its_cluster() {
    let objects = vec![
        cluster("Unavailable", "False", "QuorumLost", "no leader"),
        service("EtlSource", "kafka-users", "False", "InvalidEndpoint", "Unknown"),
    ];
    let chain = why(&snapshot(objects), NS, Kind::Source, "kafka-users");
    assert_eq!(chain.steps.len(), 1);
    assert_eq!(chain.first_cause().unwrap().reason.as_deref(), Some("InvalidEndpoint"));
}

#[test]
fn pods_that_cannot_be_scheduled_or_keep_crashing_say_so() {
    let unscheduled = pod(
        0,
        false,
        json!({"containerStatuses": [], "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/1 nodes are available: 1 Insufficient memory."},
            {"type": "Ready", "status": "False"}]}),
    );
    let crashing = pod(
        1,
        false,
        json!({"containerStatuses": [{"name": "router", "ready": false, "restartCount": 5, "image": "i", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s restarting failed container"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
    );
    let objects = vec![
        cluster("Provisioning", "False", "PodsStarting", "0 of 3 router pods ready"),
        unscheduled.clone(),
        event(
            "Pod",
            "my-cluster-0",
            "Warning",
            "FailedScheduling",
            "0/1 nodes are available",
            "2030-01-01T00:09:00Z",
        ),
    ];
    let chain = why(&snapshot(objects), NS, Kind::RouterCluster, "my-cluster");
    let cause = chain.first_cause().unwrap();
    assert_eq!(cause.reason.as_deref(), Some("Unschedulable"));
    assert!(cause.message.as_deref().unwrap().contains("Insufficient memory"));
    assert_eq!(cause.event.as_ref().unwrap().reason, "FailedScheduling");

    let chain = why(
        &snapshot(vec![cluster("Unavailable", "False", "PodsNotReady", "m"), crashing]),
        NS,
        Kind::RouterCluster,
        "my-cluster",
    );
    let cause = chain.first_cause().unwrap();
    assert_eq!(cause.reason.as_deref(), Some("CrashLoopBackOff"));
    assert!(cause.message.as_deref().unwrap().contains("last run ended Error (exit code 1)"), "{cause:#?}");
    assert!(cause.details[0].contains("restarts 5"));
}

#[test]
fn a_ready_object_says_since_when() {
    let mut objects = vec![
        cluster("Ready", "True", "ClusterHealthy", "every member healthy"),
        pipeline("True", "PipelineRunning", "running"),
    ];
    objects.extend(all_services_ready());
    let chain = why(&snapshot(objects), NS, Kind::Pipeline, "user-analytics");
    assert!(chain.ready());
    assert!(chain.first_cause().is_none());
    let text = render::why(&chain, now());
    assert!(
        text.starts_with("EtlPipeline/user-analytics is Ready since 2030-01-01T00:05:00Z (5m0s ago)"),
        "{text}"
    );
    assert!(!text.contains("First cause"), "{text}");
}

#[test]
fn an_object_that_does_not_exist_is_its_own_cause() {
    let chain = why(&snapshot(vec![]), NS, Kind::Sink, "nowhere");
    assert_eq!(chain.steps[0].state, State::Missing);
    assert!(render::why(&chain, now()).contains("First cause: EtlSink/nowhere does not exist"));
    // A service naming a cluster that is not there.
    let mut lost = service("EtlSink", "s", "False", "NoRouterCluster", "Unknown");
    lost["spec"]["clusterRef"] = json!({"name": "gone"});
    lost["status"]["cluster"] = Value::Null;
    let chain = why(&snapshot(vec![lost]), NS, Kind::Sink, "s");
    assert_eq!(chain.first_cause().unwrap().kind, "EtlRouterCluster");
    assert_eq!(chain.first_cause().unwrap().state, State::Missing);
}

#[test]
fn the_graph_has_every_stage_in_order_with_its_health_and_the_dlq() {
    let mut objects = vec![pipeline("True", "PipelineRunning", "running")];
    objects.extend(all_services_ready().into_iter().filter(|s| s["metadata"]["name"] != "filter-active"));
    objects.push(service("EtlTransform", "filter-active", "False", "ServiceUnhealthy", "Degraded"));
    let s = snapshot(objects);
    let g = graph::graph(&s, &s.pipelines[0]);
    let ids: Vec<&str> = g.stages.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["source", "step-0", "step-1", "sink"]);
    assert_eq!(g.stages[0].endpoint.as_deref(), Some("10.0.0.9:50051"), "the router's endpoint from status");
    assert_eq!(g.stages[0].partitions, [0, 1, 2]);
    assert_eq!(g.stages[1].health.as_deref(), Some("Degraded"));
    assert_eq!(
        g.stages[1].endpoint.as_deref(),
        Some("filter-active-svc:50051"),
        "the spec's without a status"
    );
    assert!(g.stages[2].errors_rising);
    assert_eq!(g.dlq_max_retries, Some(3));

    let text = render::graph_text(&g);
    assert!(text.contains("EtlTransform/filter-active"), "{text}");
    let row = |id: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        row("step-0"),
        [
            "step-0",
            "EtlTransform/filter-active",
            "Pending",
            "Degraded",
            "filter-active-svc:50051",
            "0,1",
            "-"
        ]
    );
    assert_eq!(row("step-1")[6], "rising", "{text}");
    assert_eq!(row("source")[5], "0,1,2", "{text}");
    assert!(
        text.contains(
            "Flow: source -> step-0 -> step-1 -> sink; records failing 3 retries -> dead-letter queue"
        ),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    let at = |needle: &str| lines.iter().position(|l| l.contains(needle)).unwrap();
    assert!(
        at("kafka-users") < at("filter-active")
            && at("filter-active") < at("enrich-geo")
            && at("enrich-geo") < at("clickhouse")
    );

    let dot = render::graph_dot(&g);
    assert!(dot.starts_with("digraph \"shop/user-analytics\" {"), "{dot}");
    assert!(dot.trim_end().ends_with('}'));
    assert_eq!(dot.matches('{').count(), dot.matches('}').count());
    for edge in [
        "\"source\" -> \"step-0\";",
        "\"step-0\" -> \"step-1\";",
        "\"step-1\" -> \"sink\";",
        "\"sink\" -> \"dlq\" [style=dashed];",
    ] {
        assert!(dot.contains(edge), "{edge} in {dot}");
    }
    assert!(dot.contains("\"step-0\" [label=") && dot.contains("color=red"), "{dot}");
    assert_eq!(dot.matches('"').count() % 2, 0, "quotes balanced: {dot}");
}

#[test]
fn a_missing_service_shows_in_the_graph() {
    let mut objects = vec![pipeline("False", "ReferencesMissing", "m")];
    objects.extend(all_services_ready().into_iter().filter(|s| s["kind"] != "EtlSink"));
    let s = snapshot(objects);
    let g = graph::graph(&s, &s.pipelines[0]);
    assert!(g.stages[3].missing);
    assert!(render::graph_text(&g).contains("MISSING"));
}

#[test]
fn status_shows_members_with_their_pods_then_services_and_pipelines() {
    let objects = image_pull_failure();
    let s = snapshot(objects);
    let text = render::status_cluster(&s, &s.clusters[0], now());
    assert!(
        text.contains("Phase:     Unavailable (Ready=False PodsNotReady: 2 of 3 router pods ready)"),
        "{text}"
    );
    assert!(text.contains("Leader:    my-cluster-0 (Raft id 1)"), "{text}");
    assert!(text.contains("Term:      7"), "{text}");
    let row = |pod: &str| -> Vec<String> {
        text.lines().find(|l| l.starts_with(pod)).unwrap().split_whitespace().map(str::to_owned).collect()
    };
    assert_eq!(row("my-cluster-0"), ["my-cluster-0", "1", "Leader", "true", "true", "node-0", "0", "10m"]);
    assert_eq!(row("my-cluster-2"), ["my-cluster-2", "3", "Follower", "true", "false", "node-2", "0", "10m"]);
    for name in ["kafka-users", "filter-active", "enrich-geo", "clickhouse-analytics"] {
        assert!(
            text.lines().any(|l| l.contains(name) && l.contains("Registered") && l.contains("Healthy")),
            "{name}: {text}"
        );
    }
    assert!(
        text.lines().any(|l| l.starts_with("user-analytics") && l.contains("RouterClusterNotReady")),
        "{text}"
    );

    let summary = render::status_summary(&s, true, now());
    let lines: Vec<&str> = summary.lines().collect();
    assert!(lines[0].starts_with("NAMESPACE"), "{summary}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "shop",
            "my-cluster",
            "Unavailable",
            "2/3",
            "my-cluster-0",
            "7",
            "PodsNotReady",
            "4/4",
            "0/1",
            "10m"
        ]
    );
}

#[test]
fn tables_align_columns_as_kubectl_does() {
    let text = render::table(
        &["NAME", "PHASE"],
        &[vec!["a-long-name".into(), "Ready".into()], vec!["b".into(), "Pending".into()]],
    );
    assert_eq!(text, "NAME          PHASE\na-long-name   Ready\nb             Pending\n");
}

#[test]
fn the_krew_manifest_installs_this_binary_at_this_version() {
    let manifest: Value = serde_norway::from_str(include_str!("../../../deploy/krew/conveyor.yaml")).unwrap();
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "conveyor", "kubectl finds it as `kubectl conveyor`");
    assert_eq!(manifest["spec"]["version"], format!("v{}", env!("CARGO_PKG_VERSION")));
    let platforms = manifest["spec"]["platforms"].as_array().unwrap();
    // The archives the release workflow builds: linux amd64 and arm64.
    assert_eq!(platforms.len(), 2);
    for platform in platforms {
        assert_eq!(platform["bin"], "kubectl-conveyor");
        assert_eq!(platform["sha256"].as_str().unwrap().len(), 64);
        assert!(
            platform["uri"]
                .as_str()
                .unwrap()
                .contains(&format!("kubectl-conveyor-{}-linux-", env!("CARGO_PKG_VERSION")))
        );
    }
}
