//! The CRDs on a real apiserver: they install, accept the seed's examples,
//! print useful columns and reject invalid objects naming the field, the
//! router cluster's cross-field rules (CEL) in the words of its conditions.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use conveyor_etl_operator::crd::EtlRouterCluster;
use conveyor_etl_operator::router_cluster::validate::{MAX_NAME_LENGTH, validate};
use support::{
    ControlPlane, install_crds, kubectl, kubectl_eventually, kubectl_ok, repo_path, shared_with_crds,
    test_namespace,
};

const KINDS: [&str; 5] = ["etlrouterclusters", "etlpipelines", "etlsources", "etltransforms", "etlsinks"];

#[test]
fn crds_subcommand_output_equals_deploy_file() {
    let output = Command::new(env!("CARGO_BIN_EXE_conveyor-etl-operator")).arg("crds").output().unwrap();
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).unwrap();
    let committed = std::fs::read_to_string(repo_path("deploy/crds/crds.yaml")).unwrap();
    assert!(
        generated == committed,
        "deploy/crds/crds.yaml is stale: regenerate it with `cargo run -- crds > deploy/crds/crds.yaml`"
    );
}

/// Paths of the properties under `schema` (at `path`) that have no description.
fn undescribed(schema: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
    if let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) {
        for (name, property) in properties {
            let here = format!("{path}.{name}");
            let described =
                property.get("description").and_then(|d| d.as_str()).is_some_and(|d| !d.trim().is_empty());
            if !described {
                missing.push(here.clone());
            }
            undescribed(property, &here, missing);
        }
    }
    if let Some(items) = schema.get("items") {
        undescribed(items, &format!("{path}[]"), missing);
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        undescribed(values, &format!("{path}{{}}"), missing);
    }
}

#[test]
fn every_property_of_every_crd_has_a_description_for_kubectl_explain() {
    let mut missing = Vec::new();
    for crd in conveyor_etl_operator::crd::all() {
        for version in &crd.spec.versions {
            let schema = serde_json::to_value(&version.schema.as_ref().unwrap().open_api_v3_schema).unwrap();
            undescribed(&schema, &crd.spec.names.kind, &mut missing);
        }
    }
    assert!(
        missing.is_empty(),
        "{} properties without a description:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn crds_install_and_are_established_with_status_subresource() {
    let plane = shared_with_crds();
    for kind in KINDS {
        let name = format!("{kind}.conveyor.etl");
        let established = kubectl_ok(
            plane,
            &["get", "crd", &name, "-o", "jsonpath={.status.conditions[?(@.type==\"Established\")].status}"],
        );
        assert_eq!(established, "True", "{name} not Established");
        let subresources =
            kubectl_ok(plane, &["get", "crd", &name, "-o", "jsonpath={.spec.versions[0].subresources}"]);
        assert!(subresources.contains("status"), "{name} has no status subresource: {subresources}");
    }
}

fn apply_file(plane: &ControlPlane, namespace: &str, file: &str) -> std::process::Output {
    kubectl(plane, &["apply", "-n", namespace, "-f", repo_path(file).to_str().unwrap()])
}

fn apply_yaml(plane: &ControlPlane, namespace: &str, yaml: &str) -> std::process::Output {
    kubectl_stdin(plane, &["apply", "--validate=false", "-n", namespace, "-f", "-"], yaml)
}

fn kubectl_stdin(plane: &ControlPlane, args: &[&str], yaml: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = plane
        .kubectl()
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn seed_examples_apply_unchanged_and_list_with_columns() {
    let plane = shared_with_crds();
    let namespace = test_namespace(&plane.client().await, "seed").await;
    for file in ["deploy/examples/seed.yaml", "deploy/examples/services.yaml"] {
        let output = apply_file(plane, &namespace, file);
        assert!(output.status.success(), "{file}: {}", String::from_utf8_lossy(&output.stderr));
    }

    let all = kubectl_ok(plane, &["get", "conveyor", "-n", &namespace, "-o", "name"]);
    let mut names: Vec<&str> = all.lines().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "etlpipeline.conveyor.etl/user-analytics",
            "etlroutercluster.conveyor.etl/my-cluster",
            "etlsink.conveyor.etl/clickhouse-analytics",
            "etlsource.conveyor.etl/kafka-users",
            "etltransform.conveyor.etl/enrich-geo",
            "etltransform.conveyor.etl/filter-active",
        ]
    );

    let clusters = kubectl_ok(plane, &["get", "etlrc", "-n", &namespace]);
    let header: Vec<&str> = clusters.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "REPLICAS", "READY", "LEADER", "PHASE", "AGE"]);
    let row: Vec<&str> = clusters.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], ["my-cluster", "3"]);

    let pipelines = kubectl_ok(plane, &["get", "etlp", "-n", &namespace]);
    let header: Vec<&str> = pipelines.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SOURCE", "SINK", "CLUSTER", "ENABLED", "PHASE", "READY", "AGE"]);
    let row: Vec<&str> = pipelines.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["user-analytics", "kafka-users", "clickhouse-analytics"]);

    for (short, name, endpoint) in [
        ("etlsrc", "kafka-users", "kafka-source-svc:50051"),
        ("etltf", "enrich-geo", "enrich-geo-svc:50051"),
        ("etlsink", "clickhouse-analytics", "clickhouse-sink-svc:50051"),
    ] {
        let listing = kubectl_ok(plane, &["get", short, name, "-n", &namespace]);
        let header: Vec<&str> = listing.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header, ["NAME", "ENDPOINT", "PHASE", "READY", "AGE"]);
        assert!(listing.lines().nth(1).unwrap().contains(endpoint), "{listing}");
    }

    // Defaults the schema fills in are visible on the stored object.
    let dlq = kubectl_ok(
        plane,
        &["get", "etlp", "user-analytics", "-n", &namespace, "-o", "jsonpath={.spec.enabled}"],
    );
    assert_eq!(dlq, "true");
    let grpc_port = kubectl_ok(
        plane,
        &["get", "etlrc", "my-cluster", "-n", &namespace, "-o", "jsonpath={.spec.ports.grpc}"],
    );
    assert_eq!(grpc_port, "50051");
}

#[test]
fn kubectl_explain_reads_field_descriptions() {
    let plane = shared_with_crds();
    let explained = kubectl_eventually(plane, &["explain", "etlpipeline.spec.dlq"], Duration::from_secs(60));
    assert!(explained.contains("maxRetries"), "{explained}");
    assert!(explained.contains("dead-letter queue"), "{explained}");
    let explained = kubectl_eventually(
        plane,
        &["explain", "etlroutercluster.spec.raft.heartbeatIntervalMs"],
        Duration::from_secs(60),
    );
    let words = explained.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("Must be below electionTimeoutMs"), "{explained}");
}

#[test]
fn kubectl_explain_describes_the_pod_template_and_the_scale_fields() {
    let plane = shared_with_crds();
    let explained =
        kubectl_eventually(plane, &["explain", "etlroutercluster.spec.podTemplate"], Duration::from_secs(60));
    let words = explained.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("Additions to the router pods the operator generates"), "{explained}");
    for field in
        ["imagePullSecrets", "serviceAccountName", "priorityClassName", "labels", "annotations", "env"]
    {
        assert!(explained.contains(field), "no {field} in:\n{explained}");
    }
    let explained =
        kubectl_eventually(plane, &["explain", "etlroutercluster.status.selector"], Duration::from_secs(60));
    assert!(explained.contains("Label selector of the router pods"), "{explained}");
}

#[tokio::test]
async fn invalid_objects_are_rejected_naming_the_field() {
    let plane = shared_with_crds();
    let client = plane.client().await;
    let namespace = test_namespace(&client, "invalid").await;
    let minor: u32 = client.apiserver_version().await.unwrap().minor.trim_end_matches('+').parse().unwrap();
    // Kubernetes 1.20 names the list, newer releases the item.
    let empty_step = if minor <= 20 {
        "spec.steps in body should be at least 1 chars long"
    } else {
        "spec.steps[0] in body should be at least 1 chars long"
    };
    let cases = [
        (
            "replicas: 0",
            "apiVersion: conveyor.etl/v1\nkind: EtlRouterCluster\nmetadata:\n  name: zero\nspec:\n  replicas: 0\n  image: router:1\n",
            "spec.replicas",
        ),
        (
            "election timeout 0",
            "apiVersion: conveyor.etl/v1\nkind: EtlRouterCluster\nmetadata:\n  name: fast\nspec:\n  replicas: 3\n  image: router:1\n  raft:\n    electionTimeoutMs: 0\n",
            "spec.raft.electionTimeoutMs",
        ),
        (
            "empty image",
            "apiVersion: conveyor.etl/v1\nkind: EtlRouterCluster\nmetadata:\n  name: noimage\nspec:\n  replicas: 3\n  image: \"\"\n",
            "spec.image",
        ),
        (
            "pipeline without source",
            "apiVersion: conveyor.etl/v1\nkind: EtlPipeline\nmetadata:\n  name: nosource\nspec:\n  sink: s\n",
            "spec.source",
        ),
        (
            "empty step name",
            "apiVersion: conveyor.etl/v1\nkind: EtlPipeline\nmetadata:\n  name: emptystep\nspec:\n  source: a\n  steps: [\"\"]\n  sink: b\n",
            empty_step,
        ),
        (
            "endpoint not a string",
            "apiVersion: conveyor.etl/v1\nkind: EtlSource\nmetadata:\n  name: numeric\nspec:\n  grpc:\n    endpoint: 50051\n",
            "spec.grpc.endpoint",
        ),
        (
            "sink without grpc",
            "apiVersion: conveyor.etl/v1\nkind: EtlSink\nmetadata:\n  name: nogrpc\nspec: {}\n",
            "spec.grpc",
        ),
    ];
    for (what, yaml, field) in cases {
        let output = apply_yaml(plane, &namespace, yaml);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{what}: accepted");
        assert!(stderr.contains(field), "{what}: error does not name {field}: {stderr}");
    }
    let stored = kubectl_ok(plane, &["get", "conveyor", "-n", &namespace, "-o", "name"]);
    assert_eq!(stored.trim(), "", "invalid objects were stored: {stored}");
}

fn router_cluster(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: conveyor.etl/v1\nkind: EtlRouterCluster\nmetadata:\n  name: {name}\nspec:\n  replicas: 3\n  image: router:1\n{spec}"
    )
}

fn raft(heartbeat: u32, election: u32) -> String {
    format!("  raft:\n    heartbeatIntervalMs: {heartbeat}\n    electionTimeoutMs: {election}\n")
}

/// The errors the operator's own check reports for `yaml`, in the words its conditions show.
fn operator_errors(yaml: &str) -> Vec<String> {
    let cluster: EtlRouterCluster = serde_norway::from_str(yaml).unwrap();
    validate(&cluster.metadata.name.unwrap(), &cluster.spec).errors
}

fn refusal(plane: &ControlPlane, namespace: &str, what: &str, yaml: &str) -> String {
    let output = apply_yaml(plane, namespace, yaml);
    assert!(!output.status.success(), "{what}: accepted");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn cel_rules_refuse_what_the_operator_reports_in_its_words() {
    let plane = shared_with_crds();
    let namespace = test_namespace(&plane.client().await, "cel").await;
    let cases = [
        (
            "heartbeat not below election timeout",
            router_cluster("beat", &raft(300, 300)),
            &["spec.raft.heartbeatIntervalMs"][..],
        ),
        (
            "grpc port on the defaulted raft port",
            router_cluster("grpc", "  ports:\n    grpc: 50052\n"),
            &["spec.ports.raft"],
        ),
        (
            "three equal ports",
            router_cluster("same", "  ports:\n    grpc: 7000\n    raft: 7000\n    metrics: 7000\n"),
            &["spec.ports.raft", "spec.ports.metrics"],
        ),
        ("zero storage", router_cluster("zero", "  storage:\n    size: \"0\"\n"), &["spec.storage.size"]),
        (
            "storage size not a size",
            router_cluster("ten", "  storage:\n    size: ten\n"),
            &["spec.storage.size"],
        ),
        ("name too long", router_cluster(&"a".repeat(MAX_NAME_LENGTH + 1), ""), &[]),
    ];
    for (what, yaml, fields) in &cases {
        let expected = operator_errors(yaml);
        assert!(!expected.is_empty(), "{what}: the operator finds nothing wrong");
        let stderr = refusal(plane, &namespace, what, yaml);
        for message in &expected {
            assert!(stderr.contains(message.as_str()), "{what}: refusal lacks {message:?}: {stderr}");
        }
        for field in *fields {
            assert!(
                stderr.contains(&format!("{field}: Invalid value")),
                "{what}: names no {field}: {stderr}"
            );
        }
    }
    let stored = kubectl_ok(plane, &["get", "etlrc", "-n", &namespace, "-o", "name"]);
    assert_eq!(stored.trim(), "", "refused objects were stored: {stored}");

    // The longest name, a tight election timeout (a warning, not an error) and a size: accepted.
    let name = "b".repeat(MAX_NAME_LENGTH);
    let valid = router_cluster(&name, &format!("{}  storage:\n    size: 10Gi\n", raft(200, 300)));
    assert_eq!(operator_errors(&valid), Vec::<String>::new());
    let output = apply_yaml(plane, &namespace, &valid);
    assert!(output.status.success(), "valid cluster refused: {}", String::from_utf8_lossy(&output.stderr));

    // The rules hold for updates too.
    let update = router_cluster(&name, &raft(400, 300));
    let stderr = refusal(plane, &namespace, "update to an invalid spec", &update);
    assert!(stderr.contains(&operator_errors(&update)[0]), "{stderr}");
}

/// The CRDs as they were before the CEL rules.
fn crds_without_rules() -> String {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.remove("x-kubernetes-validations");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let crds = std::fs::read_to_string(repo_path("deploy/crds/crds.yaml")).unwrap();
    let documents: Vec<String> = crds
        .split("\n---\n")
        .map(|document| {
            let mut crd: serde_json::Value = serde_norway::from_str(document).unwrap();
            strip(&mut crd);
            serde_norway::to_string(&crd).unwrap()
        })
        .collect();
    assert!(!documents.join("").contains("x-kubernetes-validations"));
    documents.join("---\n")
}

/// Clusters stored before the rules keep taking the operator's status writes
/// (which are validated against the whole object): the name rule holds only
/// while a cluster has no status, and validation ratcheting (Kubernetes
/// ≥1.30) passes fields that did not change.
#[test]
fn clusters_stored_before_the_rules_still_take_status_writes() {
    let plane = ControlPlane::start();
    let output = apply_yaml(&plane, "default", &crds_without_rules());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    kubectl_ok(&plane, &["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
    let long = "c".repeat(MAX_NAME_LENGTH + 1);
    for yaml in [router_cluster(&long, ""), router_cluster("beat", &raft(300, 300))] {
        let output = apply_yaml(&plane, "default", &yaml);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }

    install_crds(&plane);
    let probe = router_cluster("probe", &raft(300, 300));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let output = kubectl_stdin(&plane, &["apply", "--dry-run=server", "-f", "-"], &probe);
        if String::from_utf8_lossy(&output.stderr).contains("must be below spec.raft.electionTimeoutMs") {
            break;
        }
        assert!(Instant::now() < deadline, "the CEL rules never came into force: {output:?}");
        std::thread::sleep(Duration::from_millis(200)); // poll interval
    }

    let status = r#"{"status":{"phase":"Pending"}}"#;
    for name in [long.as_str(), "beat"] {
        kubectl_ok(&plane, &["patch", "etlrc", name, "--subresource=status", "--type=merge", "-p", status]);
    }
    kubectl_ok(&plane, &["patch", "etlrc", &long, "--type=merge", "-p", r#"{"spec":{"replicas":5}}"#]);
}

/// The operator's own check stays for clusters stored before the rules: such
/// a cluster is Pending with InvalidSpec in the rule's words, a Warning
/// Event says so, nothing is deployed, and fixing the spec deploys it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_stored_before_the_rules_is_reported_invalid_and_deployed_once_fixed() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::events::v1::Event;
    use kube::api::{Api, Patch, PatchParams};

    let plane = tokio::task::spawn_blocking(ControlPlane::start).await.unwrap();
    tokio::task::block_in_place(|| {
        let output = apply_yaml(&plane, "default", &crds_without_rules());
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        kubectl_ok(&plane, &["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
        let output = apply_yaml(&plane, "default", &router_cluster("beat", &raft(300, 300)));
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        install_crds(&plane);
        support::operator::bind_operator_role(&plane);
    });
    let operator = support::operator::RunningOperator::start(&plane, "default").await;
    let client = plane.client().await;
    let clusters: Api<EtlRouterCluster> = Api::namespaced(client.clone(), "default");
    let rule = "spec.raft.heartbeatIntervalMs (300) must be below spec.raft.electionTimeoutMs (300)";
    let pending =
        support::eventually(Duration::from_secs(60), "InvalidSpec on the stored cluster", || async {
            let cluster = clusters.get("beat").await.ok()?;
            let ready = cluster.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?.clone();
            (ready.reason == "InvalidSpec").then_some((cluster, ready))
        })
        .await;
    let (cluster, ready) = pending;
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains(rule), "{}", ready.message);
    assert_eq!(cluster.status.unwrap().phase, Some(conveyor_etl_operator::crd::ClusterPhase::Pending));
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    support::eventually(Duration::from_secs(60), "a Warning Event naming InvalidSpec", || async {
        let events = events.list(&Default::default()).await.ok()?.items;
        events
            .iter()
            .any(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("InvalidSpec"))
            .then_some(())
    })
    .await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    assert!(sets.get_opt("beat").await.unwrap().is_none(), "deployed an invalid spec");

    let fix = serde_json::json!({"spec": {"raft": {"heartbeatIntervalMs": 100}}});
    clusters.patch("beat", &PatchParams::default(), &Patch::Merge(fix)).await.unwrap();
    support::eventually(Duration::from_secs(60), "the fixed cluster's StatefulSet", || async {
        sets.get_opt("beat").await.ok().flatten()
    })
    .await;
    operator.stop().await;
}

/// A cluster the current rules refuse as a whole (stored before them, with a
/// name now too long, and no status yet) cannot take the operator's
/// finalizer: the API server's refusal is a failure to show (a condition and
/// a Warning Event in the rule's words), not a stale view retried quietly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalizer_patch_the_rules_refuse_is_reported_not_retried_quietly() {
    use k8s_openapi::api::events::v1::Event;
    use kube::api::Api;

    let plane = tokio::task::spawn_blocking(ControlPlane::start).await.unwrap();
    let long = "d".repeat(MAX_NAME_LENGTH + 1);
    tokio::task::block_in_place(|| {
        let output = apply_yaml(&plane, "default", &crds_without_rules());
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        kubectl_ok(&plane, &["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
        let storage = "  storage:\n    size: 1Gi\n    retentionPolicy: Delete\n";
        let output = apply_yaml(&plane, "default", &router_cluster(&long, storage));
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        install_crds(&plane);
        support::operator::bind_operator_role(&plane);
        let probe = router_cluster(&"p".repeat(MAX_NAME_LENGTH + 1), "");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let output = kubectl_stdin(&plane, &["apply", "--dry-run=server", "-f", "-"], &probe);
            if String::from_utf8_lossy(&output.stderr).contains("may have at most 52") {
                break;
            }
            assert!(Instant::now() < deadline, "the CEL rules never came into force: {output:?}");
            std::thread::sleep(Duration::from_millis(200)); // poll interval
        }
    });
    let client = plane.client().await;
    // Every Synced condition the cluster shows, as the watch delivers them.
    let synced = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let seen = synced.clone();
    let clusters: Api<EtlRouterCluster> = Api::namespaced(client.clone(), "default");
    let name = long.clone();
    let watch = tokio::spawn(async move {
        use futures::StreamExt;
        let mut clusters = kube::runtime::watcher::watch_object(clusters, &name).boxed();
        while let Some(Ok(Some(cluster))) = clusters.next().await {
            let conditions = cluster.status.map(|status| status.conditions).unwrap_or_default();
            if let Some(c) = conditions.into_iter().find(|c| c.type_ == "Synced") {
                seen.lock().unwrap().push((c.reason, c.message));
            }
        }
    });
    let operator = support::operator::RunningOperator::start(&plane, "default").await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let warned = support::eventually(Duration::from_secs(60), "a FinalizerFailed Warning Event", || async {
        let events = events.list(&Default::default()).await.ok()?.items;
        events
            .into_iter()
            .find(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("FinalizerFailed"))
    })
    .await;
    let note = warned.note.unwrap_or_default();
    assert!(note.starts_with("could not add the finalizer conveyor.etl/cleanup: "), "{note}");
    assert!(note.contains("may have at most 52") && !note.contains("Status {"), "{note}");
    support::eventually(Duration::from_secs(60), "Synced=False with FinalizerFailed", || async {
        let seen = synced.lock().unwrap();
        seen.iter()
            .any(|(reason, message)| reason == "FinalizerFailed" && message.contains("may have at most 52"))
            .then_some(())
    })
    .await;
    watch.abort();
    operator.stop().await;
}
