//! End to end on a real node (crates/testbed/src/node/): containerd, runc, the
//! kubelet and kube-scheduler beside the control plane, and a real router
//! pod from a locally built image (tests/harness/build-images.sh: the
//! static simulator as `conveyor-etl-router`, busybox's `sh`), with the
//! operator running in-process under its ClusterRole, or installed by Helm
//! as two pods from the operator image packed beside it.
//!
//! The router pods run the simulator's router mode, one real Raft member
//! (openraft) per pod, peers reached through their StatefulSet DNS names:
//! a killed container is a member lost for real, two of three a lost quorum.
//!
//! Needs root, `tests/harness/build-node.sh` and
//! `tests/harness/build-images.sh` (as `tests/run.sh` runs them); fails,
//! naming what is missing, without them. One real node runs per machine at
//! a time (a second refuses to start).

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};

use conveyor_etl_operator::crd::{ClusterPhase, EtlRouterCluster, ImagePullPolicy};
use conveyor_etl_operator::router::{GetClusterStatusResponse, NodeRole, Router, RouterClient};
use conveyor_testbed::node::{self, HOST_IP, NODE_NAME, RealNode};
use support::operator::RunningOperator;
use support::scenario::seed_cluster;
use support::{install_crds, repo_path, test_namespace};

/// Long enough for a cold start on a loaded two-core machine.
const DEADLINE: Duration = Duration::from_secs(180);

/// One real node per machine: the tests of this binary take turns.
static ONE_NODE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

use conveyor_testbed::images::packed as packed_image;

/// A real node with both images imported and a test namespace; with
/// [`NodeRun::start`] also the CRDs, the operator's ClusterRole and the
/// operator running in-process in that namespace.
struct NodeRun {
    node: RealNode,
    /// Every process the node and its control plane started.
    pids: Vec<u32>,
    admin: kube::Client,
    namespace: String,
    operator: Option<RunningOperator>,
    router_image: String,
    operator_image: String,
}

impl NodeRun {
    async fn bare(prefix: &str) -> NodeRun {
        if let Some(why) = node::unavailable() {
            panic!("no real node on this machine: {why}");
        }
        let (router_image, router_tarball) = packed_image("router");
        let (operator_image, operator_tarball) = packed_image("operator");
        let node =
            tokio::task::spawn_blocking(RealNode::start).await.unwrap().unwrap_or_else(|e| panic!("{e}"));
        node.import_image(&router_tarball).unwrap();
        node.import_image(&operator_tarball).unwrap();
        let plane = node.plane.as_ref().unwrap();
        let pids: Vec<u32> = node.processes().iter().map(|(_, pid)| *pid).chain(plane.pids()).collect();
        let admin = plane.client().await;
        let namespace = test_namespace(&admin, prefix).await;
        NodeRun { node, pids, admin, namespace, operator: None, router_image, operator_image }
    }

    async fn start(prefix: &str) -> NodeRun {
        let mut run = NodeRun::bare(prefix).await;
        let plane = run.node.plane.as_ref().unwrap();
        tokio::task::block_in_place(|| {
            install_crds(plane);
            support::operator::bind_operator_role(plane);
        });
        run.operator = Some(RunningOperator::start(plane, &run.namespace).await);
        run
    }

    fn plane(&self) -> &support::ControlPlane {
        self.node.plane.as_ref().unwrap()
    }

    /// Stops the operator and the node, and checks the node left nothing behind.
    async fn finish(self) {
        let NodeRun { mut node, pids, operator, .. } = self;
        if let Some(operator) = operator {
            operator.stop().await;
        }
        tokio::task::block_in_place(|| node.stop());
        let left = node.leftovers(&pids);
        assert!(left.is_empty(), "the node left behind: {left:#?}");
        eprintln!("sysctls restored after the node: {:?}", node.restored_sysctls());
    }
}

fn phase_of(cluster: &EtlRouterCluster) -> Option<ClusterPhase> {
    cluster.status.as_ref().and_then(|status| status.phase)
}

fn condition_of(cluster: &EtlRouterCluster, type_: &str) -> Option<(String, String)> {
    cluster
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Polls until `check` returns Some, failing after [`DEADLINE`] with the node's logs.
async fn until<T, F, Fut>(node: &RealNode, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            let plane = node.plane.as_ref().unwrap();
            let objects = support::kubectl(
                plane,
                &["get", "pods,statefulsets,pvc,etlrc,etlp,etlsrc,etltf,etlsink,events", "-A", "-o", "wide"],
            );
            let selector = format!("--selector=app.kubernetes.io/name={RELEASE}");
            let operator_logs = support::kubectl(
                plane,
                &["logs", "-n", RELEASE_NAMESPACE, &selector, "--tail=60", "--prefix"],
            );
            panic!(
                "timed out after {DEADLINE:?} waiting for {what}\n{}{}\noperator pods:\n{}\n{}",
                String::from_utf8_lossy(&objects.stdout),
                String::from_utf8_lossy(&objects.stderr),
                String::from_utf8_lossy(&operator_logs.stdout),
                node.log_tails()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // poll interval
    }
}

/// The router container's id and restart count, once it runs and is ready.
fn ready_container(pod: &Pod) -> Option<(String, i32)> {
    let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    let id = status.container_id.as_deref()?.strip_prefix("containerd://")?.to_owned();
    (status.ready && status.state.as_ref()?.running.is_some()).then_some((id, status.restart_count))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_container_killed_on_a_real_node_is_restarted_and_the_cluster_recovers() {
    let _turn = ONE_NODE.lock().await;
    let run = NodeRun::start("node").await;
    let (node, admin, namespace, image) = (&run.node, &run.admin, &run.namespace, &run.router_image);

    // One member, from the local image, never pulled.
    let mut cluster = seed_cluster("my-cluster");
    cluster.spec.replicas = 1;
    cluster.spec.storage = None;
    cluster.spec.image = image.clone();
    cluster.spec.image_pull_policy = Some(ImagePullPolicy::Never);
    let clusters: Api<EtlRouterCluster> = Api::namespaced(admin.clone(), namespace);
    clusters.create(&Default::default(), &cluster).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), namespace);

    let ready = until(node, "the cluster to be Ready", || async {
        clusters.get("my-cluster").await.ok().filter(|c| phase_of(c) == Some(ClusterPhase::Ready))
    })
    .await;
    let status = ready.status.as_ref().unwrap();
    assert_eq!(status.leader.as_deref(), Some("my-cluster-0"), "one-node mode leads its own cluster");
    let pod = pods.get("my-cluster-0").await.unwrap();
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(NODE_NAME), "scheduled on the real node");
    assert_eq!(spec.containers[0].image.as_deref(), Some(image.as_str()));
    let pod_ip = pod.status.as_ref().unwrap().pod_ip.clone().unwrap();
    assert!(pod_ip.starts_with("198.18.42."), "a pod address on the node's bridge: {pod_ip}");
    let (container, restarts) = ready_container(&pod).expect("the router container runs and is ready");
    assert_eq!(restarts, 0);
    // The container is a real process: the simulator, as conveyor-etl-router, under runc.
    let task = node.ctr(&["tasks", "ls"]).unwrap();
    assert!(task.contains(&container) && task.contains("RUNNING"), "{task}");

    // Cluster DNS: the member's stable name resolves to its pod, from the pod itself.
    let member = format!("my-cluster-0.my-cluster-raft.{namespace}.svc.cluster.local");
    let resolved = until(node, "the member's DNS name from inside its pod", || {
        let answer = node.ctr(&[
            "tasks",
            "exec",
            "--exec-id",
            "dns-check",
            &container,
            "busybox",
            "nslookup",
            &member,
        ]);
        let pod_ip = pod_ip.clone();
        async move { answer.ok().filter(|text| text.contains(&pod_ip)) }
    })
    .await;
    assert!(resolved.contains(&HOST_IP.to_string()), "answered by the node's DNS: {resolved}");

    // No packet from a pod leaves the machine: its only route is the bridge's /24, no default route.
    let routes =
        node.ctr(&["tasks", "exec", "--exec-id", "routes", &container, "cat", "/proc/net/route"]).unwrap();
    let destinations: Vec<&str> =
        routes.lines().skip(1).filter_map(|line| line.split_whitespace().nth(1)).collect();
    assert_eq!(destinations, ["002A12C6"], "only 198.18.42.0/24 is routed from the pod:\n{routes}");

    // Killed through the runtime, not the API.
    node.ctr(&["tasks", "kill", "--signal", "SIGKILL", &container]).unwrap();
    let down = until(node, "the cluster to notice its only member is down", || async {
        clusters.get("my-cluster").await.ok().filter(|c| phase_of(c) != Some(ClusterPhase::Ready))
    })
    .await;
    // One member down is no quorum: Unavailable, with the Degraded condition True (states.md).
    assert_eq!(phase_of(&down), Some(ClusterPhase::Unavailable), "{:#?}", down.status);
    let (degraded, reason) = condition_of(&down, "Degraded").unwrap();
    assert_eq!(degraded, "True", "{reason}");
    assert!(["PodsNotReady", "RouterUnreachable", "QuorumLost"].contains(&reason.as_str()), "{reason}");

    // The kubelet restarts it; the cluster is Ready again.
    let back = until(node, "the cluster to be Ready again", || async {
        clusters.get("my-cluster").await.ok().filter(|c| phase_of(c) == Some(ClusterPhase::Ready))
    })
    .await;
    assert_eq!(back.status.as_ref().unwrap().leader.as_deref(), Some("my-cluster-0"));
    let pod = pods.get("my-cluster-0").await.unwrap();
    let (restarted, restarts) = ready_container(&pod).expect("the restarted container is ready");
    assert_eq!(restarts, 1, "restarted in place by the kubelet, not replaced");
    assert_ne!(restarted, container);
    assert_eq!(pod.metadata.uid, pods.get("my-cluster-0").await.unwrap().metadata.uid);

    run.finish().await;
}

/// Every router pod's own answer to GetClusterStatus, by pod name.
async fn statuses(
    pods: &Api<Pod>,
    client: &RouterClient,
    names: &[String],
    grpc: u16,
) -> Option<Vec<(String, GetClusterStatusResponse)>> {
    let mut answers = Vec::new();
    for name in names {
        let pod = pods.get(name).await.ok()?;
        let ip = pod.status?.pod_ip?;
        answers.push((name.clone(), client.member_status(&format!("{ip}:{grpc}")).await.ok()?));
    }
    Some(answers)
}

/// The router container's id while it runs, ready or not.
fn running_container(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    status.state.as_ref()?.running.as_ref()?;
    Some(status.container_id.as_deref()?.strip_prefix("containerd://")?.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_router_pods_are_one_raft_cluster_that_loses_members_and_quorum_for_real() {
    let _turn = ONE_NODE.lock().await;
    let run = NodeRun::start("raft").await;
    let (node, admin, namespace, image) = (&run.node, &run.admin, &run.namespace, &run.router_image);

    let mut cluster = seed_cluster("my-cluster");
    cluster.spec.replicas = 3;
    cluster.spec.storage = None;
    cluster.spec.image = image.clone();
    cluster.spec.image_pull_policy = Some(ImagePullPolicy::Never);
    let grpc = cluster.spec.ports.grpc as u16;
    let clusters: Api<EtlRouterCluster> = Api::namespaced(admin.clone(), namespace);
    clusters.create(&Default::default(), &cluster).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), namespace);
    let names: Vec<String> = (0..3).map(|ordinal| format!("my-cluster-{ordinal}")).collect();
    let client = RouterClient::new(support::operator::router_options());
    let phase = |wanted: ClusterPhase| {
        let clusters = clusters.clone();
        move || {
            let clusters = clusters.clone();
            async move { clusters.get("my-cluster").await.ok().filter(|c| phase_of(c) == Some(wanted)) }
        }
    };

    let ready = until(node, "three members Ready", phase(ClusterPhase::Ready)).await;
    let status = ready.status.as_ref().unwrap();
    assert_eq!(status.members.len(), 3, "{status:#?}");
    assert!(status.members.iter().all(|m| m.healthy && m.role != "Learner"), "{status:#?}");
    // Each pod answers from its own Raft state, and all three name the same leader in the same term.
    let answers = until(node, "every member to agree on the leader", || async {
        let answers = statuses(&pods, &client, &names, grpc).await?;
        let (_, first) = &answers[0];
        answers
            .iter()
            .all(|(_, a)| a.leader_id != 0 && (a.leader_id, a.term) == (first.leader_id, first.term))
            .then_some(answers)
    })
    .await;
    let node_ids: Vec<u64> = answers.iter().map(|(_, a)| a.node_id).collect();
    assert_eq!(node_ids, [1, 2, 3], "three processes, three Raft ids");
    // Without `storage` the spec asks for no claim: the data volume is an emptyDir.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), namespace);
    assert!(claims.list(&ListParams::default()).await.unwrap().items.is_empty());
    let pod = pods.get("my-cluster-0").await.unwrap();
    let data = pod.spec.unwrap().volumes.unwrap().into_iter().find(|v| v.name == "data").unwrap();
    assert!(data.empty_dir.is_some() && data.persistent_volume_claim.is_none(), "{data:?}");
    let leader_id = answers[0].1.leader_id;
    let leaders = answers[0]
        .1
        .nodes
        .iter()
        .filter(|n| n.role() == NodeRole::Leader)
        .map(|n| n.node_id)
        .collect::<Vec<_>>();
    assert_eq!(leaders, [leader_id]);
    assert_eq!(status.leader.as_deref(), Some(format!("my-cluster-{}", leader_id - 1).as_str()));
    let term = answers[0].1.term;

    // A follower's container killed through the runtime: one member lost for real.
    let follower = (1..=3).find(|id| *id != leader_id).unwrap();
    let (container, _) = ready_container(&pods.get(&names[follower as usize - 1]).await.unwrap()).unwrap();
    node.ctr(&["tasks", "kill", "--signal", "SIGKILL", &container]).unwrap();
    let degraded = until(node, "Degraded with one member down", phase(ClusterPhase::Degraded)).await;
    assert_eq!(
        degraded.status.as_ref().unwrap().leader.as_deref(),
        Some(format!("my-cluster-{}", leader_id - 1).as_str())
    );
    let back = until(node, "Ready once the kubelet restarted it", phase(ClusterPhase::Ready)).await;
    assert_eq!(back.status.as_ref().unwrap().members.len(), 3);
    let restarted = ready_container(&pods.get(&names[follower as usize - 1]).await.unwrap()).unwrap();
    assert_eq!(restarted.1, 1, "restarted in place by the kubelet");

    // Two of three killed, the leader among them, and killed again whenever
    // the kubelet restarts them (its first restart is immediate) until the
    // survivor says there is no leader and the cluster is Unavailable.
    let victims = [names[leader_id as usize - 1].clone(), names[follower as usize - 1].clone()];
    let survivor = (1..=3u64).find(|id| ![leader_id, follower].contains(id)).unwrap();
    let survivor_pod = names[survivor as usize - 1].clone();
    let unavailable = until(node, "no leader and Unavailable while two of three are down", || async {
        for victim in &victims {
            if let Some(container) = pods.get(victim).await.ok().as_ref().and_then(running_container) {
                let _ = node.ctr(&["tasks", "kill", "--signal", "SIGKILL", &container]);
            }
        }
        let alone = statuses(&pods, &client, std::slice::from_ref(&survivor_pod), grpc).await?;
        let unavailable = clusters.get("my-cluster").await.ok()?;
        (alone[0].1.leader_id == 0 && phase_of(&unavailable) == Some(ClusterPhase::Unavailable))
            .then_some(unavailable)
    })
    .await;
    let (degraded, reason) = condition_of(&unavailable, "Degraded").unwrap();
    assert_eq!(degraded, "True", "{reason}");
    let again = until(node, "Ready once both are back", phase(ClusterPhase::Ready)).await;
    let answers = until(node, "the members to agree on a leader again", || async {
        let answers = statuses(&pods, &client, &names, grpc).await?;
        let (_, first) = &answers[0];
        answers.iter().all(|(_, a)| a.leader_id != 0 && a.leader_id == first.leader_id).then_some(answers)
    })
    .await;
    assert!(answers[0].1.term > term, "a new term after losing the leader: {:?}", answers[0].1);
    assert_eq!(again.status.as_ref().unwrap().members.len(), 3);

    // 3 → 5 → 3, one member at a time by the operator: a new pod, started with
    // the longer --peers, joins the Raft cluster as a voter without the others
    // restarting; a removed pod leaves it once it stops announcing.
    for (replicas, what) in [(5usize, "five voters"), (3, "three voters again")] {
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        clusters.patch("my-cluster", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let names: Vec<String> = (0..replicas).map(|ordinal| format!("my-cluster-{ordinal}")).collect();
        let leader = until(node, &format!("Ready with {what} in the Raft membership"), || async {
            let cluster = clusters.get("my-cluster").await.ok()?;
            let ready = phase_of(&cluster) == Some(ClusterPhase::Ready)
                && cluster.status.as_ref()?.members.len() == replicas;
            let answers = statuses(&pods, &client, &names, grpc).await?;
            let leader =
                answers.iter().find(|(_, a)| a.leader_id != 0 && a.node_id == a.leader_id)?.1.clone();
            let voters: Vec<u64> = leader
                .nodes
                .iter()
                .filter(|n| n.role() != NodeRole::Learner && n.healthy)
                .map(|n| n.node_id)
                .collect();
            let agreed = answers.iter().all(|(_, a)| a.leader_id == leader.leader_id);
            (ready
                && agreed
                && voters == (1..=replicas as u64).collect::<Vec<_>>()
                && leader.nodes.len() == replicas)
                .then_some(leader)
        })
        .await;
        assert_eq!(leader.nodes.len(), replicas, "{leader:?}");
    }

    run.finish().await;
}

/// The Helm release and its namespace.
const RELEASE: &str = "conveyor-etl-operator";
const RELEASE_NAMESPACE: &str = "conveyor-system";

/// The seed's example set (deploy/examples/seed.yaml and the services its
/// pipeline names, services.yaml) as one List, the cluster's image set to
/// the local router image, never pulled.
fn seed_set_with_image(image: &str) -> serde_json::Value {
    let mut items = Vec::new();
    for file in ["seed.yaml", "services.yaml"] {
        let yaml = std::fs::read_to_string(repo_path("deploy/examples").join(file)).unwrap();
        items.extend(support::tools::yaml_documents(&yaml));
    }
    let cluster = items.iter_mut().find(|item| item["kind"] == "EtlRouterCluster").unwrap();
    cluster["spec"]["image"] = image.into();
    cluster["spec"]["imagePullPolicy"] = "Never".into();
    serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items })
}

/// `kind/name` of every object of the seed's kinds in `namespace` whose
/// `Ready` condition is not True for its generation.
async fn not_ready(admin: &kube::Client, namespace: &str) -> Option<Vec<String>> {
    let mut waiting = Vec::new();
    for kind in ["EtlRouterCluster", "EtlSource", "EtlTransform", "EtlSink", "EtlPipeline"] {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("conveyor.etl", "v1", kind));
        let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), namespace, &resource);
        for object in api.list(&ListParams::default()).await.ok()?.items {
            let generation = object.metadata.generation.unwrap_or_default();
            let ready = object.data["status"]["conditions"].as_array().is_some_and(|conditions| {
                conditions.iter().any(|c| {
                    c["type"] == "Ready"
                        && c["status"] == "True"
                        && c["observedGeneration"].as_i64() == Some(generation)
                })
            });
            if !ready {
                waiting.push(format!("{kind}/{}", object.metadata.name.unwrap_or_default()));
            }
        }
    }
    Some(waiting)
}

/// The router members' pod addresses, for a client outside the cluster.
async fn member_addresses(pods: &Api<Pod>, count: usize, grpc: u16) -> Option<Vec<String>> {
    let mut members = Vec::new();
    for ordinal in 0..count {
        let ip = pods.get(&format!("my-cluster-{ordinal}")).await.ok()?.status?.pod_ip?;
        members.push(format!("{ip}:{grpc}"));
    }
    Some(members)
}

/// `conveyor_reconciles_total{kind}` on the operator pod at `ip`, 0 before any.
fn reconciles_on(ip: &str, kind: &str) -> Option<f64> {
    let (code, body) = support::operator_process::http_get((ip, 8080), "/metrics")?;
    let series = format!(r#"conveyor_reconciles_total{{kind="{kind}"}} "#);
    (code == 200).then(|| {
        body.lines()
            .find_map(|line| line.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_the_operator_as_two_pods_that_run_the_seed_set_roll_back_a_bad_image_and_hand_over() {
    let _turn = ONE_NODE.lock().await;
    // As on a machine where a Docker engine runs: routed and bridged packets
    // the FORWARD chain does not accept are dropped. The operator's pods
    // still reach the routers and the routers each other.
    let docker_policy = ForwardPolicy::drop();
    let run = NodeRun::bare("helm").await;
    let (node, admin, namespace, plane) = (&run.node, &run.admin, &run.namespace, run.plane());
    // The seed's claims are 10Gi of class `standard`.
    node.create_volumes(admin, "router-volume", 3, "10Gi", "standard").await.unwrap();

    // The chart as a user installs it, with the operator's own image; pods
    // reach the API server at the bridge address (there is no kube-proxy
    // for the `kubernetes` Service's ClusterIP).
    let (repository, tag) = run.operator_image.rsplit_once(':').unwrap();
    let api_server = serde_json::json!([
        { "name": "KUBERNETES_SERVICE_HOST", "value": HOST_IP.to_string() },
        { "name": "KUBERNETES_SERVICE_PORT", "value": plane.ports[2].to_string() },
    ]);
    let chart = repo_path("deploy/helm/conveyor-etl-operator");
    let settings = [
        format!("image.repository={repository}"),
        format!("image.tag={tag}"),
        "image.pullPolicy=Never".to_owned(),
        "replicaCount=2".to_owned(),
        "leaderElection.leaseDuration=8s".to_owned(),
        "leaderElection.renewDeadline=6s".to_owned(),
        "leaderElection.retryPeriod=1s".to_owned(),
        "healthInterval=2s".to_owned(),
    ];
    // The operator's pods are admitted under the `restricted` Pod Security Standard, as the router pods are.
    support::create_restricted_namespace(admin, RELEASE_NAMESPACE).await;
    let mut args = vec!["install", RELEASE, chart.to_str().unwrap(), "-n", RELEASE_NAMESPACE];
    for setting in &settings {
        args.extend(["--set", setting.as_str()]);
    }
    let extra_env = format!("extraEnv={api_server}");
    args.extend(["--set-json", &extra_env]);
    tokio::task::block_in_place(|| support::tools::helm_ok(Some(plane), &args));

    let operator_pods: Api<Pod> = Api::namespaced(admin.clone(), RELEASE_NAMESPACE);
    let leases: Api<Lease> = Api::namespaced(admin.clone(), RELEASE_NAMESPACE);
    let holder = || async {
        let leases = leases.list(&ListParams::default()).await.ok()?.items;
        leases.into_iter().find_map(|lease| lease.spec?.holder_identity)
    };
    let ready_operators = || async {
        let pods = operator_pods.list(&ListParams::default()).await.ok()?.items;
        let ready: Vec<(String, String)> = pods
            .iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none() && ready_container(pod).is_some())
            .map(|pod| {
                (pod.metadata.name.clone().unwrap(), pod.status.as_ref().unwrap().pod_ip.clone().unwrap())
            })
            .collect();
        Some(ready)
    };
    let (leader, operators) = until(node, "two operator pods ready, one holding the Lease", || async {
        let ready = ready_operators().await?;
        let leader = holder().await?;
        (ready.len() == 2 && ready.iter().any(|(name, _)| *name == leader)).then_some((leader, ready))
    })
    .await;
    let pod = operator_pods.get(&leader).await.unwrap();
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some(RELEASE), "runs as the chart's service account");
    assert_eq!(spec.node_name.as_deref(), Some(NODE_NAME));

    // The seed's example set, as a user applies it, reaches Ready on three
    // real router pods whose data volumes are the claims the spec asks for.
    let set = node.dir().join("seed-set.json");
    std::fs::write(&set, seed_set_with_image(&run.router_image).to_string()).unwrap();
    tokio::task::block_in_place(|| {
        support::tools::kubectl_new_ok(plane, &["apply", "-n", namespace, "-f", set.to_str().unwrap()])
    });
    until(node, "the seed's example set Ready", || async {
        not_ready(admin, namespace).await.filter(Vec::is_empty)
    })
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), namespace);
    let mut bound: Vec<String> = claims
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|claim| claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
        .filter_map(|claim| claim.spec?.volume_name)
        .collect();
    bound.sort();
    assert_eq!(bound, ["router-volume-0", "router-volume-1", "router-volume-2"]);
    let router_pods: Api<Pod> = Api::namespaced(admin.clone(), namespace);
    let first = router_pods.get("my-cluster-0").await.unwrap().spec.unwrap().volumes.unwrap();
    let data = first.into_iter().find(|volume| volume.name == "data").unwrap();
    assert_eq!(
        data.persistent_volume_claim.map(|claim| claim.claim_name).as_deref(),
        Some("data-my-cluster-0")
    );
    let operator_user = format!("system:serviceaccount:{RELEASE_NAMESPACE}:{RELEASE}");
    let status_writes = |writes: &[support::control_plane::AuditedWrite]| {
        writes.iter().filter(|w| w.request_uri.contains("/apis/conveyor.etl/")).count()
    };
    assert!(
        status_writes(&plane.writes_by(&operator_user)) > 0,
        "the pod's writes are its service account's"
    );

    let clusters: Api<EtlRouterCluster> = Api::namespaced(admin.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), namespace);
    let grpc = clusters.get("my-cluster").await.unwrap().spec.ports.grpc as u16;
    let client = RouterClient::new(support::operator::router_options());
    let pipeline_id = conveyor_etl_operator::router::mapping::pipeline_id(namespace, "user-analytics");
    let on_router = || async {
        let members = member_addresses(&pods, 3, grpc).await?;
        client.get_pipeline(&members, &pipeline_id).await.ok()?
    };
    let submitted = until(node, "the pipeline on the router", on_router).await;
    let submitted = submitted.status.unwrap();
    assert_eq!(submitted.version, 1);

    // A bad image halts the roll at its first pod; reverting it recovers
    // without anyone deleting pods, and the replaced member keeps its data.
    let set_image = |image: String| {
        let clusters = clusters.clone();
        async move {
            let patch = serde_json::json!({ "spec": { "image": image } });
            let patched =
                clusters.patch("my-cluster", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
            patched.metadata.generation.unwrap()
        }
    };
    let (router_repository, _) = run.router_image.rsplit_once(':').unwrap();
    let broken = format!("{router_repository}:missing");
    set_image(broken.clone()).await;
    let halted = until(node, "the roll halted at a pod that cannot start", || async {
        let cluster = clusters.get("my-cluster").await.ok()?;
        let pod = pods.get("my-cluster-2").await.ok()?;
        let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?.clone();
        let waiting = status.state?.waiting?.reason?;
        (phase_of(&cluster) == Some(ClusterPhase::Degraded) && waiting == "ErrImageNeverPull")
            .then_some(cluster)
    })
    .await;
    assert_eq!(condition_of(&halted, "Ready").unwrap().0, "False");
    for ordinal in 0..2 {
        let pod = pods.get(&format!("my-cluster-{ordinal}")).await.unwrap();
        assert_eq!(pod.spec.unwrap().containers[0].image.as_deref(), Some(run.router_image.as_str()));
    }
    let generation = set_image(run.router_image.clone()).await;
    until(node, "Ready on the old image for the reverting generation", || async {
        let cluster = clusters.get("my-cluster").await.ok()?;
        let status = cluster.status.as_ref()?;
        let mut images_back = true;
        for ordinal in 0..3 {
            let pod = pods.get_opt(&format!("my-cluster-{ordinal}")).await.ok().flatten();
            images_back &= pod.as_ref().is_some_and(|pod| {
                ready_container(pod).is_some()
                    && pod.spec.as_ref().unwrap().containers[0].image.as_deref()
                        == Some(run.router_image.as_str())
            });
        }
        (phase_of(&cluster) == Some(ClusterPhase::Ready)
            && status.observed_generation == Some(generation)
            && images_back)
            .then_some(())
    })
    .await;
    let kept = until(node, "the pipeline still on the router", on_router).await;
    assert_eq!(kept.status.as_ref().unwrap().version, 1, "the roll submitted nothing again");

    // The leading operator pod deleted, as a drain does (the node cordoned
    // first, so its replacement waits and the standby is the only
    // candidate): the standby takes the Lease, its first reconciles of every
    // object write nothing, to the API or to the router, and it acts on the
    // next edit exactly once.
    let standby = operators.iter().find(|(name, _)| *name != leader).unwrap().clone();
    let members = member_addresses(&pods, 3, grpc).await.unwrap();
    let commit_index = || async {
        let mut leading = None;
        for member in &members {
            let status = client.member_status(member).await.ok()?;
            if status.leader_id != 0 && status.leader_id == status.node_id {
                leading = Some(status.commit_index);
            }
        }
        leading
    };
    let index_before = until(node, "the router's commit index", commit_index).await;
    // The standby's own writes (by its pod's IP): the old leader may still
    // finish a write of its own before it stops.
    let standby_writes = || {
        let writes = plane.writes_by(&operator_user);
        let from_standby: Vec<_> = writes.into_iter().filter(|w| w.source_ips.contains(&standby.1)).collect();
        status_writes(&from_standby)
    };
    let writes_before = standby_writes();
    let leader_ip = &operators.iter().find(|(name, _)| *name == leader).unwrap().1;
    assert!(
        plane.writes_by(&operator_user).iter().any(|w| w.source_ips.contains(leader_ip)),
        "the audit log names the leader's pod IP as the source of its writes"
    );
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(admin.clone());
    let cordon = |unschedulable: bool| {
        let nodes = nodes.clone();
        async move {
            let patch = serde_json::json!({ "spec": { "unschedulable": unschedulable } });
            nodes.patch(NODE_NAME, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        }
    };
    cordon(true).await;
    operator_pods.delete(&leader, &Default::default()).await.unwrap();
    until(node, "the standby holding the Lease", || async { (holder().await? == standby.0).then_some(()) })
        .await;
    cordon(false).await;
    until(node, "the new leader's first reconcile of every object", || async {
        let counts = [
            ("EtlRouterCluster", 1.0),
            ("EtlSource", 1.0),
            ("EtlTransform", 2.0),
            ("EtlSink", 1.0),
            ("EtlPipeline", 1.0),
        ];
        counts
            .iter()
            .all(|(kind, objects)| reconciles_on(&standby.1, kind).is_some_and(|seen| seen >= *objects))
            .then_some(())
    })
    .await;
    assert_eq!(
        not_ready(admin, namespace).await.unwrap(),
        Vec::<String>::new(),
        "still Ready under the new leader"
    );
    assert_eq!(standby_writes(), writes_before, "the takeover wrote no status");
    let index_after = until(node, "the router's commit index", commit_index).await;
    assert_eq!(index_after, index_before, "the takeover wrote nothing to the router");

    let pipelines: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        namespace,
        &ApiResource::from_gvk(&GroupVersionKind::gvk("conveyor.etl", "v1", "EtlPipeline")),
    );
    let edit = serde_json::json!({ "spec": { "steps": ["enrich-geo", "filter-active"] } });
    pipelines.patch("user-analytics", &PatchParams::default(), &Patch::Merge(&edit)).await.unwrap();
    let updated = until(node, "the edit on the router", || async {
        on_router().await.filter(|p| p.status.as_ref().is_some_and(|s| s.version >= 2))
    })
    .await;
    assert_eq!(updated.status.as_ref().unwrap().version, 2, "exactly one update");
    assert_eq!(updated.status.unwrap().created_at, submitted.created_at, "never created again");
    until(node, "Ready for the edited generation", || async {
        not_ready(admin, namespace).await.filter(Vec::is_empty)
    })
    .await;

    run.finish().await;
    assert_eq!(forward_rules(), docker_policy.rules, "the node left the FORWARD chain changed");
}

/// The FORWARD chain's policy set to DROP for a test (what a Docker engine
/// sets), and the chain's rules then; the old policy is back on drop.
struct ForwardPolicy {
    policy: String,
    rules: String,
}

impl ForwardPolicy {
    fn drop() -> ForwardPolicy {
        let rules = forward_rules();
        let policy = rules
            .lines()
            .find_map(|line| line.strip_prefix("-P FORWARD "))
            .expect("the FORWARD chain's policy")
            .trim()
            .to_owned();
        iptables(&["-P", "FORWARD", "DROP"]);
        ForwardPolicy { policy, rules: forward_rules() }
    }
}

impl Drop for ForwardPolicy {
    fn drop(&mut self) {
        iptables(&["-P", "FORWARD", &self.policy]);
    }
}

fn forward_rules() -> String {
    iptables(&["-S", "FORWARD"])
}

fn iptables(args: &[&str]) -> String {
    let output = std::process::Command::new("iptables").arg("-w").args(args).output().unwrap();
    assert!(output.status.success(), "iptables {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}
