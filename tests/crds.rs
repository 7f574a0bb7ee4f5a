//! The CRDs on a real apiserver: they install, accept the seed's examples,
//! print useful columns and reject invalid objects naming the field.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{
    ControlPlane, kubectl, kubectl_eventually, kubectl_ok, repo_path, shared_with_crds, test_namespace,
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
    use std::io::Write;
    let mut child = plane
        .kubectl()
        .args(["apply", "--validate=false", "-n", namespace, "-f", "-"])
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
    assert_eq!(header, ["NAME", "SOURCE", "SINK", "PHASE", "READY", "AGE"]);
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
