//! End to end on a real node (src/demo/node.rs): containerd, runc, the
//! kubelet and kube-scheduler beside the control plane, and a real router
//! pod from a locally built image (tests/harness/build-router-image.sh: the
//! static simulator as `conveyor-etl-router`, busybox's `sh`), with the
//! operator running in-process under its ClusterRole.
//!
//! The router pods run the simulator's router mode, one real Raft member
//! (openraft) per pod, peers reached through their StatefulSet DNS names:
//! a killed container is a member lost for real, two of three a lost quorum.
//!
//! Needs root, `tests/harness/build-node.sh` and
//! `tests/harness/build-router-image.sh` (as `.ci/run` runs them); fails,
//! naming what is missing, without them. One real node runs per machine at
//! a time (a second refuses to start).

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};

use conveyor_etl_operator::crd::{ClusterPhase, EtlRouterCluster, ImagePullPolicy};
use conveyor_etl_operator::demo::node::{self, HOST_IP, NODE_NAME, RealNode};
use conveyor_etl_operator::router::{GetClusterStatusResponse, NodeRole, Router, RouterClient};
use support::operator::RunningOperator;
use support::scenario::seed_cluster;
use support::{install_crds, repo_path, test_namespace};

/// Long enough for a cold start on a loaded two-core machine.
const DEADLINE: Duration = Duration::from_secs(180);

/// One real node per machine: the tests of this binary take turns.
static ONE_NODE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The router image tests/harness/build-router-image.sh packed (`.ci/run`
/// runs it before `cargo test`; the test cannot: `cargo test` holds the
/// target directory's lock while tests run). Refused when any source of the
/// simulator is newer than the tarball, so a stale image never passes for
/// the current code.
fn router_image() -> (String, PathBuf) {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_path("target"));
    let tarball = target.join("node-images/router.tar");
    let rebuild = format!(
        "run `bash tests/harness/build-router-image.sh` (with CARGO_TARGET_DIR={})",
        target.display()
    );
    let packed = std::fs::metadata(&tarball)
        .and_then(|meta| meta.modified())
        .unwrap_or_else(|_| panic!("no router image at {}: {rebuild}", tarball.display()));
    let mut newer = Vec::new();
    for source in ["src", "proto", "Cargo.toml", "Cargo.lock", "build.rs"] {
        newest_after(&repo_path(source), packed, &mut newer);
    }
    assert!(newer.is_empty(), "the router image is older than {newer:?}: {rebuild}");
    let name = std::fs::read_to_string(tarball.with_extension("name"))
        .unwrap_or_else(|_| panic!("no image name beside {}: {rebuild}", tarball.display()));
    (name.trim().to_owned(), tarball)
}

/// Sources newer than `packed`, but for what the image's binary is built
/// without (feature `demo`: src/demo and the benchmark).
fn newest_after(path: &std::path::Path, packed: std::time::SystemTime, newer: &mut Vec<PathBuf>) {
    if [repo_path("src/demo"), repo_path("src/bin/conveyor-bench")].iter().any(|skip| path == skip) {
        return;
    }
    let Ok(meta) = std::fs::metadata(path) else { return };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            newest_after(&entry.path(), packed, newer);
        }
    } else if meta.modified().is_ok_and(|modified| modified > packed) {
        newer.push(path.to_owned());
    }
}

/// A real node with the router image imported, the CRDs, the operator's
/// ClusterRole, a test namespace and the operator running in it.
struct NodeRun {
    node: RealNode,
    /// Every process the node and its control plane started.
    pids: Vec<u32>,
    admin: kube::Client,
    namespace: String,
    operator: RunningOperator,
    image: String,
}

impl NodeRun {
    async fn start(prefix: &str) -> NodeRun {
        if let Some(why) = node::unavailable() {
            panic!("no real node on this machine: {why}");
        }
        let (image, tarball) = router_image();
        let node =
            tokio::task::spawn_blocking(RealNode::start).await.unwrap().unwrap_or_else(|e| panic!("{e}"));
        node.import_image(&tarball).unwrap();
        let plane = node.plane.as_ref().unwrap();
        let pids: Vec<u32> = node.processes().iter().map(|(_, pid)| *pid).chain(plane.pids()).collect();
        tokio::task::block_in_place(|| {
            install_crds(plane);
            support::operator::bind_operator_role(plane);
        });
        let admin = plane.client().await;
        let namespace = test_namespace(&admin, prefix).await;
        let operator = RunningOperator::start(plane, &namespace).await;
        NodeRun { node, pids, admin, namespace, operator, image }
    }

    /// Stops the operator and the node, and checks the node left nothing behind.
    async fn finish(self) {
        let NodeRun { mut node, pids, operator, .. } = self;
        operator.stop().await;
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
            let objects =
                support::kubectl(plane, &["get", "pods,statefulsets,etlrc,events", "-A", "-o", "wide"]);
            panic!(
                "timed out after {DEADLINE:?} waiting for {what}\n{}\n{}",
                String::from_utf8_lossy(&objects.stdout),
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
    let (node, admin, namespace, image) = (&run.node, &run.admin, &run.namespace, &run.image);

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
    let (node, admin, namespace, image) = (&run.node, &run.admin, &run.namespace, &run.image);

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
