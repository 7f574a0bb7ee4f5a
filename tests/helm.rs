//! The Helm chart in deploy/helm/conveyor-etl-operator: lint and template,
//! the values schema, CRDs from the same generator as deploy/crds, install,
//! upgrade and uninstall on the real apiserver, and the operator running with
//! the service account the chart creates (its token, its ClusterRole only).

mod support;

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};
use serde_json::Value;

use conveyor_etl_operator::crd::{ClusterPhase, EtlRouterCluster};
use support::control_plane::install_crypto_provider;
use support::kubelet::FakeKubelet;
use support::objects::{api_in, example_set, kind_of, name_of, wait_all_ready};
use support::operator::RunningOperator;
use support::tools::{
    assert_least_privilege, assert_restricted_operator_deployment, helm, helm_ok, kubectl_new_ok, rules,
    yaml_documents,
};
use support::{ControlPlane, eventually, repo_path, test_namespace};

const RELEASE: &str = "conveyor-etl-operator";
const NAMESPACE: &str = "conveyor-system";
const CRDS: [&str; 5] = [
    "etlrouterclusters.conveyor.etl",
    "etlpipelines.conveyor.etl",
    "etlsources.conveyor.etl",
    "etltransforms.conveyor.etl",
    "etlsinks.conveyor.etl",
];

fn chart() -> String {
    repo_path("deploy/helm/conveyor-etl-operator").to_str().unwrap().to_owned()
}

/// `helm template` of the chart with `--set` values, as JSON documents.
fn template(sets: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec!["template", RELEASE, chart.as_str(), "-n", NAMESPACE];
    for set in sets {
        args.extend(["--set", set]);
    }
    yaml_documents(&helm_ok(None, &args))
}

fn kinds(documents: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = documents.iter().map(|d| d["kind"].as_str().unwrap().to_owned()).collect();
    kinds.sort();
    kinds
}

fn find<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

fn env<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap();
    &env.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("no env {name}"))["value"]
}

/// The CRDs `conveyor-etl-operator crds` prints.
fn generated_crds() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_conveyor-etl-operator")).arg("crds").output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

/// Numbers as f64, so 65535 and 65535.0 compare equal (Helm's YAML round trip drops the `.0`).
fn normalize(value: &mut Value) {
    match value {
        Value::Number(n) => *value = serde_json::json!(n.as_f64().unwrap()),
        Value::Array(items) => items.iter_mut().for_each(normalize),
        Value::Object(map) => map.values_mut().for_each(normalize),
        _ => {}
    }
}

#[test]
fn lint_passes_and_template_renders_what_the_values_ask() {
    let lint = helm_ok(None, &["lint", "--strict", &chart()]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");

    let defaults = template(&[]);
    let mut expected = vec![
        "ClusterRole",
        // Aggregated into the built-in view, edit and admin roles.
        "ClusterRole",
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "Deployment",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ];
    assert_eq!(kinds(&defaults), expected);
    let deployment = find(&defaults, "Deployment");
    assert_restricted_operator_deployment(deployment, 8080);
    assert_eq!(deployment["spec"]["replicas"], 1);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"], "registry.example/conveyor-etl/conveyor-etl-operator:0.1.0",
        "tag: the appVersion"
    );
    assert_eq!(env(deployment, "CONVEYOR_LOG_FORMAT"), "auto", "the binary's default: JSON in pods");
    assert_eq!(container["resources"]["limits"], serde_json::json!({"cpu": "200m", "memory": "256Mi"}));
    assert_eq!(env(deployment, "CONVEYOR_LEADER_ELECTION"), "true");
    assert_eq!(env(deployment, "CONVEYOR_LEASE_DURATION"), "15s");
    assert_eq!(env(deployment, "CONVEYOR_RENEW_DEADLINE"), "10s");
    assert_eq!(env(deployment, "CONVEYOR_RETRY_PERIOD"), "2s");
    for crd in defaults.iter().filter(|d| d["kind"] == "CustomResourceDefinition") {
        assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep", "{}", crd["metadata"]);
    }

    // Every value reaches the objects.
    let set = template(&[
        "replicaCount=2",
        "image.repository=registry.example/conveyor",
        "image.tag=1.2.3",
        "resources.limits.cpu=1",
        "resources.limits.memory=1Gi",
        "leaderElection.leaseDuration=30s",
        "leaderElection.renewDeadline=20s",
        "leaderElection.retryPeriod=4s",
        "logFormat=json",
        "otlpEndpoint=http://collector.observability:4317",
        "metricsPort=9090",
        "watchNamespaces={pipelines,staging}",
        "commonLabels.team=data",
        "commonAnnotations.owner=data-team",
        "nodeSelector.disk=ssd",
        "tolerations[0].key=dedicated",
        "tolerations[0].operator=Exists",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=zone",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
        "podSecurityContext.runAsUser=1234",
        "crds.keep=false",
        "extraEnv[0].name=KUBERNETES_SERVICE_HOST",
        "extraEnv[0].value=10.1.2.3",
    ]);
    let deployment = find(&set, "Deployment");
    assert_restricted_operator_deployment(deployment, 9090);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["image"], "registry.example/conveyor:1.2.3");
    assert_eq!(pod["containers"][0]["resources"]["limits"]["memory"], "1Gi");
    assert_eq!(env(deployment, "CONVEYOR_LEASE_DURATION"), "30s");
    assert_eq!(env(deployment, "CONVEYOR_RENEW_DEADLINE"), "20s");
    assert_eq!(env(deployment, "CONVEYOR_RETRY_PERIOD"), "4s");
    assert_eq!(env(deployment, "CONVEYOR_LOG_FORMAT"), "json");
    assert_eq!(env(deployment, "OTEL_EXPORTER_OTLP_ENDPOINT"), "http://collector.observability:4317");
    assert_eq!(env(deployment, "CONVEYOR_WATCH_NAMESPACE"), "pipelines,staging");
    assert_eq!(env(deployment, "KUBERNETES_SERVICE_HOST"), "10.1.2.3");
    assert_eq!(pod["nodeSelector"]["disk"], "ssd");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert!(pod["affinity"]["nodeAffinity"].is_object());
    assert_eq!(pod["securityContext"]["runAsUser"], 1234);
    for document in &set {
        assert_eq!(document["metadata"]["labels"]["team"], "data", "{}", document["metadata"]);
        assert_eq!(document["metadata"]["annotations"]["owner"], "data-team", "{}", document["metadata"]);
    }
    assert_eq!(pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"], true);
    for crd in set.iter().filter(|d| d["kind"] == "CustomResourceDefinition") {
        assert!(crd["metadata"]["annotations"].get("helm.sh/resource-policy").is_none());
    }

    // The toggles leave their objects out.
    let bare = template(&["crds.install=false", "rbac.create=false", "serviceAccount.create=false"]);
    assert_eq!(kinds(&bare), ["Deployment", "Service"]);
    assert_eq!(find(&bare, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"], "default");
    expected.retain(|kind| *kind != "CustomResourceDefinition");
    assert_eq!(kinds(&template(&["crds.install=false"])), expected);
}

#[test]
fn bad_values_are_refused_by_the_schema_naming_the_value() {
    let cases = [
        ("replicaCount=-1", "/replicaCount"),
        ("replicaCount=two", "/replicaCount"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("image.repository=", "/image/repository"),
        ("metricsPort=70000", "/metricsPort"),
        ("leaderElection.leaseDuration=soon", "/leaderElection/leaseDuration"),
        ("logFormat=xml", "/logFormat"),
        ("otlpEndpoint=collector:4317", "/otlpEndpoint"),
        ("resources.limits.memory=lots", "/resources/limits/memory"),
        ("crds.install=maybe", "/crds/install"),
        ("extraEnv[0].value=nameless", "/extraEnv/0"),
        ("replicaCont=2", "replicaCont"),
        // Two active operators would fight: more than one replica needs leader election.
        ("replicaCount=2,leaderElection.enabled=false", "/leaderElection/enabled"),
    ];
    for (set, named) in cases {
        let output = helm(None, &["template", RELEASE, &chart(), "--set", set]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "--set {set} was accepted");
        assert!(stderr.contains("values don't meet the specifications of the schema"), "{set}: {stderr}");
        assert!(stderr.contains(named), "--set {set}: the message does not name {named}: {stderr}");
    }
}

#[test]
fn chart_crds_and_deploy_crds_come_from_the_same_generator() {
    let generated = generated_crds();
    let file =
        std::fs::read_to_string(repo_path("deploy/helm/conveyor-etl-operator/files/crds.yaml")).unwrap();
    assert!(
        file == generated,
        "deploy/helm/conveyor-etl-operator/files/crds.yaml is stale: regenerate it with \
         `cargo run -q -- crds > deploy/helm/conveyor-etl-operator/files/crds.yaml`"
    );
    // And the chart renders them unchanged but for its labels and annotations.
    let mut expected = yaml_documents(&generated);
    let mut rendered: Vec<Value> =
        template(&[]).into_iter().filter(|d| d["kind"] == "CustomResourceDefinition").collect();
    for crd in &mut rendered {
        let metadata = crd["metadata"].as_object_mut().unwrap();
        metadata.remove("labels");
        metadata.remove("annotations");
    }
    expected.iter_mut().chain(rendered.iter_mut()).for_each(normalize);
    assert_eq!(rendered.len(), expected.len());
    for (rendered, expected) in rendered.iter().zip(&expected) {
        assert!(rendered == expected, "the chart renders {} differently", expected["metadata"]["name"]);
    }
}

#[test]
fn chart_rbac_is_deploy_rbac_and_least_privilege() {
    let documents = template(&[]);
    let file = yaml_documents(&std::fs::read_to_string(repo_path("deploy/rbac/cluster-role.yaml")).unwrap());
    let role = documents
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == RELEASE)
        .expect("the operator's ClusterRole");
    assert_eq!(
        rules(role),
        rules(&file[0]),
        "the chart's ClusterRole differs from deploy/rbac/cluster-role.yaml"
    );
    assert_least_privilege(role);
    let leases = find(&documents, "Role");
    assert_least_privilege(leases);
    let kustomize = yaml_documents(
        &std::fs::read_to_string(repo_path("deploy/operator/leader-election-role.yaml")).unwrap(),
    );
    assert_eq!(rules(leases), rules(&kustomize[0]), "the chart's lease Role differs from deploy/operator's");
    assert_eq!(leases["metadata"]["namespace"], NAMESPACE);
}

/// The chart installed once on this binary's shared control plane, as the
/// README says: release `conveyor-etl-operator` in `conveyor-system`.
fn installed() -> &'static ControlPlane {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let plane = ControlPlane::shared();
    INSTALLED.get_or_init(|| {
        let out =
            helm_ok(Some(plane), &["install", RELEASE, &chart(), "-n", NAMESPACE, "--create-namespace"]);
        assert!(out.contains("STATUS: deployed"), "{out}");
        let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
        let crds: Vec<String> = CRDS.iter().map(|crd| format!("crd/{crd}")).collect();
        args.extend(crds.iter().map(String::as_str));
        kubectl_new_ok(plane, &args);
    });
    plane
}

#[tokio::test]
async fn install_creates_the_crds_service_account_rbac_and_deployment() {
    let plane = installed();
    let client = plane.client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in CRDS {
        let crd = crds.get(name).await.unwrap();
        let annotations = crd.metadata.annotations.unwrap();
        assert_eq!(annotations["meta.helm.sh/release-name"], RELEASE);
        assert_eq!(annotations["helm.sh/resource-policy"], "keep");
    }
    Api::<ServiceAccount>::namespaced(client.clone(), NAMESPACE).get(RELEASE).await.unwrap();
    let role = Api::<ClusterRole>::all(client.clone()).get(RELEASE).await.unwrap();
    assert_least_privilege(&serde_json::to_value(role).unwrap());
    let binding = Api::<ClusterRoleBinding>::all(client.clone()).get(RELEASE).await.unwrap();
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!((subject.name.as_str(), subject.namespace.as_deref()), (RELEASE, Some(NAMESPACE)));
    Api::<Role>::namespaced(client.clone(), NAMESPACE)
        .get(&format!("{RELEASE}-leader-election"))
        .await
        .unwrap();
    let deployment = Api::<Deployment>::namespaced(client.clone(), NAMESPACE).get(RELEASE).await.unwrap();
    assert_restricted_operator_deployment(&serde_json::to_value(&deployment).unwrap(), 8080);
    let status = helm_ok(Some(plane), &["status", RELEASE, "-n", NAMESPACE]);
    assert!(status.contains("STATUS: deployed"), "{status}");
}

/// A client holding a fresh token of the chart's service account, from the TokenRequest API.
async fn service_account_client(plane: &ControlPlane) -> Client {
    let token = support::service_account_token(plane, NAMESPACE, RELEASE).await;
    install_crypto_provider();
    Client::try_from(plane.config_with_token(&token).await).unwrap()
}

#[tokio::test]
async fn the_charts_service_account_takes_the_example_set_to_ready_and_cannot_read_secrets() {
    let plane = installed();
    let admin = plane.client().await;
    let client = service_account_client(plane).await;
    let namespace = test_namespace(&admin, "chart-sa").await;

    // A request outside its ClusterRole is refused.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    match secrets.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("listing Secrets with the operator's token: {other:?}"),
    }
    let all_secrets: Api<Secret> = Api::all(client.clone());
    assert!(all_secrets.get_opt("anything").await.is_err(), "a cluster-wide Secret read was allowed");

    // Its ClusterRole is enough to take the whole example set to Ready: the
    // router cluster's formation, the services' registration and the pipeline.
    let _kubelet = FakeKubelet::start(admin.clone(), &namespace, "my-cluster", 50051).await;
    let operator = RunningOperator::start_with_client(client, &namespace);
    for object in example_set() {
        api_in(&admin, &namespace, &kind_of(&object)).create(&Default::default(), &object).await.unwrap();
    }
    wait_all_ready(&admin, &namespace).await;
    let clusters: Api<EtlRouterCluster> = Api::namespaced(admin.clone(), &namespace);
    let status = clusters.get("my-cluster").await.unwrap().status.unwrap();
    assert_eq!(status.phase, Some(ClusterPhase::Ready));
    assert_eq!(status.ready_replicas, Some(3));
    assert!(
        status.conditions.iter().any(|c| c.type_ == "Synced" && c.status == "True"),
        "{:?}",
        status.conditions
    );
    // And the writes were the service account's.
    let user = format!("system:serviceaccount:{NAMESPACE}:{RELEASE}");
    let writes = plane.writes_by(&user);
    assert!(writes.iter().any(|w| w.request_uri.contains("/statefulsets")), "no StatefulSet write by {user}");
    for object in example_set() {
        let status = format!("/{}s/{}/status", kind_of(&object).to_lowercase(), name_of(&object));
        assert!(writes.iter().any(|w| w.request_uri.contains(&status)), "no {status} write by {user}");
    }
    let refused: Vec<_> = writes
        .iter()
        .filter(|w| w.response_status.as_ref().and_then(|s| s["code"].as_u64()) == Some(403))
        .collect();
    assert!(refused.is_empty(), "writes refused to the service account: {refused:?}");
    operator.stop().await;
}

/// The chart copied to a temporary folder, for an upgrade with a changed CRD.
fn chart_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp").arg("-r").arg(format!("{}/.", chart())).arg(dir.path()).status().unwrap();
    assert!(status.success());
    dir
}

#[tokio::test]
async fn upgrade_updates_the_crds_and_uninstall_keeps_them_unless_asked() {
    // Its own control plane: this test uninstalls and deletes CRDs.
    let plane = ControlPlane::start();
    let client = plane.client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let short_names = |crd: CustomResourceDefinition| crd.spec.names.short_names.unwrap_or_default();
    let copy = chart_copy();
    let chart = copy.path().to_str().unwrap().to_owned();
    helm_ok(Some(&plane), &["install", RELEASE, &chart, "-n", NAMESPACE, "--create-namespace"]);
    assert_eq!(short_names(crds.get("etlrouterclusters.conveyor.etl").await.unwrap()), ["etlrc"]);

    // A new version of the CRDs: one more short name.
    let crd_file = copy.path().join("files/crds.yaml");
    let text = std::fs::read_to_string(&crd_file).unwrap();
    let changed = text.replacen("    - etlrc\n", "    - etlrc\n    - conveyorcluster\n", 1);
    assert_ne!(changed, text, "the CRD file no longer has the line this test edits");
    std::fs::write(&crd_file, changed).unwrap();
    let out =
        helm_ok(Some(&plane), &["upgrade", RELEASE, &chart, "-n", NAMESPACE, "--set", "replicaCount=0"]);
    assert!(out.contains("has been upgraded"), "{out}");
    assert_eq!(
        short_names(crds.get("etlrouterclusters.conveyor.etl").await.unwrap()),
        ["etlrc", "conveyorcluster"]
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    assert_eq!(deployments.get(RELEASE).await.unwrap().spec.unwrap().replicas, Some(0));

    // Uninstall removes the operator but keeps the CRDs (and so every resource).
    helm_ok(Some(&plane), &["uninstall", RELEASE, "-n", NAMESPACE, "--wait"]);
    for name in CRDS {
        assert!(crds.get_opt(name).await.unwrap().is_some(), "uninstall deleted {name}");
    }
    assert!(deployments.get_opt(RELEASE).await.unwrap().is_none(), "the Deployment survived uninstall");
    assert!(Api::<ClusterRole>::all(client.clone()).get_opt(RELEASE).await.unwrap().is_none());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    assert!(accounts.get_opt(RELEASE).await.unwrap().is_none());

    // Asked to (crds.keep=false), uninstall deletes them. The reinstall adopts
    // the kept CRDs: they still name this release.
    helm_ok(Some(&plane), &["install", RELEASE, &chart, "-n", NAMESPACE, "--set", "crds.keep=false"]);
    helm_ok(Some(&plane), &["uninstall", RELEASE, "-n", NAMESPACE, "--wait"]);
    eventually(Duration::from_secs(60), "the CRDs deleted", || async {
        let mut left = Vec::new();
        for name in CRDS {
            if crds.get_opt(name).await.unwrap().is_some() {
                left.push(name);
            }
        }
        left.is_empty().then_some(())
    })
    .await;
}

/// The chart as last shipped (0.1.0, packaged from the stop that shipped it:
/// see tests/fixtures/charts/README.md).
fn previous_chart() -> String {
    let path = repo_path("tests/fixtures/charts/conveyor-etl-operator-0.1.0.tgz");
    path.to_str().unwrap().to_owned()
}

/// `helm upgrade` from the previous chart version, with a live cluster,
/// services and pipeline: the CRDs and RBAC are replaced, the operator comes
/// back under the new release (as the Deployment's rollout would start it),
/// every object stays Ready, nothing is submitted or registered twice and
/// nothing of theirs is written.
#[tokio::test]
async fn an_upgrade_from_the_previous_chart_keeps_every_object_ready_and_submits_nothing_twice() {
    // Its own control plane: the release owns the cluster-wide CRDs.
    let plane = ControlPlane::start();
    let admin = plane.client().await;
    let installed = helm_ok(
        Some(&plane),
        &["install", RELEASE, &previous_chart(), "-n", NAMESPACE, "--create-namespace"],
    );
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    let namespace = test_namespace(&admin, "chart-upgrade").await;
    let kubelet = FakeKubelet::start(admin.clone(), &namespace, "my-cluster", 50051).await;
    let operator = RunningOperator::start_with_client(service_account_client(&plane).await, &namespace);
    for object in example_set() {
        api_in(&admin, &namespace, &kind_of(&object)).create(&Default::default(), &object).await.unwrap();
    }
    wait_all_ready(&admin, &namespace).await;
    let sim = kubelet.sim.clone();
    let submissions = || {
        let mut log: Vec<String> = sim
            .mutation_log()
            .iter()
            .filter(|m| ["CreatePipeline", "UpdatePipeline", "Register"].contains(&m.method))
            .map(|m| format!("{} {}", m.method, m.target))
            .collect();
        log.sort();
        log
    };
    let submitted = submissions();
    assert!(submitted.iter().any(|m| m.starts_with("CreatePipeline")), "{submitted:?}");
    operator.stop().await;

    let upgraded = helm_ok(Some(&plane), &["upgrade", RELEASE, &chart(), "-n", NAMESPACE, "--wait=false"]);
    assert!(upgraded.contains("has been upgraded"), "{upgraded}");
    let history = helm_ok(Some(&plane), &["history", RELEASE, "-n", NAMESPACE, "-o", "json"]);
    let history: Value = serde_json::from_str(&history).unwrap();
    let charts: Vec<&str> =
        history.as_array().unwrap().iter().map(|r| r["chart"].as_str().unwrap()).collect();
    let current = format!("conveyor-etl-operator-{}", chart_version());
    assert_eq!(charts, ["conveyor-etl-operator-0.1.0", current.as_str()]);
    // The CRDs are the new chart's.
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let served =
        serde_json::to_value(crds.get("etlrouterclusters.conveyor.etl").await.unwrap().spec).unwrap();
    let shipped: Value =
        yaml_documents(&std::fs::read_to_string(format!("{}/files/crds.yaml", chart())).unwrap())
            .into_iter()
            .find(|crd| crd["metadata"]["name"] == "etlrouterclusters.conveyor.etl")
            .unwrap();
    assert_eq!(
        served["versions"][0]["schema"], shipped["spec"]["versions"][0]["schema"],
        "the upgrade left the previous CRD schema in place"
    );

    let writes_before = plane.writes_by(&format!("system:serviceaccount:{NAMESPACE}:{RELEASE}")).len();
    let reads =
        || ["ListPipelines", "GetPipeline", "ListServices"].iter().map(|m| sim.call_count(m)).sum::<u64>();
    let reads_before = reads();
    let operator = RunningOperator::start_with_client(service_account_client(&plane).await, &namespace);
    // Caught up: the new operator has read the pipeline and the registry.
    eventually(Duration::from_secs(60), "the upgraded operator reading the router", || {
        std::future::ready((reads() >= reads_before + 2).then_some(()))
    })
    .await;
    wait_all_ready(&admin, &namespace).await;
    assert_eq!(submissions(), submitted, "submitted or registered again after the upgrade");
    let writes: Vec<String> = plane
        .writes_by(&format!("system:serviceaccount:{NAMESPACE}:{RELEASE}"))
        .into_iter()
        .skip(writes_before)
        .filter(|w| w.request_uri.contains(&format!("/namespaces/{namespace}/")))
        .map(|w| format!("{} {}", w.verb, w.request_uri))
        .collect();
    assert!(writes.is_empty(), "the upgraded operator rewrote unchanged objects: {writes:#?}");
    operator.stop().await;
    kubelet.stop().await;
}

/// The chart's own version, from its Chart.yaml.
fn chart_version() -> String {
    let text = std::fs::read_to_string(format!("{}/Chart.yaml", chart())).unwrap();
    let line = text.lines().find(|line| line.starts_with("version:")).expect("Chart.yaml has a version");
    line.trim_start_matches("version:").trim().to_owned()
}

/// `watchNamespaces`: the chart's RBAC applied as rendered (a Role in each
/// namespace listed, a ClusterRole that only reads CRDs); the operator under
/// that service account takes the example set to Ready in both namespaces,
/// cannot list anything cluster-wide, and never writes in a third namespace.
#[tokio::test]
async fn with_watch_namespaces_namespaced_rbac_is_enough_and_other_namespaces_are_left_alone() {
    const RELEASE_NS: &str = "conveyor-ns";
    let plane = support::shared_with_crds();
    let admin = plane.client().await;
    let system = test_namespace(&admin, "chart-ns-system").await;
    let watched = [test_namespace(&admin, "chart-ns-a").await, test_namespace(&admin, "chart-ns-b").await];
    let other = test_namespace(&admin, "chart-ns-other").await;
    let list = format!("watchNamespaces={{{}}}", watched.join(","));
    let rendered = helm_ok(None, &["template", RELEASE_NS, &chart(), "-n", &system, "--set", &list]);
    let rbac: Vec<Value> = yaml_documents(&rendered)
        .into_iter()
        .filter(|d| ["ServiceAccount", "Role", "RoleBinding"].contains(&d["kind"].as_str().unwrap()))
        .chain(yaml_documents(&rendered).into_iter().filter(|d| {
            ["ClusterRole", "ClusterRoleBinding"].contains(&d["kind"].as_str().unwrap())
                && d["metadata"]["name"] == format!("{RELEASE_NS}-conveyor-etl-operator")
        }))
        .collect();
    let cluster_role = rbac.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    let crd_read = vec![(
        vec!["apiextensions.k8s.io".to_owned()],
        vec!["customresourcedefinitions".to_owned()],
        vec!["get".to_owned(), "list".to_owned()],
    )];
    assert_eq!(rules(cluster_role), crd_read, "cluster-wide rights beyond reading CRDs");
    let roles: Vec<&Value> = rbac
        .iter()
        .filter(|d| {
            d["kind"] == "Role"
                && d["metadata"]["name"] != format!("{RELEASE_NS}-conveyor-etl-operator-leader-election")
        })
        .collect();
    let mut role_namespaces: Vec<&str> =
        roles.iter().map(|r| r["metadata"]["namespace"].as_str().unwrap()).collect();
    role_namespaces.sort();
    let mut expected: Vec<&str> = watched.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(role_namespaces, expected);
    let file = tempfile::NamedTempFile::new().unwrap();
    let documents: Vec<String> = rbac.iter().map(|d| serde_json::to_string(d).unwrap()).collect();
    std::fs::write(file.path(), documents.join("\n---\n")).unwrap();
    kubectl_new_ok(plane, &["apply", "-f", file.path().to_str().unwrap()]);

    let account = format!("{RELEASE_NS}-conveyor-etl-operator");
    let token = support::service_account_token(plane, &system, &account).await;
    install_crypto_provider();
    let client = Client::try_from(plane.config_with_token(&token).await).unwrap();
    let everywhere: Api<conveyor_etl_operator::crd::EtlPipeline> = Api::all(client.clone());
    match everywhere.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("listing EtlPipelines cluster-wide with the namespaced account: {other:?}"),
    }

    let mut kubelets = Vec::new();
    for namespace in &watched {
        kubelets.push(FakeKubelet::start(admin.clone(), namespace, "my-cluster", 50051).await);
    }
    let namespaces = conveyor_etl_operator::runtime::namespaces::Namespaces::from_list(&watched);
    let operator = RunningOperator::start_watching(client, namespaces, support::operator::timing());
    for namespace in watched.iter().chain([&other]) {
        for object in example_set() {
            api_in(&admin, namespace, &kind_of(&object)).create(&Default::default(), &object).await.unwrap();
        }
    }
    for namespace in &watched {
        wait_all_ready(&admin, namespace).await;
    }
    let user = format!("system:serviceaccount:{system}:{account}");
    let writes = plane.writes_by(&user);
    let refused: Vec<String> = writes
        .iter()
        .filter(|w| w.response_status.as_ref().and_then(|s| s["code"].as_u64()) == Some(403))
        .map(|w| format!("{} {}", w.verb, w.request_uri))
        .collect();
    assert!(refused.is_empty(), "writes refused to the namespaced account: {refused:#?}");
    let elsewhere: Vec<String> = writes
        .iter()
        .filter(|w| w.request_uri.contains(&format!("/namespaces/{other}/")))
        .map(|w| format!("{} {}", w.verb, w.request_uri))
        .collect();
    assert!(elsewhere.is_empty(), "wrote in a namespace it does not watch: {elsewhere:#?}");
    let clusters: Api<EtlRouterCluster> = Api::namespaced(admin.clone(), &other);
    assert!(
        clusters.get("my-cluster").await.unwrap().status.is_none(),
        "a cluster it does not watch has a status"
    );
    operator.stop().await;
    for kubelet in kubelets {
        kubelet.stop().await;
    }
}
