//! The chart's monitoring and access parts on the real control plane, with
//! the real helm, kubectl and promtool: the Prometheus Operator objects are
//! rendered when its API is served (minimal CRDs from tests/fixtures), the
//! dashboard ConfigMap is labelled for Grafana's sidecar, the built-in `edit`
//! role lets a user create an EtlPipeline (`view` only read it), and the
//! alerting rules pass their promtool unit tests.

mod support;

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use support::tools::{helm_ok, kubectl_new, kubectl_new_ok, tools_dir, yaml_documents};
use support::{ControlPlane, eventually, repo_path, shared_with_crds, test_namespace};

const DEADLINE: Duration = Duration::from_secs(60);
const RELEASE: &str = "conveyor-mon";
/// The release's full name, which the chart's objects are named by.
const FULLNAME: &str = "conveyor-mon-conveyor-etl-operator";
const MONITORING_KINDS: [&str; 3] = ["PodMonitor", "PrometheusRule", "ServiceMonitor"];

fn path(relative: &str) -> String {
    repo_path(relative).to_str().expect("utf-8 path").to_owned()
}

fn template(args: &[&str]) -> Vec<Value> {
    let chart = path("deploy/helm/conveyor-etl-operator");
    let mut all = vec!["template", RELEASE, chart.as_str(), "-n", "monitoring"];
    all.extend(args);
    yaml_documents(&helm_ok(None, &all))
}

fn kinds(documents: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = documents.iter().map(|d| d["kind"].as_str().unwrap().to_owned()).collect();
    kinds.sort();
    kinds
}

const ENABLED: &str = "serviceMonitor.enabled=true,podMonitor.enabled=true,prometheusRule.enabled=true";

#[test]
fn monitoring_objects_render_only_where_the_api_is_served_or_forced() {
    let without_api = kinds(&template(&["--set", ENABLED]));
    assert!(MONITORING_KINDS.iter().all(|kind| !without_api.iter().any(|k| k == kind)), "{without_api:?}");
    for extra in [["--api-versions", "monitoring.coreos.com/v1"], ["--set", "forceMonitoringCRDs=true"]] {
        let documents = template(&["--set", ENABLED, extra[0], extra[1]]);
        let kinds = kinds(&documents);
        for kind in MONITORING_KINDS {
            assert!(kinds.iter().any(|k| k == kind), "no {kind} with {extra:?}: {kinds:?}");
        }
        // The operator's per-object series keep their own namespace label.
        let monitor = documents.iter().find(|d| d["kind"] == "ServiceMonitor").unwrap();
        assert_eq!(monitor["spec"]["endpoints"][0]["honorLabels"], true, "{monitor:#}");
        let pods = documents.iter().find(|d| d["kind"] == "PodMonitor").unwrap();
        assert_eq!(pods["spec"]["podMetricsEndpoints"][0]["port"], "metrics", "{pods:#}");
        assert_eq!(pods["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"], "conveyor-etl-router");
    }
}

#[test]
fn the_dashboard_configmap_is_the_dashboard_labelled_for_grafana() {
    let documents = template(&["--set", "grafanaDashboard.enabled=true"]);
    let map = documents.iter().find(|d| d["kind"] == "ConfigMap").expect("the dashboard ConfigMap");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1", "{:#}", map["metadata"]);
    let data = map["data"].as_object().unwrap();
    let (_, json) = data.iter().next().expect("one dashboard");
    let rendered: Value = serde_json::from_str(json.as_str().unwrap()).unwrap();
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("deploy/observability/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    assert!(
        rendered == file,
        "the chart's dashboard differs from deploy/observability/grafana-dashboard.json: \
         cp deploy/observability/grafana-dashboard.json deploy/helm/conveyor-etl-operator/files/"
    );
}

/// Runs `promtool test rules` on the chart's rules, rendered with its defaults.
#[test]
fn the_alerting_rules_pass_their_promtool_unit_tests() {
    let documents = template(&["--set", "prometheusRule.enabled=true,forceMonitoringCRDs=true"]);
    let rule = documents.iter().find(|d| d["kind"] == "PrometheusRule").expect("a PrometheusRule");
    let alerts: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    // Each alert has its runbook.
    let runbooks = std::fs::read_to_string(repo_path("docs/runbooks.md")).unwrap();
    for alert in &alerts {
        assert!(runbooks.contains(&format!("## {alert}")), "docs/runbooks.md has no section for {alert}");
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), serde_norway::to_string(&rule["spec"]).unwrap()).unwrap();
    let tests = dir.path().join("rules-test.yaml");
    std::fs::copy(repo_path("tests/fixtures/prometheus-rules-test.yaml"), &tests).unwrap();
    let promtool = tools_dir().join("promtool");
    assert!(
        promtool.is_file(),
        "{} is missing: run `bash tests/harness/install-tools.sh`",
        promtool.display()
    );
    let output = Command::new(promtool).args(["test", "rules"]).arg(&tests).output().expect("promtool runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("SUCCESS"), "{stdout}");
    for alert in ["ConveyorRouterClusterNoQuorum", "ConveyorOperatorNoLeader", "ConveyorPipelineNotReady"] {
        assert!(alerts.contains(&alert), "{alert} not among {alerts:?}");
    }
}

/// The monitoring CRDs applied, then the chart installed once (its CRDs are
/// the test bed's already), asking for every monitoring object.
fn installed() -> &'static ControlPlane {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let plane = shared_with_crds();
    INSTALLED.get_or_init(|| {
        kubectl_new_ok(plane, &["apply", "-f", &path("tests/fixtures/monitoring-crds.yaml")]);
        kubectl_new_ok(
            plane,
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/servicemonitors.monitoring.coreos.com",
                "crd/podmonitors.monitoring.coreos.com",
                "crd/prometheusrules.monitoring.coreos.com",
            ],
        );
        let chart = path("deploy/helm/conveyor-etl-operator");
        let out = helm_ok(
            Some(plane),
            &[
                "install",
                RELEASE,
                &chart,
                "-n",
                "conveyor-mon",
                "--create-namespace",
                "--set",
                "crds.install=false,grafanaDashboard.enabled=true",
                "--set",
                ENABLED,
            ],
        );
        assert!(out.contains("STATUS: deployed"), "{out}");
        assert!(out.contains("Next steps"), "the NOTES: {out}");
    });
    plane
}

#[tokio::test]
async fn with_the_prometheus_operator_crds_the_chart_installs_its_monitoring_objects() {
    let plane = installed();
    for (resource, name) in [
        ("servicemonitors.monitoring.coreos.com", FULLNAME.to_owned()),
        ("podmonitors.monitoring.coreos.com", format!("{FULLNAME}-routers")),
        ("prometheusrules.monitoring.coreos.com", FULLNAME.to_owned()),
        ("services", format!("{FULLNAME}-metrics")),
        ("configmaps", format!("{FULLNAME}-dashboard")),
    ] {
        let got = kubectl_new_ok(plane, &["get", "-n", "conveyor-mon", resource, &name, "-o", "json"]);
        let object: Value = serde_json::from_str(&got).unwrap();
        assert_eq!(object["metadata"]["labels"]["app.kubernetes.io/instance"], RELEASE, "{resource}/{name}");
    }
    let rule =
        kubectl_new_ok(plane, &["get", "-n", "conveyor-mon", "prometheusrule", FULLNAME, "-o", "json"]);
    assert!(rule.contains("ConveyorRouterClusterNoQuorum"), "{rule}");
}

/// `kubectl auth can-i` as `user` in `namespace`: "yes" or "no".
fn can_i(plane: &ControlPlane, user: &str, namespace: &str, verb: &str, resource: &str) -> String {
    let output = kubectl_new(plane, &["auth", "can-i", verb, resource, "-n", namespace, "--as", user]);
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test]
async fn a_user_bound_to_the_builtin_edit_role_creates_a_pipeline_and_a_viewer_only_reads() {
    let plane = installed();
    let namespace = test_namespace(&plane.client().await, "edit-role").await;
    for (user, role) in [("pipeline-editor", "edit"), ("pipeline-viewer", "view")] {
        kubectl_new_ok(
            plane,
            &["create", "rolebinding", user, "-n", &namespace, "--clusterrole", role, "--user", user],
        );
    }
    // The aggregation controller folds the chart's roles in.
    eventually(DEADLINE, "the edit role aggregates the five kinds", || {
        let all = ["etlrouterclusters", "etlpipelines", "etlsources", "etltransforms", "etlsinks"]
            .iter()
            .all(|resource| can_i(plane, "pipeline-editor", &namespace, "create", resource) == "yes");
        std::future::ready(all.then_some(()))
    })
    .await;
    assert_eq!(can_i(plane, "pipeline-viewer", &namespace, "list", "etlpipelines"), "yes");
    assert_eq!(can_i(plane, "pipeline-viewer", &namespace, "create", "etlpipelines"), "no");

    // And a real create, as that user.
    let pipeline = r#"{"apiVersion": "conveyor.etl/v1", "kind": "EtlPipeline",
        "metadata": {"name": "by-an-editor"},
        "spec": {"source": "s", "steps": [], "sink": "k"}}"#;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), pipeline).unwrap();
    let as_viewer = kubectl_new(
        plane,
        &["create", "-n", &namespace, "-f", file.path().to_str().unwrap(), "--as", "pipeline-viewer"],
    );
    assert!(!as_viewer.status.success(), "a viewer created a pipeline");
    assert!(String::from_utf8_lossy(&as_viewer.stderr).contains("forbidden"));
    let created = kubectl_new_ok(
        plane,
        &["create", "-n", &namespace, "-f", file.path().to_str().unwrap(), "--as", "pipeline-editor"],
    );
    assert!(created.contains("by-an-editor created"), "{created}");
}

#[test]
fn bad_monitoring_values_are_refused_naming_the_value_and_global_is_accepted() {
    let chart = path("deploy/helm/conveyor-etl-operator");
    let cases = [
        ("prometheusRule.quorumLostFor=soon", "/prometheusRule/quorumLostFor"),
        ("prometheusRule.reconcileErrorsPerSecond=0", "/prometheusRule/reconcileErrorsPerSecond"),
        ("prometheusRule.runbookBaseURL=wiki", "/prometheusRule/runbookBaseURL"),
        ("serviceMonitor.interval=often", "/serviceMonitor/interval"),
        ("podMonitor.enabled=maybe", "/podMonitor/enabled"),
        ("metricsService.enabled=on", "/metricsService/enabled"),
        ("grafanaDashboard.enabled=1", "/grafanaDashboard/enabled"),
        ("rbac.aggregateToDefaultRoles=yes", "/rbac/aggregateToDefaultRoles"),
        ("logFormat=pretty", "/logFormat"),
    ];
    for (set, named) in cases {
        let output = support::tools::helm(None, &["template", RELEASE, &chart, "--set", set]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "--set {set} was accepted");
        assert!(stderr.contains(named), "--set {set}: the message does not name {named}: {stderr}");
    }
    // A parent chart's global values reach a subchart: they must be allowed.
    template(&["--set", "global.imageRegistry=registry.example"]);
    for format in ["auto", "json", "text"] {
        template(&["--set", &format!("logFormat={format}")]);
    }
}

/// Every value in values.yaml is in the schema, and every schema property has a description.
#[test]
fn the_schema_documents_every_value() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("deploy/helm/conveyor-etl-operator/values.schema.json")).unwrap(),
    )
    .unwrap();
    let values: Value = serde_norway::from_str(
        &std::fs::read_to_string(repo_path("deploy/helm/conveyor-etl-operator/values.yaml")).unwrap(),
    )
    .unwrap();
    fn undocumented(schema: &Value, prefix: &str, found: &mut Vec<String>) {
        for (key, property) in schema["properties"].as_object().into_iter().flatten() {
            let name = format!("{prefix}{key}");
            if !property["description"].is_string() {
                found.push(name.clone());
            }
            undocumented(property, &format!("{name}."), found);
        }
    }
    fn unknown(values: &Value, schema: &Value, prefix: &str, found: &mut Vec<String>) {
        let Some(properties) = schema["properties"].as_object() else { return };
        for (key, value) in values.as_object().into_iter().flatten() {
            match properties.get(key) {
                None => found.push(format!("{prefix}{key}")),
                Some(property) => unknown(value, property, &format!("{prefix}{key}."), found),
            }
        }
    }
    let mut missing = Vec::new();
    undocumented(&schema, "", &mut missing);
    assert!(missing.is_empty(), "schema properties without a description: {missing:?}");
    let mut extra = Vec::new();
    unknown(&values, &schema, "", &mut extra);
    assert!(extra.is_empty(), "values.yaml keys the schema does not list: {extra:?}");
}
