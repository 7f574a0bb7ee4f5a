//! `kubectl conveyor` as a user runs it: the binary, with a kubeconfig, on
//! the test bed's real control plane (etcd, kube-apiserver,
//! kube-controller-manager), the operator running in-process under its own
//! RBAC, and the fake kubelet playing the router pods with simulated router
//! nodes over real gRPC. Output is checked for the cause, not for spacing.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DynamicObject, ListParams, ObjectMeta, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::Value;
use tokio::sync::{OnceCell, oneshot};

use conveyor_etl_operator::controller::{Operator, client_without_hidden_retries};
use conveyor_etl_operator::crd::{ClusterPhase, EtlRouterCluster};
use conveyor_etl_operator::router::{ClientOptions, RouterClient};
use conveyor_etl_operator::runtime::Timing;
use conveyor_testbed::control_plane::{ADMIN_USER, ControlPlane, OPERATOR_USER, install_crypto_provider};
use conveyor_testbed::examples::{SEED, SERVICES};
use conveyor_testbed::install::{install_crds, install_rbac};
use conveyor_testbed::kubelet::FakeKubelet;

const TIMEOUT: Duration = Duration::from_secs(90);
/// A roll waits on pod evictions. A replaced router pod keeps its name, and
/// when the StatefulSet recreates it before the disruption controller has
/// seen the old one go (the fake kubelet's pods go at once, a real
/// kubelet's take their grace period), the controller counts the new pod as
/// disrupted, and refuses the next eviction, for its DeletionTimeout of two
/// minutes.
const ROLL_TIMEOUT: Duration = Duration::from_secs(90 + 120);
const CLUSTER: &str = "my-cluster";
const PIPELINE: &str = "user-analytics";

/// A namespace of the shared control plane with a kubelet, the operator and
/// a kubeconfig whose context defaults to that namespace.
struct Bed {
    client: Client,
    namespace: String,
    /// Plays the router pods while the bed lives.
    kubelet: FakeKubelet,
    kubeconfig: tempfile::NamedTempFile,
    stop: Option<oneshot::Sender<()>>,
    operator: tokio::task::JoinHandle<()>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.operator.abort();
    }
}

async fn plane() -> &'static ControlPlane {
    static INSTALLED: OnceCell<()> = OnceCell::const_new();
    let plane = ControlPlane::shared();
    INSTALLED
        .get_or_init(|| async {
            let admin = plane.client().await;
            install_crds(&admin).await.expect("CRDs installed");
            install_rbac(&admin).await.expect("operator RBAC installed");
        })
        .await;
    plane
}

impl Bed {
    async fn new(prefix: &str) -> Bed {
        let plane = plane().await;
        let client = plane.client().await;
        let suffix: String = (0..5).map(|_| (b'a' + rand::random_range(0..26u8)) as char).collect();
        let namespace = format!("{prefix}-{suffix}");
        let restricted = [("pod-security.kubernetes.io/enforce".to_owned(), "restricted".to_owned())];
        let object = Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.clone()),
                labels: Some(restricted.into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &object).await.unwrap();
        let kubelet = FakeKubelet::start(client.clone(), &namespace, CLUSTER, 50051).await;

        install_crypto_provider();
        let operator_client = client_without_hidden_retries(plane.config(OPERATOR_USER).await).unwrap();
        let router = Arc::new(RouterClient::new(ClientOptions {
            call_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(300),
            max_attempts: 3,
            max_retry_time: Duration::from_secs(2),
            ..ClientOptions::default()
        }));
        let timing = Timing {
            health_interval: Duration::from_secs(1),
            progress_interval: Duration::from_millis(300),
            stats_interval: Duration::from_secs(3),
            min_retry_delay: Duration::from_millis(200),
            max_retry_delay: Duration::from_secs(5),
            ..Timing::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let running = Operator::new(operator_client, router, timing, Some(namespace.clone()));
        let operator = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            running.run(shutdown).await.expect("the operator starts");
        });

        // The user's kubeconfig: the admin, the context's namespace the test's.
        let yaml = plane
            .kubeconfig_yaml(ADMIN_USER)
            .replace("namespace: default", &format!("namespace: {namespace}"));
        assert!(yaml.contains(&namespace));
        let kubeconfig = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(kubeconfig.path(), yaml).unwrap();
        Bed { client, namespace, kubelet, kubeconfig, stop: Some(stop), operator }
    }

    /// Runs `kubectl-conveyor --kubeconfig <the bed's> ARGS`: (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_kubectl-conveyor"));
        let kubeconfig = self.kubeconfig.path().to_owned();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let shown = args.clone();
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new(binary).arg("--kubeconfig").arg(kubeconfig).args(args).output()
        })
        .await
        .unwrap()
        .expect("kubectl-conveyor runs");
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("utf-8 output");
        let (stdout, stderr) = (text(output.stdout), text(output.stderr));
        // Shown with --nocapture: what a user would see.
        eprintln!("$ kubectl conveyor {}\n{stdout}{stderr}", shown.join(" "));
        (output.status.success(), stdout, stderr)
    }

    /// Runs it and expects success; its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let (success, stdout, stderr) = self.run(args).await;
        assert!(success, "kubectl conveyor {} failed:\n{stderr}\n{stdout}", args.join(" "));
        stdout
    }

    /// Runs it until its stdout satisfies `check`, returning that stdout.
    async fn until(&self, args: &[&str], what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let (success, stdout, stderr) = self.run(args).await;
            if success && check(&stdout) {
                return stdout;
            }
            assert!(
                Instant::now() < deadline,
                "kubectl conveyor {}: timed out waiting for {what}; last output:\n{stdout}\n{stderr}",
                args.join(" ")
            );
            tokio::time::sleep(Duration::from_millis(200)).await; // poll interval
        }
    }

    fn api(&self, kind: &str) -> Api<DynamicObject> {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("conveyor.etl", "v1", kind));
        Api::namespaced_with(self.client.clone(), &self.namespace, &resource)
    }

    fn clusters(&self) -> Api<EtlRouterCluster> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates the example objects named (from deploy/examples), in that order.
    async fn create(&self, names: &[&str]) {
        let documents = SEED.split("\n---\n").chain(SERVICES.split("\n---\n"));
        let objects: Vec<DynamicObject> = documents.map(|doc| serde_norway::from_str(doc).unwrap()).collect();
        for name in names {
            let object =
                objects.iter().find(|o| o.name_any() == *name).unwrap_or_else(|| panic!("no example {name}"));
            let kind = object.types.as_ref().unwrap().kind.clone();
            self.api(&kind)
                .create(&PostParams::default(), object)
                .await
                .unwrap_or_else(|e| panic!("create {kind} {name}: {e}"));
        }
    }

    async fn wait_cluster(&self, what: &str, check: impl Fn(&EtlRouterCluster) -> bool) -> EtlRouterCluster {
        self.wait_cluster_within(TIMEOUT, what, check).await
    }

    async fn wait_cluster_within(
        &self,
        timeout: Duration,
        what: &str,
        check: impl Fn(&EtlRouterCluster) -> bool,
    ) -> EtlRouterCluster {
        let deadline = Instant::now() + timeout;
        loop {
            let cluster = self.clusters().get(CLUSTER).await.unwrap();
            if check(&cluster) {
                return cluster;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {:#?}", cluster.status);
            tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
        }
    }

    async fn wait_ready(&self, kind: &str, name: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let object = self.api(kind).get(name).await.unwrap();
            let ready = object.data["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "{kind} {name} not Ready: {:#}", object.data["status"]);
            tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
        }
    }

    async fn pods(&self) -> Vec<Pod> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        pods.list(&ListParams::default().labels("conveyor.etl/cluster=my-cluster")).await.unwrap().items
    }
}

fn condition(cluster: &EtlRouterCluster, type_: &str) -> Option<(String, String, String)> {
    let c = cluster.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn phase(cluster: &EtlRouterCluster) -> Option<ClusterPhase> {
    cluster.status.as_ref().and_then(|s| s.phase)
}

fn ready_with_healthy_members(cluster: &EtlRouterCluster) -> bool {
    phase(cluster) == Some(ClusterPhase::Ready)
        && cluster
            .status
            .as_ref()
            .is_some_and(|s| s.members.len() == 3 && s.members.iter().all(|m| m.healthy))
}

/// A Graphviz digraph as `graph -o dot` prints it: one statement a line,
/// braces and quotes balanced, every edge between declared nodes.
fn assert_valid_dot(dot: &str) {
    let lines: Vec<&str> = dot.lines().collect();
    assert!(lines[0].starts_with("digraph \"") && lines[0].ends_with(" {"), "{dot}");
    assert_eq!(*lines.last().unwrap(), "}", "{dot}");
    let mut nodes = Vec::new();
    for line in &lines[1..lines.len() - 1] {
        let line = line.trim();
        assert!(line.ends_with(';'), "a statement ends with ';': {line}");
        let unescaped = line.replace("\\\"", "");
        assert_eq!(unescaped.matches('"').count() % 2, 0, "quotes balanced: {line}");
        if let Some((from, rest)) = unescaped.split_once(" -> ") {
            let to = rest.split([' ', ';']).next().unwrap();
            assert!(
                nodes.contains(&from.to_owned()) && nodes.contains(&to.to_owned()),
                "edge {from} -> {to} between declared nodes {nodes:?}"
            );
        } else if unescaped.starts_with('"') && unescaped.contains(" [label=") {
            nodes.push(unescaped.split(" [").next().unwrap().to_owned());
        }
    }
    assert!(nodes.len() >= 4, "{dot}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn why_follows_a_missing_transform_then_a_ready_set_shows_in_status_and_graph() {
    let bed = Bed::new("plugin-why").await;
    // Everything of the example set but the transform enrich-geo.
    bed.create(&[CLUSTER, "kafka-users", "filter-active", "clickhouse-analytics", PIPELINE]).await;
    bed.wait_cluster("the cluster Ready", ready_with_healthy_members).await;

    // At once (the reference grace says "not seen yet") and after it
    // (ReferencesMissing), the missing transform is the first cause.
    let why = bed
        .until(&["why", "etlp/user-analytics"], "the pipeline's ReferencesMissing", |out| {
            out.contains("reason ReferencesMissing")
        })
        .await;
    assert!(
        why.contains("First cause: EtlTransform/enrich-geo does not exist (spec.steps[1] of EtlPipeline/user-analytics)"),
        "{why}"
    );
    assert!(why.contains("event:") && why.contains("ReferencesMissing"), "the Event that told of it: {why}");
    // kubectl's other spellings of the kind, and the namespace given explicitly.
    let namespace = bed.namespace.clone();
    for args in [
        vec!["why", "etlpipeline", PIPELINE],
        vec!["why", "etlpipelines/user-analytics", "-n", &namespace],
        vec!["--context", "test", "why", "EtlPipeline/user-analytics"],
    ] {
        let out = bed.ok(&args).await;
        assert!(out.contains("First cause: EtlTransform/enrich-geo does not exist"), "{args:?}: {out}");
    }
    let steps: Value =
        serde_json::from_str(&bed.ok(&["why", "etlp/user-analytics", "-o", "json"]).await).unwrap();
    let last = steps["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["kind"].as_str(), last["name"].as_str(), last["state"].as_str()),
        (Some("EtlTransform"), Some("enrich-geo"), Some("Missing"))
    );
    // The graph shows the gap.
    let graph = bed.ok(&["graph", PIPELINE]).await;
    assert!(graph.lines().any(|l| l.contains("EtlTransform/enrich-geo") && l.contains("MISSING")), "{graph}");
    // Unknown kinds and objects are errors a user can read.
    let (success, _, stderr) = bed.run(&["why", "deployment/x"]).await;
    assert!(!success && stderr.contains("not a Conveyor kind"), "{stderr}");

    // The missing transform arrives: the whole set goes Ready.
    bed.create(&["enrich-geo"]).await;
    bed.wait_ready("EtlPipeline", PIPELINE).await;
    let why = bed.ok(&["why", "etlp/user-analytics"]).await;
    assert!(why.starts_with("EtlPipeline/user-analytics is Ready since "), "{why}");
    assert!(why.contains("PipelineRunning") && !why.contains("First cause"), "{why}");
    let why = bed.ok(&["why", "etlrc", CLUSTER]).await;
    assert!(why.starts_with("EtlRouterCluster/my-cluster is Ready since "), "{why}");

    // status: the cluster, its members with their pods, its services and pipelines.
    for name in ["kafka-users", "filter-active", "enrich-geo", "clickhouse-analytics"] {
        bed.wait_ready(
            if name == "kafka-users" {
                "EtlSource"
            } else if name == "clickhouse-analytics" {
                "EtlSink"
            } else {
                "EtlTransform"
            },
            name,
        )
        .await;
    }
    let status = bed.ok(&["status", CLUSTER]).await;
    let cluster = bed.clusters().get(CLUSTER).await.unwrap();
    let leader = cluster.status.as_ref().unwrap().leader.clone().unwrap();
    let term = cluster.status.as_ref().unwrap().term.unwrap();
    assert!(status.contains("Phase:     Ready"), "{status}");
    assert!(status.contains(&format!("Leader:    {leader}")), "{status}");
    assert!(status.contains(&format!("Term:      {term}")), "{status}");
    for member in &cluster.status.as_ref().unwrap().members {
        let row: Vec<&str> = status
            .lines()
            .find(|l| l.starts_with(&format!("{} ", member.pod)))
            .unwrap_or_else(|| panic!("{} in {status}", member.pod))
            .split_whitespace()
            .collect();
        assert_eq!(row[1], member.node_id.to_string(), "{status}");
        assert_eq!(row[2], member.role, "{status}");
        assert_eq!(&row[3..5], ["true", "true"], "healthy and ready: {status}");
    }
    for name in ["kafka-users", "filter-active", "enrich-geo", "clickhouse-analytics"] {
        assert!(
            status.lines().any(|l| l.contains(name) && l.contains("Ready") && l.contains("Registered")),
            "{name}: {status}"
        );
    }
    assert!(
        status
            .lines()
            .any(|l| l.starts_with(PIPELINE) && l.contains("Ready") && l.contains("PipelineRunning")),
        "{status}"
    );
    let summary = bed.ok(&["status"]).await;
    let line: Vec<&str> = summary.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&line[..3], [CLUSTER, "Ready", "3/3"], "{summary}");
    assert!(line.contains(&"4/4") && line.contains(&"1/1"), "services and pipelines Ready: {summary}");
    let all = bed.ok(&["status", "-A"]).await;
    assert!(all.lines().any(|l| l.starts_with(&namespace) && l.contains(CLUSTER)), "{all}");
    let list: Value = serde_json::from_str(&bed.ok(&["status", CLUSTER, "-o", "json"]).await).unwrap();
    let kinds: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "EtlRouterCluster",
            "Pod",
            "Pod",
            "Pod",
            "EtlSource",
            "EtlTransform",
            "EtlTransform",
            "EtlSink",
            "EtlPipeline"
        ]
    );
    let yaml: Value = serde_norway::from_str(&bed.ok(&["status", "-o", "yaml"]).await).unwrap();
    assert_eq!(yaml["items"][0]["metadata"]["name"], CLUSTER);

    // graph: the stages in order, each service's health as the router reports it.
    let graph = bed
        .until(&["graph", PIPELINE], "every stage's health reported", |out| {
            let healthy =
                |l: &&str| l.split_whitespace().collect::<Vec<_>>().get(2..4) == Some(&["Ready", "Healthy"]);
            out.lines().filter(healthy).count() == 4
        })
        .await;
    let at = |needle: &str| {
        graph.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}: {graph}"))
    };
    assert!(at("EtlSource/kafka-users") < at("EtlTransform/filter-active"));
    assert!(at("EtlTransform/filter-active") < at("EtlTransform/enrich-geo"));
    assert!(at("EtlTransform/enrich-geo") < at("EtlSink/clickhouse-analytics"));
    assert!(
        graph.contains(
            "Flow: source -> step-0 -> step-1 -> sink; records failing 3 retries -> dead-letter queue"
        ),
        "{graph}"
    );
    let dot = bed.ok(&["graph", PIPELINE, "-o", "dot"]).await;
    assert_valid_dot(&dot);
    for edge in [
        "\"source\" -> \"step-0\"",
        "\"step-0\" -> \"step-1\"",
        "\"step-1\" -> \"sink\"",
        "\"sink\" -> \"dlq\"",
    ] {
        assert!(dot.contains(edge), "{edge}: {dot}");
    }
    let json: Value = serde_json::from_str(&bed.ok(&["graph", PIPELINE, "-o", "json"]).await).unwrap();
    assert_eq!(json["stages"].as_array().unwrap().len(), 4);
    let (success, _, stderr) = bed.run(&["graph", "no-such-pipeline"]).await;
    assert!(!success && stderr.contains("not found"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_restart_go_through_the_operator() {
    let bed = Bed::new("plugin-restart").await;
    bed.create(&[CLUSTER]).await;
    bed.wait_cluster("the cluster Ready", ready_with_healthy_members).await;
    // A leader that is not the lowest ordinal, so that "highest ordinal
    // first" alone would not put it last.
    assert!(bed.kubelet.sim.transfer_leadership(2), "node 2 takes over");
    let ready = bed
        .wait_cluster("node 2 leading", |c| {
            ready_with_healthy_members(c)
                && c.status.as_ref().is_some_and(|s| s.leader.as_deref() == Some("my-cluster-1"))
        })
        .await;
    let leader = ready.status.unwrap().leader.unwrap();
    let first: Vec<String> = bed.pods().await.iter().map(|p| p.uid().unwrap()).collect();
    assert_eq!(first.len(), 3);

    // Pause: the annotation, and the operator says it holds back.
    let out = bed.ok(&["pause", CLUSTER]).await;
    assert!(out.contains("paused"), "{out}");
    let cluster = bed.clusters().get(CLUSTER).await.unwrap();
    assert_eq!(cluster.annotations().get("conveyor.etl/paused").map(String::as_str), Some("true"));
    bed.wait_cluster("ReconciliationPaused=True", |c| {
        condition(c, "ReconciliationPaused").is_some_and(|c| c.0 == "True")
    })
    .await;

    // A restart asked for while paused waits, and says so.
    let out = bed.ok(&["restart", CLUSTER]).await;
    assert!(out.contains("restart requested") && out.contains("paused"), "{out}");
    let requested = bed
        .clusters()
        .get(CLUSTER)
        .await
        .unwrap()
        .annotations()
        .get("conveyor.etl/restartedAt")
        .cloned()
        .expect("the restart annotation");
    let held = bed
        .wait_cluster("the restart held back by the pause", |c| {
            condition(c, "Ready")
                .is_some_and(|(_, reason, message)| reason == "RollingUpdate" && message.contains("paused"))
        })
        .await;
    assert_eq!(phase(&held), Some(ClusterPhase::Degraded));
    let now: Vec<String> = bed.pods().await.iter().map(|p| p.uid().unwrap()).collect();
    assert_eq!(now, first, "nothing rolled while paused");

    // Resume: the annotation goes, and the restart rolls the pods one at a
    // time, the leader last.
    let pods: Api<Pod> = Api::namespaced(bed.client.clone(), &bed.namespace);
    let deleted = Arc::new(Mutex::new(Vec::<String>::new()));
    let record = deleted.clone();
    // Pods deleted and not ready again yet, and the most there ever were at once.
    let down = Arc::new(Mutex::new((std::collections::BTreeSet::<String>::new(), 0usize)));
    let record_down = down.clone();
    let (listed, initial_list) = oneshot::channel();
    let recorder = tokio::spawn(async move {
        let mut listed = Some(listed);
        let config = watcher::Config::default().labels("conveyor.etl/cluster=my-cluster");
        let mut events = watcher(pods, config).boxed();
        while let Some(Ok(event)) = events.next().await {
            match event {
                watcher::Event::InitDone => {
                    listed.take().map(|listed| listed.send(()));
                }
                watcher::Event::Delete(pod) => {
                    record.lock().unwrap().push(pod.name_any());
                    let mut down = record_down.lock().unwrap();
                    down.0.insert(pod.name_any());
                    down.1 = down.1.max(down.0.len());
                }
                watcher::Event::Apply(pod) if pod_ready(&pod) => {
                    record_down.lock().unwrap().0.remove(&pod.name_any());
                }
                _ => {}
            }
        }
    });
    initial_list.await.unwrap();
    let out = bed.ok(&["resume", CLUSTER]).await;
    assert!(out.contains("resumed"), "{out}");
    let cluster = bed.clusters().get(CLUSTER).await.unwrap();
    assert!(!cluster.annotations().contains_key("conveyor.etl/paused"), "{:?}", cluster.annotations());
    let rolled = bed
        .wait_cluster_within(ROLL_TIMEOUT, "every pod replaced and the cluster Ready again", |c| {
            ready_with_healthy_members(c) && deleted.lock().unwrap().len() >= 3
        })
        .await;
    recorder.abort();
    assert_eq!(condition(&rolled, "ReconciliationPaused").map(|c| c.0), Some("False".to_owned()));
    let order = deleted.lock().unwrap().clone();
    assert_eq!(order.len(), 3, "each pod replaced exactly once: {order:?}");
    assert_eq!(
        order,
        ["my-cluster-2", "my-cluster-0", "my-cluster-1"],
        "followers highest first, the leader ({leader}) last"
    );
    assert_eq!(down.lock().unwrap().1, 1, "one pod down at a time");
    for pod in bed.pods().await {
        assert!(!first.contains(&pod.uid().unwrap()), "{} was not replaced", pod.name_any());
        assert_eq!(pod.annotations().get("conveyor.etl/restartedAt"), Some(&requested), "{}", pod.name_any());
    }
    let status = bed.ok(&["status", CLUSTER]).await;
    assert!(status.contains("Phase:     Ready"), "{status}");

    // Pausing an unknown cluster is an error a user can read.
    let (success, _, stderr) = bed.run(&["pause", "no-such-cluster"]).await;
    assert!(!success && stderr.contains("etlroutercluster no-such-cluster not found"), "{stderr}");
}

/// The hook for a real node's image pull failure, on the real API server:
/// the kubelet's part (a waiting container and its Warning Event, as
/// `core/v1`) is written by the test, since the fake kubelet pulls nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn why_follows_a_cluster_to_a_pod_that_cannot_pull_its_image_and_its_events() {
    use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::{Patch, PatchParams};

    let bed = Bed::new("plugin-pull").await;
    bed.create(&[CLUSTER]).await;
    bed.wait_cluster("the cluster Ready", ready_with_healthy_members).await;
    let first: Vec<String> = bed.pods().await.iter().map(|p| p.uid().unwrap()).collect();

    // A new image the kubelet never starts: the roll halts at its first pod.
    bed.kubelet.break_image("conveyor-etl-router:v2");
    let patch = serde_json::json!({"spec": {"image": "conveyor-etl-router:v2"}});
    bed.clusters().patch(CLUSTER, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let stuck = loop {
        let pods = bed.pods().await;
        let new = pods.into_iter().find(|p| {
            !first.contains(&p.uid().unwrap())
                && p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("conveyor-etl-router:v2")
        });
        if let Some(pod) = new {
            break pod;
        }
        assert!(Instant::now() < deadline, "no pod on the new image");
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
    };
    let name = stuck.name_any();
    let out = bed
        .until(&["why", "etlrc/my-cluster"], "the stuck pod as the first cause", |out| {
            out.contains(&format!("First cause: Pod/{name}"))
        })
        .await;
    assert!(out.contains("not ready"), "{out}");

    // What a real kubelet writes when the pull fails.
    let pods: Api<Pod> = Api::namespaced(bed.client.clone(), &bed.namespace);
    let status = serde_json::json!({"status": {"containerStatuses": [{
        "name": "router", "ready": false, "restartCount": 0, "image": "conveyor-etl-router:v2", "imageID": "",
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"conveyor-etl-router:v2\""}},
    }]}});
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let event = CoreEvent {
        metadata: ObjectMeta { name: Some(format!("{name}.pull-failed")), ..ObjectMeta::default() },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name.clone()),
            namespace: Some(bed.namespace.clone()),
            uid: stuck.uid(),
            ..ObjectReference::default()
        },
        type_: Some("Warning".into()),
        reason: Some("Failed".into()),
        message: Some("Failed to pull image \"conveyor-etl-router:v2\": not found".into()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(2),
        source: Some(EventSource { component: Some("kubelet".into()), host: None }),
        ..CoreEvent::default()
    };
    Api::<CoreEvent>::namespaced(bed.client.clone(), &bed.namespace)
        .create(&PostParams::default(), &event)
        .await
        .unwrap();

    let out = bed.ok(&["why", "etlrc/my-cluster"]).await;
    assert!(
        out.contains(&format!(
            "First cause: Pod/{name}: ImagePullBackOff: container router: Back-off pulling image \"conveyor-etl-router:v2\""
        )),
        "{out}"
    );
    assert!(out.contains("Warning Failed x2") && out.contains("not found"), "the pod's Event: {out}");
    let status = bed.ok(&["status", CLUSTER]).await;
    assert!(status.lines().any(|l| l.starts_with(&name) && l.contains("false")), "{status}");
}
