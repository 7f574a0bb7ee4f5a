//! The chart's alerts, end to end: a real Prometheus server (Debian's, put in
//! the tools folder by `tests/harness/install-tools.sh`) scrapes the operator
//! binary the test starts, evaluates the rules exactly as the chart renders
//! them, and fires `ConveyorRouterClusterNoQuorum` naming the cluster once
//! the test takes its quorum away (resolved when quorum is back), then
//! `ConveyorRouterClusterDegraded` naming it while a member stops answering.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use support::kubelet::FakeKubelet;
use support::operator_process::{OperatorProcess, http_get};
use support::tools::{helm_ok, tool, yaml_documents};
use support::{ControlPlane, eventually, kubectl_ok, repo_path, shared_with_crds, test_namespace};

/// Formation on a shared machine, and an alert's `for` plus a few evaluations.
const DEADLINE: Duration = Duration::from_secs(120);
const ALERT: &str = "ConveyorRouterClusterNoQuorum";
const DEGRADED: &str = "ConveyorRouterClusterDegraded";

/// The Prometheus server as a child process, killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` every second and evaluates `rules` every second.
    fn start(folder: &Path, target: &str, rules: &Value) -> Prometheus {
        // JSON is YAML: both files are written as JSON.
        let rules_file = folder.join("rules.yaml");
        std::fs::write(&rules_file, rules.to_string()).unwrap();
        let config = json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [rules_file],
            "scrape_configs": [{"job_name": "conveyor-etl-operator", "static_configs": [{"targets": [target]}]}],
        });
        let config_file = folder.join("prometheus.yaml");
        std::fs::write(&config_file, config.to_string()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(folder.join("prometheus.log")).unwrap();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", folder.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts (bash tests/harness/install-tools.sh installs it)");
        Prometheus { child, port }
    }

    /// `GET /api/v1/<path>`'s `data`, once the server answers.
    fn api(&self, path: &str) -> Option<Value> {
        let (code, body) = http_get(("127.0.0.1", self.port), &format!("/api/v1/{path}"))?;
        let body: Value = serde_json::from_str(&body).ok()?;
        (code == 200 && body["status"] == "success").then(|| body["data"].clone())
    }

    /// The alerts named `name` in `state` (pending, firing).
    fn alerts(&self, name: &str, state: &str) -> Option<Vec<Value>> {
        let data = self.api("alerts")?;
        let alerts = data["alerts"].as_array()?;
        Some(
            alerts
                .iter()
                .filter(|alert| alert["labels"]["alertname"] == name && alert["state"] == state)
                .cloned()
                .collect(),
        )
    }
}

/// The chart's PrometheusRule as the chart renders it, with the quorum and
/// Degraded alerts held for 5 s instead of their default minutes.
fn chart_rules() -> Value {
    let chart = repo_path("deploy/helm/conveyor-etl-operator");
    let rendered = helm_ok(
        None,
        &[
            "template",
            "conveyor",
            chart.to_str().unwrap(),
            "--set",
            "prometheusRule.enabled=true,forceMonitoringCRDs=true,prometheusRule.quorumLostFor=5s,prometheusRule.clusterDegradedFor=5s",
        ],
    );
    let documents = yaml_documents(&rendered);
    let rule =
        documents.iter().find(|d| d["kind"] == "PrometheusRule").expect("the chart renders a PrometheusRule");
    rule["spec"].clone()
}

fn apply_seed(plane: &ControlPlane, namespace: &str) {
    let seed = repo_path("deploy/examples/seed.yaml");
    kubectl_ok(plane, &["apply", "-n", namespace, "-f", seed.to_str().unwrap()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_fires_the_quorum_and_degraded_alerts_naming_the_cluster() {
    let plane = shared_with_crds();
    let namespace = test_namespace(&plane.client().await, "prom-alert").await;
    let kubelet = FakeKubelet::start(plane.client().await, &namespace, "my-cluster", 50051).await;
    let operator =
        OperatorProcess::start(plane, &namespace, &[("CONVEYOR_HEALTH_INTERVAL", "1s".into())], &[]);
    let folder = tempfile::tempdir().unwrap();
    let prometheus =
        Prometheus::start(folder.path(), &format!("127.0.0.1:{}", operator.port), &chart_rules());
    apply_seed(plane, &namespace);

    // Scraped, with the cluster led: the rules have the series they read.
    let led = format!(r#"conveyor_router_cluster_leader{{namespace="{namespace}",name="my-cluster"}}==1"#);
    eventually(DEADLINE, "Prometheus scraping the cluster with a leader", || {
        let query = format!("query?query={}", urlencode(&led));
        let found = prometheus.api(&query).and_then(|data| data["result"].as_array().map(|r| !r.is_empty()));
        std::future::ready(found.filter(|found| *found))
    })
    .await;
    let rules = prometheus.api("rules").expect("the rules API answers");
    assert!(rules.to_string().contains(ALERT), "the chart's rules are loaded: {rules}");
    assert_eq!(prometheus.alerts(ALERT, "pending").unwrap(), Vec::<Value>::new(), "a led cluster alerts");
    assert_eq!(prometheus.alerts(ALERT, "firing").unwrap(), Vec::<Value>::new(), "a led cluster alerts");

    // Two of three router nodes stop: no leader, then the alert fires by name.
    let leader = kubelet.sim.leader().expect("a leader");
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    kubelet.sim.stop_node(follower).await;
    kubelet.sim.stop_node(leader).await;
    let firing = eventually(DEADLINE, "the quorum alert firing", || {
        std::future::ready(prometheus.alerts(ALERT, "firing").filter(|alerts| !alerts.is_empty()))
    })
    .await;
    assert_eq!(firing.len(), 1, "{firing:#?}");
    let labels = &firing[0]["labels"];
    assert_eq!(labels["namespace"], namespace.as_str());
    assert_eq!(labels["name"], "my-cluster");
    assert_eq!(labels["severity"], "critical");
    let summary = firing[0]["annotations"]["summary"].as_str().unwrap();
    assert!(summary.contains(&format!("{namespace}/my-cluster")), "{summary}");

    // Quorum back: the alert resolves.
    kubelet.sim.restart_node(follower).await.unwrap();
    kubelet.sim.restart_node(leader).await.unwrap();
    eventually(DEADLINE, "the quorum alert resolved", || {
        let quiet = prometheus.alerts(ALERT, "firing").zip(prometheus.alerts(ALERT, "pending"));
        std::future::ready(
            quiet.filter(|(firing, pending)| firing.is_empty() && pending.is_empty()).map(|_| ()),
        )
    })
    .await;

    // A follower stops answering: the cluster is Degraded, and so named.
    let leader = kubelet.sim.leader().expect("a leader again");
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    kubelet.sim.slow_node(follower, Duration::from_secs(3600));
    let degraded = eventually(DEADLINE, "the Degraded alert firing", || {
        std::future::ready(prometheus.alerts(DEGRADED, "firing").filter(|alerts| !alerts.is_empty()))
    })
    .await;
    assert_eq!(degraded.len(), 1, "{degraded:#?}");
    assert_eq!(degraded[0]["labels"]["namespace"], namespace.as_str());
    assert_eq!(degraded[0]["labels"]["name"], "my-cluster");
    assert_eq!(
        prometheus.alerts(ALERT, "firing").unwrap(),
        Vec::<Value>::new(),
        "a Degraded cluster has a leader"
    );
    kubelet.sim.slow_node(follower, Duration::ZERO);
    drop(prometheus);
    drop(operator);
    kubelet.stop().await;
}

/// Percent-encodes a PromQL query for a URL's query string.
fn urlencode(query: &str) -> String {
    query
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
