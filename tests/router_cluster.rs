//! EtlRouterCluster end to end: the operator (in-process, under its own
//! RBAC) against the real control plane, with the test playing the kubelet
//! and a simulated router node listening on each pod's IP.

mod support;

use std::sync::{Arc, Mutex};

use futures::StreamExt;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use conveyor_etl_operator::crd::{ClusterPhase, EtlRouterCluster, StorageRetention};
use support::operator::{RunningOperator, shared_with_rbac};
use support::scenario::{FORM_TIMEOUT, ROLL_TIMEOUT, Scenario, condition, phase_of, seed_cluster};
use support::{eventually, test_namespace};

#[tokio::test]
async fn seed_cluster_forms_through_every_phase_and_deploys_what_the_spec_says() {
    let s = Scenario::new("form").await;
    s.kubelet.start_pods_below(1);
    s.create(&seed_cluster("my-cluster")).await;

    let forming = s.wait_phase(ClusterPhase::RaftForming).await;
    let reason = condition(&forming, "Ready").1;
    assert!(["ElectingLeader", "WaitingForMembers"].contains(&reason), "{reason}");
    assert_eq!(condition(&forming, "Progressing").0, "True");
    s.kubelet.release_all().await;
    let ready = s.wait_phase(ClusterPhase::Ready).await;

    let status = ready.status.as_ref().unwrap();
    assert_eq!(status.ready_replicas, Some(3));
    assert_eq!(status.leader.as_deref(), Some("my-cluster-0"));
    assert_eq!(status.leader_id, Some(1));
    assert!(status.term.unwrap() >= 1);
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.healthy));
    assert_eq!(status.observed_generation, ready.metadata.generation);
    assert_eq!(condition(&ready, "Ready"), ("True", "ClusterHealthy", condition(&ready, "Ready").2));
    assert_eq!(condition(&ready, "Degraded").0, "False");

    // The Event follows the status write that showed Ready: wait for it.
    let notes: Vec<String> = eventually(FORM_TIMEOUT, "the Ready transition's Event", || async {
        let notes: Vec<String> = s.events().await.into_iter().map(|(_, _, note)| note).collect();
        notes.iter().any(|n| n.starts_with("RaftForming → Ready")).then_some(notes)
    })
    .await;
    let transitions: Vec<&str> =
        notes.iter().map(|n| n.split(':').next().unwrap()).filter(|n| n.contains('→')).collect();
    assert_eq!(
        transitions,
        ["new → Provisioning", "Provisioning → RaftForming", "RaftForming → Ready"],
        "{notes:?}"
    );

    // What was deployed matches the spec.
    let set: StatefulSet = Api::namespaced(s.client.clone(), &s.namespace).get("my-cluster").await.unwrap();
    let spec = set.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("my-cluster-raft"));
    let container = &spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.image.as_deref(), Some("conveyor-etl-router:latest"));
    let limits = container.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["memory"].0, "512Mi");
    let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
    let claim_spec = claim.spec.as_ref().unwrap();
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("standard"));
    assert_eq!(claim_spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0, "10Gi");
    assert_eq!(set.metadata.owner_references.as_ref().unwrap()[0].name, "my-cluster");

    let services: Api<Service> = Api::namespaced(s.client.clone(), &s.namespace);
    let raft = services.get("my-cluster-raft").await.unwrap().spec.unwrap();
    assert_eq!(raft.cluster_ip.as_deref(), Some("None"));
    assert_eq!(raft.publish_not_ready_addresses, Some(true));
    let grpc = services.get("my-cluster").await.unwrap().spec.unwrap();
    assert_eq!(grpc.ports.unwrap()[0].port, 50051);

    let config: ConfigMap =
        Api::namespaced(s.client.clone(), &s.namespace).get("my-cluster-config").await.unwrap();
    let raft_yaml = config.data.unwrap().into_values().collect::<Vec<_>>().join("\n");
    assert!(raft_yaml.contains("300") && raft_yaml.contains("100"), "{raft_yaml}");
    assert!(raft_yaml.contains(&format!("my-cluster-2.my-cluster-raft.{}.svc", s.namespace)), "{raft_yaml}");

    assert_eq!(pdb_max_unavailable(&s).await, IntOrString::Int(1));

    // The namespace enforces the restricted Pod Security Standard: the router
    // pods above were admitted under it, a pod that does not meet it is not.
    let unrestricted: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "unrestricted" },
        "spec": { "containers": [{ "name": "c", "image": "conveyor-etl-router:latest" }] },
    }))
    .unwrap();
    let refused = Api::<Pod>::namespaced(s.client.clone(), &s.namespace)
        .create(&Default::default(), &unrestricted)
        .await
        .expect_err("a pod without a security context is refused");
    assert!(refused.to_string().contains("violates PodSecurity \"restricted"), "{refused}");
}

#[tokio::test]
async fn members_failing_and_returning_move_the_phase_and_never_leave_it_ready_blind() {
    let s = Scenario::new("health").await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;
    let sim = &s.kubelet.sim;

    // A follower dies: Degraded, naming it; it returns: Ready.
    sim.stop_node(3).await;
    let degraded = s.wait_phase(ClusterPhase::Degraded).await;
    let (_, reason, message) = condition(&degraded, "Ready");
    assert_eq!(reason, "MemberUnhealthy");
    assert!(message.contains("my-cluster-2 (node 3)"), "{message}");
    sim.restart_node(3).await.unwrap();
    s.wait_phase(ClusterPhase::Ready).await;

    // The leader dies: a new one is elected, the old one returns: Ready under the new leader.
    sim.stop_node(1).await;
    let failed_over = s
        .wait_for("a new leader", |c| {
            c.status.as_ref().is_some_and(|s| s.leader_id.is_some_and(|id| id != 1))
        })
        .await;
    assert_eq!(phase_of(&failed_over), Some(ClusterPhase::Degraded));
    sim.restart_node(1).await.unwrap();
    let ready = s.wait_phase(ClusterPhase::Ready).await;
    assert_ne!(ready.status.as_ref().unwrap().leader_id, Some(1));

    // Two of three die: quorum lost.
    let leader = sim.leader().unwrap();
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    sim.stop_node(others[0]).await;
    sim.stop_node(leader).await;
    let lost = s.wait_phase(ClusterPhase::Unavailable).await;
    assert_eq!(condition(&lost, "Ready").0, "False");
    assert_eq!(condition(&lost, "Ready").1, "QuorumLost");
    assert_eq!(condition(&lost, "Degraded").0, "True");
    sim.restart_node(others[0]).await.unwrap();
    sim.restart_node(leader).await.unwrap();
    s.wait_phase(ClusterPhase::Ready).await;

    // Every member partitioned: health unknown, never Ready.
    for id in 1..=3 {
        sim.partition_node(id);
    }
    let blind = s.wait_phase(ClusterPhase::Unavailable).await;
    assert_eq!(condition(&blind, "Ready").0, "Unknown");
    assert_eq!(condition(&blind, "Ready").1, "RouterUnreachable");
    for id in 1..=3 {
        sim.heal_node(id);
    }
    s.wait_phase(ClusterPhase::Ready).await;

    for expected in ["MemberUnhealthy", "QuorumLost", "RouterUnreachable", "ClusterHealthy"] {
        s.wait_event(&format!("a {expected} Event"), |_, reason, _| reason == expected).await;
    }
}

#[tokio::test]
async fn a_thousand_reconciles_of_an_unchanged_ready_cluster_write_nothing() {
    let mut s = Scenario::new("quiet").await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;
    // From here on only the direct reconciles below run.
    s.operator.take().unwrap().stop().await;
    let in_namespace = format!("/namespaces/{}/", s.namespace);
    let writes = || {
        let all = s.plane.writes_by(support::control_plane::OPERATOR_USER);
        all.into_iter().filter(|w| w.request_uri.contains(&in_namespace)).collect::<Vec<_>>()
    };
    let before = writes().len();
    let router_writes_before = s.kubelet.sim.mutation_log().len();
    let (ctx, _caches) = support::operator::direct_context(s.plane, &s.namespace).await;
    let cluster = std::sync::Arc::new(s.get().await);
    for _ in 0..1000 {
        conveyor_etl_operator::runtime::reconciler::run(cluster.clone(), ctx.clone()).await.unwrap();
    }
    let new_writes: Vec<String> =
        writes()[before..].iter().map(|w| format!("{} {}", w.verb, w.request_uri)).collect();
    assert!(new_writes.is_empty(), "writes for an unchanged cluster: {new_writes:?}");
    assert_eq!(s.kubelet.sim.mutation_log().len(), router_writes_before, "router writes");
    // The audit log does see this identity's writes: the cluster's creation made some.
    assert!(before > 0, "the audit log recorded no operator writes at all");
}

/// Watches `api` in a task that hands every event to `record`, returning once
/// the initial list is in, so that nothing the test does next goes unseen.
async fn watch_from_now<K>(
    api: Api<K>,
    config: watcher::Config,
    mut record: impl FnMut(watcher::Event<K>) + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let (listed, initial_list) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut listed = Some(listed);
        let mut events = watcher(api, config).boxed();
        while let Some(Ok(event)) = events.next().await {
            if matches!(event, watcher::Event::InitDone) {
                listed.take().map(|listed| listed.send(()));
            }
            record(event);
        }
    });
    initial_list.await.expect("the watch's initial list");
    task
}

/// Records every value a StatefulSet's `spec.replicas` takes, as the watch delivers them.
async fn record_replicas(
    client: Client,
    namespace: &str,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Vec<i32>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sets: Api<StatefulSet> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().fields("metadata.name=my-cluster");
    let record = seen.clone();
    let task = watch_from_now(sets, config, move |event| {
        if let watcher::Event::Apply(set) | watcher::Event::InitApply(set) = event {
            let replicas = set.spec.and_then(|spec| spec.replicas).unwrap_or_default();
            let mut seen = record.lock().unwrap();
            if seen.last() != Some(&replicas) {
                seen.push(replicas);
            }
        }
    })
    .await;
    (task, seen)
}

async fn pdb_max_unavailable(s: &Scenario) -> IntOrString {
    let pdb = Api::<PodDisruptionBudget>::namespaced(s.client.clone(), &s.namespace);
    pdb.get("my-cluster").await.unwrap().spec.unwrap().max_unavailable.unwrap()
}

async fn set_replicas(s: &Scenario, replicas: i32) {
    let patch = serde_json::json!({"spec": {"replicas": replicas}});
    s.clusters.patch("my-cluster", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
}

fn ready_with_members(count: usize) -> impl Fn(&EtlRouterCluster) -> bool {
    move |c| {
        phase_of(c) == Some(ClusterPhase::Ready)
            && c.status
                .as_ref()
                .is_some_and(|s| s.members.len() == count && s.members.iter().all(|m| m.healthy))
    }
}

#[tokio::test]
async fn scaling_3_to_5_to_3_moves_one_member_at_a_time_and_keeps_the_pdb_right() {
    let s = Scenario::new("scale").await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;
    let (recorder, seen) = record_replicas(s.client.clone(), &s.namespace).await;

    set_replicas(&s, 5).await;
    let scaling = s.wait_for("scaling under way", |c| phase_of(c) == Some(ClusterPhase::Degraded)).await;
    // Seen at the first step (3 → 5) or already at the second (4 → 5).
    assert!(condition(&scaling, "Ready").2.contains(" → 5"), "{:?}", condition(&scaling, "Ready"));
    assert_eq!(condition(&scaling, "Progressing").0, "True");
    s.wait_for("5 healthy members", ready_with_members(5)).await;
    assert_eq!(pdb_max_unavailable(&s).await, IntOrString::Int(2));

    set_replicas(&s, 3).await;
    s.wait_for("3 healthy members", ready_with_members(3)).await;
    assert_eq!(pdb_max_unavailable(&s).await, IntOrString::Int(1));

    recorder.abort();
    let steps = seen.lock().unwrap().clone();
    assert_eq!(steps, [3, 4, 5, 4, 3], "the StatefulSet skipped a step");
    let reasons: Vec<String> = s.events().await.into_iter().map(|(_, reason, _)| reason).collect();
    assert!(reasons.iter().any(|r| r == "Scaling"), "{reasons:?}");

    // Switching the budget off removes it.
    let off = serde_json::json!({"spec": {"podDisruptionBudget": {"enabled": false}}});
    s.clusters.patch("my-cluster", &PatchParams::default(), &Patch::Merge(off)).await.unwrap();
    let budgets = Api::<PodDisruptionBudget>::namespaced(s.client.clone(), &s.namespace);
    eventually(FORM_TIMEOUT, "the PodDisruptionBudget removed", || async {
        budgets.get_opt("my-cluster").await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn kubectl_scale_moves_the_cluster_one_member_at_a_time_through_the_scale_subresource() {
    let s = Scenario::new("kubectl-scale").await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_for("3 healthy members", ready_with_members(3)).await;
    let (recorder, seen) = record_replicas(s.client.clone(), &s.namespace).await;

    support::kubectl_ok(s.plane, &["scale", "etlrc", "my-cluster", "--replicas", "5", "-n", &s.namespace]);
    let scaled = s.wait_for("5 healthy members", ready_with_members(5)).await;
    recorder.abort();
    assert_eq!(scaled.spec.replicas, 5);
    assert_eq!(*seen.lock().unwrap(), [3, 4, 5], "the StatefulSet skipped a step");

    // The scale subresource reads the size back from status, and selects the pods.
    let scale = |path: &str| {
        support::kubectl_ok(
            s.plane,
            &[
                "get",
                "etlrc",
                "my-cluster",
                "-n",
                &s.namespace,
                "--subresource=scale",
                "-o",
                &format!("jsonpath={path}"),
            ],
        )
    };
    eventually(FORM_TIMEOUT, "the scale subresource reporting 5 replicas", || async {
        (scale("{.status.replicas}") == "5").then_some(())
    })
    .await;
    let selector = scale("{.status.selector}");
    let pods =
        support::kubectl_ok(s.plane, &["get", "pods", "-n", &s.namespace, "-l", &selector, "-o", "name"]);
    assert_eq!(pods.lines().count(), 5, "selector {selector:?} selects the router pods: {pods}");
}

/// The router pods once every one of them satisfies `check` and the cluster is Ready again.
async fn pods_once_rolled(s: &Scenario, what: &str, check: impl Fn(&Pod) -> bool) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.namespace);
    let config = ListParams::default().labels("conveyor.etl/cluster=my-cluster");
    eventually(ROLL_TIMEOUT, what, || async {
        let listed = pods.list(&config).await.ok()?.items;
        let cluster = s.clusters.get("my-cluster").await.ok()?;
        (listed.len() == 3 && listed.iter().all(&check) && ready_with_members(3)(&cluster)).then_some(listed)
    })
    .await
}

#[tokio::test]
async fn the_pod_template_reaches_the_pods_and_editing_it_rolls_them() {
    let s = Scenario::new("pod-template").await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_for("3 healthy members", ready_with_members(3)).await;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.namespace);
    let first_uids: Vec<String> = pods
        .list(&ListParams::default().labels("conveyor.etl/cluster=my-cluster"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|pod| pod.uid().unwrap())
        .collect();

    let patch = serde_json::json!({"spec": {
        "podTemplate": {
            "labels": {"team": "data", "conveyor.etl/cluster": "someone-else"},
            "annotations": {"example.com/owner": "data-team"},
            "imagePullSecrets": [{"name": "regcred"}],
            "env": [{"name": "RUST_LOG", "value": "debug"}],
        },
        "placement": {
            "nodeSelector": {"disktype": "ssd"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "etl", "effect": "NoSchedule"}],
        },
    }});
    s.clusters.patch("my-cluster", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    let rolled =
        pods_once_rolled(&s, "every pod with the template's label, secret, selector and toleration", |pod| {
            let spec = pod.spec.as_ref().unwrap();
            pod.labels().get("team").map(String::as_str) == Some("data")
                && spec.image_pull_secrets.as_ref().is_some_and(|secrets| secrets[0].name == "regcred")
                && spec.node_selector.as_ref().and_then(|n| n.get("disktype")).map(String::as_str)
                    == Some("ssd")
                && spec
                    .tolerations
                    .as_ref()
                    .is_some_and(|t| t.iter().any(|t| t.key.as_deref() == Some("dedicated")))
        })
        .await;
    for pod in &rolled {
        assert!(!first_uids.contains(&pod.uid().unwrap()), "{} was not replaced", pod.name_any());
        // The operator's selector label wins over the template's.
        assert_eq!(pod.labels().get("conveyor.etl/cluster").map(String::as_str), Some("my-cluster"));
        assert_eq!(pod.annotations().get("example.com/owner").map(String::as_str), Some("data-team"));
        let env = pod.spec.as_ref().unwrap().containers[0].env.clone().unwrap();
        assert!(env.iter().any(|e| e.name == "RUST_LOG" && e.value.as_deref() == Some("debug")), "{env:?}");
    }
    let warned = s.clusters.get("my-cluster").await.unwrap();
    let (status, _, message) = condition(&warned, "SpecWarning");
    assert_eq!(status, "True");
    assert!(
        message.contains("spec.podTemplate.labels") && message.contains("conveyor.etl/cluster"),
        "{message}"
    );

    // An edit of the label alone rolls every pod again.
    let second_uids: Vec<String> = rolled.iter().map(|pod| pod.uid().unwrap()).collect();
    let patch = serde_json::json!({"spec": {"podTemplate": {"labels": {"team": "analytics"}}}});
    s.clusters.patch("my-cluster", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    let relabelled = pods_once_rolled(&s, "every pod relabelled", |pod| {
        pod.labels().get("team").map(String::as_str) == Some("analytics")
    })
    .await;
    assert!(
        relabelled.iter().all(|pod| !second_uids.contains(&pod.uid().unwrap())),
        "a pod was not replaced"
    );
}

#[tokio::test]
async fn an_image_change_rolls_one_pod_at_a_time_with_the_leader_last() {
    let s = Scenario::new("roll").await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;
    // A leader that is not the lowest ordinal, so "highest first" alone would not put it last.
    assert!(s.kubelet.sim.transfer_leadership(2), "node 2 takes over");
    let ready = s
        .wait_for("node 2 leading", |c| {
            phase_of(c) == Some(ClusterPhase::Ready)
                && c.status.as_ref().is_some_and(|s| s.leader.as_deref() == Some("my-cluster-1"))
        })
        .await;
    let leader = ready.status.unwrap().leader.unwrap();

    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.namespace);
    let deleted = Arc::new(Mutex::new(Vec::<String>::new()));
    let record = deleted.clone();
    let config = watcher::Config::default().labels("conveyor.etl/cluster=my-cluster");
    let recorder = watch_from_now(pods.clone(), config, move |event| {
        if let watcher::Event::Delete(pod) = event {
            record.lock().unwrap().push(pod.name_any());
        }
    })
    .await;

    let patch = serde_json::json!({"spec": {"image": "conveyor-etl-router:v2"}});
    s.clusters.patch("my-cluster", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    // The RollingUpdate status can be gone before a poll reads it; its Event stays.
    eventually(FORM_TIMEOUT, "a RollingUpdate Event", || async {
        s.events().await.iter().any(|(_, reason, _)| reason == "RollingUpdate").then_some(())
    })
    .await;
    let sets: Api<StatefulSet> = Api::namespaced(s.client.clone(), &s.namespace);
    let rolled = s
        .wait_within(ROLL_TIMEOUT, "every pod on the new template", |c| {
            phase_of(c) == Some(ClusterPhase::Ready) && deleted.lock().unwrap().len() >= 3
        })
        .await;
    recorder.abort();

    let order = deleted.lock().unwrap().clone();
    assert_eq!(order.len(), 3, "each pod rolled exactly once: {order:?}");
    assert_eq!(
        order,
        ["my-cluster-2", "my-cluster-0", "my-cluster-1"],
        "followers highest first, the leader ({leader}) last"
    );
    let update_revision = sets.get("my-cluster").await.unwrap().status.unwrap().update_revision.unwrap();
    for pod in pods.list(&ListParams::default()).await.unwrap() {
        assert_eq!(
            pod.labels().get("controller-revision-hash"),
            Some(&update_revision),
            "{}",
            pod.name_any()
        );
        assert_eq!(pod.spec.unwrap().containers[0].image.as_deref(), Some("conveyor-etl-router:v2"));
    }
    assert!(rolled.status.unwrap().members.iter().all(|m| m.healthy));
}

#[tokio::test]
async fn a_one_member_cluster_rolls_its_only_pod_although_its_budget_allows_no_eviction() {
    let s = Scenario::new("roll-one").await;
    let mut cluster = seed_cluster("my-cluster");
    cluster.spec.replicas = 1;
    s.create(&cluster).await;
    s.wait_phase(ClusterPhase::Ready).await;
    assert_eq!(
        pdb_max_unavailable(&s).await,
        IntOrString::Int(0),
        "one member: the budget allows no eviction"
    );

    let patch = serde_json::json!({"spec": {"image": "conveyor-etl-router:v2"}});
    s.clusters.patch("my-cluster", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.namespace);
    let rolled = s
        .wait_for("the only pod on the new image and the cluster Ready", |c| {
            phase_of(c) == Some(ClusterPhase::Ready)
                && c.status.as_ref().is_some_and(|s| s.observed_generation == c.metadata.generation)
        })
        .await;
    let pod = pods.get("my-cluster-0").await.unwrap();
    assert_eq!(pod.spec.unwrap().containers[0].image.as_deref(), Some("conveyor-etl-router:v2"));
    assert!(rolled.status.unwrap().members.iter().all(|m| m.healthy));
}

#[tokio::test]
async fn a_paused_cluster_changes_nothing_until_resumed() {
    let s = Scenario::new("pause").await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;
    let sets: Api<StatefulSet> = Api::namespaced(s.client.clone(), &s.namespace);
    let image =
        |set: StatefulSet| set.spec.unwrap().template.spec.unwrap().containers[0].image.clone().unwrap();

    let pause = serde_json::json!({"metadata": {"annotations": {"conveyor.etl/paused": "true"}}});
    s.clusters.patch("my-cluster", &PatchParams::default(), &Patch::Merge(pause)).await.unwrap();
    s.wait_for("ReconciliationPaused", |c| {
        c.status.as_ref().is_some_and(|s| {
            s.conditions.iter().any(|c| c.type_ == "ReconciliationPaused" && c.status == "True")
        })
    })
    .await;
    let change = serde_json::json!({"spec": {"image": "conveyor-etl-router:v2", "replicas": 5}});
    s.clusters.patch("my-cluster", &PatchParams::default(), &Patch::Merge(change)).await.unwrap();
    // The operator observes the new generation (status says so) yet applies nothing.
    let generation = s.get().await.metadata.generation;
    s.wait_for("the new generation observed", |c| {
        c.status.as_ref().and_then(|s| s.observed_generation) == generation
    })
    .await;
    let set = sets.get("my-cluster").await.unwrap();
    assert_eq!(set.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(image(set), "conveyor-etl-router:latest");

    let resume = serde_json::json!({"metadata": {"annotations": {"conveyor.etl/paused": null}}});
    s.clusters.patch("my-cluster", &PatchParams::default(), &Patch::Merge(resume)).await.unwrap();
    let resumed = s
        .wait_for("resumed", |c| {
            c.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| c.type_ == "ReconciliationPaused" && c.status == "False")
            })
        })
        .await;
    assert_eq!(condition(&resumed, "ReconciliationPaused").1, "Resumed");
    eventually(FORM_TIMEOUT, "the new image applied", || async {
        let set = sets.get("my-cluster").await.ok()?;
        (image(set) == "conveyor-etl-router:v2").then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleting_a_cluster_garbage_collects_its_objects_and_keeps_volumes_unless_told() {
    let s = Scenario::new("delete").await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(s.client.clone(), &s.namespace);
    let claim_names = || async {
        let mut names: Vec<String> =
            claims.list(&ListParams::default()).await.unwrap().iter().map(|c| c.name_any()).collect();
        names.sort();
        names
    };
    assert_eq!(claim_names().await, ["data-my-cluster-0", "data-my-cluster-1", "data-my-cluster-2"]);

    assert!(s.get().await.metadata.finalizers.is_none(), "no finalizer while volumes are retained");
    s.clusters.delete("my-cluster", &Default::default()).await.unwrap();
    eventually(FORM_TIMEOUT, "the owned objects garbage-collected", || async {
        let sets: Api<StatefulSet> = Api::namespaced(s.client.clone(), &s.namespace);
        let services: Api<Service> = Api::namespaced(s.client.clone(), &s.namespace);
        let maps: Api<ConfigMap> = Api::namespaced(s.client.clone(), &s.namespace);
        let gone = sets.get_opt("my-cluster").await.ok()?.is_none()
            && services.get_opt("my-cluster").await.ok()?.is_none()
            && services.get_opt("my-cluster-raft").await.ok()?.is_none()
            && maps.get_opt("my-cluster-config").await.ok()?.is_none()
            && s.clusters.get_opt("my-cluster").await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    assert_eq!(kept_claims(&s).await.len(), 3, "volumes must be retained by default");

    // With retentionPolicy: Delete the finalizer removes the volumes too.
    let mut cluster = seed_cluster("my-cluster");
    cluster.spec.storage.as_mut().unwrap().retention_policy = StorageRetention::Delete;
    s.create(&cluster).await;
    s.wait_phase(ClusterPhase::Ready).await;
    let finalizers = s.get().await.metadata.finalizers.unwrap_or_default();
    assert_eq!(finalizers, ["conveyor.etl/cleanup"], "the finalizer is held while volumes are to be deleted");
    // Back to Retain: the finalizer is let go; to Delete again: held again.
    for (policy, held) in [("Retain", false), ("Delete", true)] {
        let patch = serde_json::json!({"spec": {"storage": {"retentionPolicy": policy}}});
        s.clusters.patch("my-cluster", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
        s.wait_for(&format!("finalizer held: {held}"), |c| {
            c.metadata.finalizers.as_deref().unwrap_or_default().iter().any(|f| f == "conveyor.etl/cleanup")
                == held
        })
        .await;
    }
    let names = claim_names().await;
    assert_eq!(names.len(), 3, "{names:?}");
    s.clusters.delete("my-cluster", &Default::default()).await.unwrap();
    eventually(FORM_TIMEOUT, "the volumes deleted", || async {
        for name in &names {
            let claim = claims.get_opt(name).await.ok()?;
            if claim.is_some_and(|claim| claim.metadata.deletion_timestamp.is_none()) {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test]
async fn even_replicas_form_with_a_spec_warning() {
    let s = Scenario::new("even").await;
    let mut cluster = seed_cluster("my-cluster");
    cluster.spec.replicas = 2;
    s.create(&cluster).await;
    let ready = s.wait_for("2 healthy members", ready_with_members(2)).await;
    let (status, reason, message) = condition(&ready, "SpecWarning");
    assert_eq!((status, reason), ("True", "SpecWarning"));
    assert!(message.contains("spec.replicas is 2"), "{message}");
}

#[tokio::test]
async fn a_failing_reconcile_is_visible_as_synced_false_and_a_warning_event() {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    use support::control_plane::RESTRICTED_USER;

    let plane = shared_with_rbac();
    let client = plane.client().await;
    // The operator's own role, but PodDisruptionBudgets may only be read and
    // watched (a watch it may not make would leave its caches unfilled).
    let yaml = std::fs::read_to_string(support::repo_path("deploy/rbac/cluster-role.yaml")).unwrap();
    let mut role: ClusterRole = serde_norway::from_str(&yaml).unwrap();
    role.metadata.name = Some("conveyor-etl-operator-without-pdb".into());
    for rule in role.rules.as_mut().unwrap() {
        if rule.api_groups.as_ref().unwrap().contains(&"policy".to_string()) {
            rule.verbs = vec!["get".into(), "list".into(), "watch".into()];
        }
    }
    let params = PatchParams::apply("test").force();
    Api::<ClusterRole>::all(client.clone())
        .patch("conveyor-etl-operator-without-pdb", &params, &Patch::Apply(&role))
        .await
        .unwrap();
    let binding = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "conveyor-etl-operator-without-pdb"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "conveyor-etl-operator-without-pdb"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": RESTRICTED_USER}],
    });
    Api::<ClusterRoleBinding>::all(client.clone())
        .patch("conveyor-etl-operator-without-pdb", &params, &Patch::Apply(&binding))
        .await
        .unwrap();

    let namespace = test_namespace(&client, "forbidden").await;
    let operator = RunningOperator::start_as(plane, &namespace, RESTRICTED_USER).await;
    let clusters: Api<EtlRouterCluster> = Api::namespaced(client.clone(), &namespace);
    clusters.create(&Default::default(), &seed_cluster("my-cluster")).await.unwrap();
    let failed = synced_false(&clusters).await;
    assert_eq!(failed.reason, "Forbidden");
    assert!(failed.message.contains("poddisruptionbudgets"), "{}", failed.message);
    warning_event(&client, &namespace, "Forbidden").await;
    operator.stop().await;
}

/// An operator whose caches never fill (it may not list pods) does not hold
/// its reconciles forever: each fails after the cache deadline, visibly, as
/// `Synced=False` with reason `CachesNotSynced` and a Warning Event.
#[tokio::test]
async fn a_reconcile_whose_caches_never_fill_fails_visibly_at_its_deadline() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::ClusterRole;

    let plane = shared_with_rbac();
    let client = plane.client().await;
    let namespace = test_namespace(&client, "caches-unfilled").await;
    let yaml = std::fs::read_to_string(support::repo_path("deploy/rbac/cluster-role.yaml")).unwrap();
    let mut role: ClusterRole = serde_norway::from_str(&yaml).unwrap();
    role.metadata.name = Some("conveyor-etl-operator-without-pods".into());
    role.rules.as_mut().unwrap().retain(|rule| rule.resources != Some(vec!["pods".to_string()]));
    let params = PatchParams::apply("test").force();
    Api::<ClusterRole>::all(client.clone())
        .patch("conveyor-etl-operator-without-pods", &params, &Patch::Apply(&role))
        .await
        .unwrap();
    let account =
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "no-pods"}});
    Api::<ServiceAccount>::namespaced(client.clone(), &namespace)
        .patch("no-pods", &params, &Patch::Apply(&account))
        .await
        .unwrap();
    let binding = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": format!("without-pods-{namespace}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "conveyor-etl-operator-without-pods"},
        "subjects": [{"kind": "ServiceAccount", "name": "no-pods", "namespace": namespace}],
    });
    Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone())
        .patch(&format!("without-pods-{namespace}"), &params, &Patch::Apply(&binding))
        .await
        .unwrap();
    let token = support::service_account_token(plane, &namespace, "no-pods").await;
    let operator_client = conveyor_etl_operator::controller::client_without_hidden_retries(
        plane.config_with_token(&token).await,
    )
    .unwrap();
    let timing = conveyor_etl_operator::runtime::Timing {
        cache_sync_timeout: std::time::Duration::from_secs(2),
        ..support::operator::timing()
    };
    let operator = RunningOperator::start_with_timing(operator_client, &namespace, timing);
    let clusters: Api<EtlRouterCluster> = Api::namespaced(client.clone(), &namespace);
    clusters.create(&Default::default(), &seed_cluster("my-cluster")).await.unwrap();
    let failed = synced_false(&clusters).await;
    assert_eq!(failed.reason, "CachesNotSynced");
    assert!(failed.message.contains("may list and watch"), "{}", failed.message);
    warning_event(&client, &namespace, "CachesNotSynced").await;
    operator.stop().await;
}

#[tokio::test]
async fn a_paused_cluster_keeps_its_volumes_when_deleted() {
    let s = Scenario::new("paused-delete").await;
    let mut cluster = seed_cluster("my-cluster");
    cluster.spec.storage.as_mut().unwrap().retention_policy = StorageRetention::Delete;
    cluster.metadata.annotations = Some([("conveyor.etl/paused".to_string(), "true".to_string())].into());
    s.create(&cluster).await;
    // Paused from birth: nothing is deployed, but the finalizer is held for the Delete policy.
    s.wait_for("the finalizer held", |c| {
        c.metadata.finalizers.as_deref().unwrap_or_default().iter().any(|f| f == "conveyor.etl/cleanup")
    })
    .await;
    let resume = serde_json::json!({"metadata": {"annotations": {"conveyor.etl/paused": null}}});
    s.clusters.patch("my-cluster", &PatchParams::default(), &Patch::Merge(resume)).await.unwrap();
    s.wait_phase(ClusterPhase::Ready).await;
    let pause = serde_json::json!({"metadata": {"annotations": {"conveyor.etl/paused": "true"}}});
    s.clusters.patch("my-cluster", &PatchParams::default(), &Patch::Merge(pause)).await.unwrap();
    s.wait_for("paused", |c| condition(c, "ReconciliationPaused").0 == "True").await;

    s.clusters.delete("my-cluster", &Default::default()).await.unwrap();
    eventually(FORM_TIMEOUT, "the cluster gone", || async {
        s.clusters.get_opt("my-cluster").await.ok()?.is_none().then_some(())
    })
    .await;
    // Kept past the garbage collection of the StatefulSet, and by nothing owned.
    let sets: Api<StatefulSet> = Api::namespaced(s.client.clone(), &s.namespace);
    eventually(FORM_TIMEOUT, "the StatefulSet garbage-collected", || async {
        sets.get_opt("my-cluster").await.ok()?.is_none().then_some(())
    })
    .await;
    let kept = kept_claims(&s).await;
    assert_eq!(kept.len(), 3, "a paused cluster's volumes are kept: {kept:?}");
}

/// The data volumes kept for good: not being deleted, and with no owner
/// whose deletion would take them along.
async fn kept_claims(s: &Scenario) -> Vec<String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(s.client.clone(), &s.namespace);
    claims
        .list(&ListParams::default())
        .await
        .unwrap()
        .iter()
        .filter(|claim| {
            claim.metadata.deletion_timestamp.is_none()
                && claim.metadata.owner_references.as_deref().unwrap_or_default().is_empty()
        })
        .map(|claim| claim.name_any())
        .collect()
}

#[tokio::test]
async fn an_eviction_hits_only_the_pods_current_incarnation_and_a_budget_can_refuse_it() {
    use conveyor_etl_operator::runtime::policy::{Evicted, evict};

    let plane = shared_with_rbac();
    let client = plane.client().await;
    let namespace = test_namespace(&client, "evict").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let pod = |name: &str, node: Option<&str>| -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"app": name}},
            // What the namespace's restricted Pod Security Standard asks for.
            "spec": {
                "nodeName": node,
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "c", "image": "none", "securityContext": {
                    "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
            },
        }))
        .unwrap()
    };

    // A pod of an earlier incarnation (another uid under the same name) is not
    // evicted (the server retries the failed precondition for ~10 s first).
    let current = pods.create(&Default::default(), &pod("pending", None)).await.unwrap();
    let mut earlier = current.clone();
    earlier.metadata.uid = Some("00000000-0000-0000-0000-000000000000".into());
    assert_eq!(evict(&client, &earlier).await.unwrap(), Evicted::Gone);
    assert_eq!(
        pods.get("pending").await.unwrap().uid(),
        current.uid(),
        "the eviction hit another incarnation"
    );
    // The current one is (pending, so no budget applies, and deleted at once); after that it is gone.
    assert_eq!(evict(&client, &current).await.unwrap(), Evicted::Yes);
    eventually(FORM_TIMEOUT, "the evicted pod deleted", || async {
        pods.get_opt("pending").await.ok()?.is_none().then_some(())
    })
    .await;
    assert_eq!(evict(&client, &current).await.unwrap(), Evicted::Gone);

    // A running pod whose budget allows no disruption: refused, and still there.
    let budget: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "running"},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "running"}}},
    }))
    .unwrap();
    Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace)
        .create(&Default::default(), &budget)
        .await
        .unwrap();
    pods.create(&Default::default(), &pod("running", Some("no-such-node"))).await.unwrap();
    let status = serde_json::json!({"status": {"phase": "Running"}});
    let running = pods.patch_status("running", &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
    // kube's default client retries a 429 with backoff (for minutes) before
    // it returns it; the operator's client returns the refusal at once.
    let operator_client = support::operator::client_as(plane, support::control_plane::ADMIN_USER).await;
    let asked = std::time::Instant::now();
    match evict(&operator_client, &running).await.unwrap() {
        Evicted::Refused(why) => assert!(!why.is_empty()),
        other => panic!("a budget allowing no disruption let {other:?} through"),
    }
    assert!(asked.elapsed() < std::time::Duration::from_secs(10), "the refusal took {:?}", asked.elapsed());
    let still = pods.get("running").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_none(), "a refused eviction deleted the pod");
}

/// my-cluster's `Synced` condition once it is False.
async fn synced_false(clusters: &Api<EtlRouterCluster>) -> Condition {
    eventually(FORM_TIMEOUT, "Synced=False", || async {
        let cluster = clusters.get("my-cluster").await.ok()?;
        let synced = cluster.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Synced")?.clone();
        (synced.status == "False").then_some(synced)
    })
    .await
}

/// Waits for a Warning Event with `reason` about an EtlRouterCluster: it
/// follows the status write that told the same failure.
async fn warning_event(client: &Client, namespace: &str, reason: &str) {
    let events: Api<KubeEvent> = Api::namespaced(client.clone(), namespace);
    eventually(FORM_TIMEOUT, &format!("a Warning Event {reason}"), || async {
        let listed = events.list(&ListParams::default()).await.ok()?;
        listed
            .items
            .into_iter()
            .any(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("EtlRouterCluster")
            })
            .then_some(())
    })
    .await
}
