//! EtlRouterCluster under real conditions: a router log that never stops
//! moving, rolls watched sample by sample, a bad image and its revert, an
//! edit the StatefulSet cannot take, derived names that collide, and a
//! leader cut off from its peers. The operator runs in-process under its
//! RBAC against the real control plane; the test plays the kubelet.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};

use conveyor_etl_operator::crd::{ClusterPhase, DlqSpec, EtlPipelineSpec, EtlRouterCluster};
use conveyor_etl_operator::router::{Router, mapping};
use conveyor_router_sim::Partition;
use support::control_plane::OPERATOR_USER;
use support::router_sim::OtherWriter;
use support::scenario::{ROLL_TIMEOUT, Scenario, condition, phase_of, seed_cluster};

fn image_of(pod: &Pod) -> String {
    pod.spec.as_ref().and_then(|spec| spec.containers[0].image.clone()).unwrap_or_default()
}

async fn pod_images(s: &Scenario) -> Vec<(String, String)> {
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.namespace);
    let mut images: Vec<(String, String)> = pods
        .list(&ListParams::default().labels("conveyor.etl/cluster=my-cluster"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|pod| (pod.name_any(), image_of(pod)))
        .collect();
    images.sort();
    images
}

async fn set_image(s: &Scenario, image: &str) -> i64 {
    let patch = serde_json::json!({"spec": {"image": image}});
    let patched =
        s.clusters.patch("my-cluster", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    patched.metadata.generation.unwrap()
}

/// Ready=True, as the status says, and the generation that condition describes.
fn ready_for(cluster: &EtlRouterCluster) -> Option<i64> {
    let ready = cluster.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
    (ready.status == "True").then_some(ready.observed_generation.unwrap_or_default())
}

fn healthy_on(image: &'static str, generation: i64) -> impl Fn(&EtlRouterCluster) -> bool {
    move |c| {
        ready_for(c).is_some_and(|g| g >= generation)
            && c.status.as_ref().is_some_and(|s| s.members.len() == 3 && s.members.iter().all(|m| m.healthy))
            && c.spec.image == image
    }
}

fn pipeline(index: usize) -> conveyor_etl_operator::router::PipelineConfig {
    let spec = EtlPipelineSpec {
        source: "kafka-users".into(),
        steps: vec!["filter-active".into()],
        sink: "s3-archive".into(),
        dlq: DlqSpec { enabled: true, max_retries: 3 },
        cluster_ref: None,
        enabled: true,
    };
    mapping::pipeline_config("traffic", &format!("p-{index}"), 1, &spec)
}

#[tokio::test]
async fn a_ready_cluster_stays_quiet_while_the_routers_log_moves_and_pods_change() {
    let s = Scenario::new("quiet-log").await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;
    // The Ready Event follows the status write: the window starts after it.
    s.wait_event("the ClusterHealthy Event", |_, reason, _| reason == "ClusterHealthy").await;
    let sim = s.kubelet.sim.clone();
    let in_namespace = format!("/namespaces/{}/", s.namespace);
    let operator_writes = || s.plane.writes_by(OPERATOR_USER);
    let writes_before = operator_writes().len();
    let polls_before = sim.call_count("GetClusterStatus");
    let log_before = sim.commit_index();

    // Another client writes to the router all along; a pod changes every 5 s.
    let writer = {
        let sim = sim.clone();
        OtherWriter::start(move |client, index| {
            let endpoints = sim.endpoints();
            async move {
                let _ = client.create_pipeline(&endpoints, pipeline(index)).await;
            }
        })
    };
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.namespace);
    let window = Duration::from_secs(30);
    let started = Instant::now();
    let mut touches = 0;
    while started.elapsed() < window {
        let patch = serde_json::json!({"metadata": {"annotations": {"test/touch": touches.to_string()}}});
        pods.patch(&format!("my-cluster-{}", touches % 3), &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap();
        touches += 1;
        tokio::time::sleep(Duration::from_secs(5)).await; // the pace of the pod changes, not a wait
    }
    writer.stop().await;

    let log_moves = sim.commit_index() - log_before;
    assert!(log_moves > 100, "the router's log must move during the window: {log_moves} entries");
    let writes: Vec<String> = operator_writes()[writes_before..]
        .iter()
        .filter(|w| w.request_uri.contains(&in_namespace))
        .map(|w| format!("{} {}", w.verb, w.request_uri))
        .collect();
    assert!(writes.is_empty(), "API writes (status or Events) while the cluster is unchanged: {writes:?}");
    // Reconciles follow real triggers: one health poll per second (the test's
    // interval) and a couple per pod change, three members polled each time.
    let polls = sim.call_count("GetClusterStatus") - polls_before;
    let allowed = 3 * (window.as_secs() + 2 * touches + 10);
    assert!(
        polls <= allowed,
        "{polls} health polls in {window:?} ({touches} pod changes); at most {allowed}"
    );
    let cluster = s.get().await;
    assert_eq!(phase_of(&cluster), Some(ClusterPhase::Ready));
    assert!(cluster.status.as_ref().unwrap().term.is_some());
}

#[tokio::test]
async fn ready_never_describes_a_new_generation_before_every_pod_runs_it() {
    let s = Scenario::new("honest-roll").await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;

    let generation = set_image(&s, "conveyor-etl-router:v2").await;
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let samples = Arc::new(Mutex::new((0usize, 0usize))); // (samples, samples not Ready for the new generation)
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (clusters, client, namespace) = (s.clusters.clone(), s.client.clone(), s.namespace.clone());
        let (violations, samples, done) = (violations.clone(), samples.clone(), done.clone());
        tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(client, &namespace);
            while !done.load(Ordering::Relaxed) {
                let cluster = clusters.get("my-cluster").await.unwrap();
                let ready_new = ready_for(&cluster).is_some_and(|g| g >= generation);
                {
                    let mut counts = samples.lock().unwrap();
                    counts.0 += 1;
                    counts.1 += usize::from(!ready_new);
                }
                if ready_new {
                    let listed = pods.list(&ListParams::default()).await.unwrap();
                    for pod in listed.items.iter().filter(|pod| image_of(pod) != "conveyor-etl-router:v2") {
                        violations.lock().unwrap().push(format!(
                            "Ready=True for generation {generation} while {} runs {}",
                            pod.name_any(),
                            image_of(pod)
                        ));
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await; // sampling interval
            }
        })
    };
    s.wait_within(
        ROLL_TIMEOUT,
        "every pod on v2 and Ready",
        healthy_on("conveyor-etl-router:v2", generation),
    )
    .await;
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();

    let violations = violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:?}");
    let (taken, not_ready) = *samples.lock().unwrap();
    assert!(not_ready >= 3, "the sampler must have watched the roll: {taken} samples, {not_ready} during it");
    assert!(pod_images(&s).await.iter().all(|(_, image)| image == "conveyor-etl-router:v2"));
    let ready = s.get().await;
    assert_eq!(ready.status.as_ref().unwrap().observed_generation, Some(generation));
}

#[tokio::test]
async fn reverting_a_bad_image_recovers_without_anyone_deleting_pods() {
    let s = Scenario::new("bad-image").await;
    s.kubelet.break_image("conveyor-etl-router:broken");
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;

    set_image(&s, "conveyor-etl-router:broken").await;
    let degraded = s
        .wait_for("the broken pod holding the roll", |c| {
            phase_of(c) == Some(ClusterPhase::Degraded) && condition(c, "Ready").1 == "MemberUnhealthy"
        })
        .await;
    assert!(
        condition(&degraded, "Ready").2.contains("my-cluster-2 (node 3)"),
        "{:?}",
        condition(&degraded, "Ready")
    );
    let images = pod_images(&s).await;
    let broken: Vec<&(String, String)> =
        images.iter().filter(|(_, image)| image.ends_with(":broken")).collect();
    assert!(broken.len() <= 1, "the roll must halt at the first broken pod: {images:?}");

    let generation = set_image(&s, "conveyor-etl-router:latest").await;
    s.wait_within(
        ROLL_TIMEOUT,
        "recovered on the old image",
        healthy_on("conveyor-etl-router:latest", generation),
    )
    .await;
    let images = pod_images(&s).await;
    assert_eq!(images.len(), 3);
    assert!(images.iter().all(|(_, image)| image == "conveyor-etl-router:latest"), "{images:?}");
}

#[tokio::test]
async fn an_edit_the_statefulset_cannot_take_is_named_and_health_is_still_reported() {
    let s = Scenario::new("immutable").await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;

    let patch = serde_json::json!({"spec": {"storage": {"size": "20Gi"}}});
    s.clusters.patch("my-cluster", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    let refused = s.wait_for("the storage edit refused", |c| condition(c, "Ready").1 == "InvalidSpec").await;
    let (ready, _, message) = condition(&refused, "Ready");
    assert_eq!(ready, "False");
    assert!(message.contains("spec.storage.size cannot change from 10Gi to 20Gi"), "{message}");
    let sets: Api<StatefulSet> = Api::namespaced(s.client.clone(), &s.namespace);
    let set = sets.get("my-cluster").await.unwrap();
    let claim = &set.spec.unwrap().volume_claim_templates.unwrap()[0];
    assert_eq!(
        claim.spec.as_ref().unwrap().resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
        "10Gi"
    );

    s.kubelet.sim.stop_node(3).await;
    let hurt = s
        .wait_for("the dead member reported", |c| {
            c.status.as_ref().is_some_and(|s| s.members.iter().any(|m| m.node_id == 3 && !m.healthy))
        })
        .await;
    let (ready, reason, message) = condition(&hurt, "Ready");
    assert_ne!(ready, "True");
    assert_eq!(reason, "InvalidSpec", "the edit's condition still names the field");
    assert!(message.contains("spec.storage.size") && message.contains("my-cluster-2 (node 3)"), "{message}");
}

#[tokio::test]
async fn a_cluster_whose_derived_name_is_taken_stops_and_says_by_whom() {
    let s = Scenario::new("collide").await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;
    let services: Api<Service> = Api::namespaced(s.client.clone(), &s.namespace);
    let headless_before = services.get("my-cluster-raft").await.unwrap();

    // `my-cluster` owns the headless Service `my-cluster-raft`: the client
    // Service `my-cluster-raft` wants.
    let writes_before = s.plane.writes_by(OPERATOR_USER).len();
    s.create(&seed_cluster("my-cluster-raft")).await;
    let blocked =
        support::eventually(support::scenario::FORM_TIMEOUT, "Synced=False on my-cluster-raft", || async {
            let cluster = s.clusters.get("my-cluster-raft").await.ok()?;
            let synced = cluster.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Synced")?.clone();
            (synced.status == "False").then_some(synced)
        })
        .await;
    assert_eq!(blocked.reason, "ObjectOwnedElsewhere");
    assert!(
        blocked.message.contains("Service my-cluster-raft")
            && blocked.message.contains("EtlRouterCluster my-cluster)"),
        "{}",
        blocked.message
    );
    let warned = support::eventually(support::scenario::FORM_TIMEOUT, "a Warning Event", || async {
        let events = s.events_of("my-cluster-raft").await;
        events.into_iter().find(|(type_, reason, _)| type_ == "Warning" && reason == "ObjectOwnedElsewhere")
    })
    .await;
    assert!(warned.2.contains("my-cluster-raft"), "{warned:?}");

    // Nothing of the second cluster was applied, and the first one's object was never touched.
    let sets: Api<StatefulSet> = Api::namespaced(s.client.clone(), &s.namespace);
    assert!(sets.get_opt("my-cluster-raft").await.unwrap().is_none());
    let headless_after = services.get("my-cluster-raft").await.unwrap();
    assert_eq!(headless_after.metadata.resource_version, headless_before.metadata.resource_version);
    let service_writes: Vec<String> = s.plane.writes_by(OPERATOR_USER)[writes_before..]
        .iter()
        .filter(|w| w.request_uri.contains("/services/"))
        .map(|w| format!("{} {}", w.verb, w.request_uri))
        .collect();
    assert!(service_writes.is_empty(), "{service_writes:?}");
    assert_eq!(phase_of(&s.get().await), Some(ClusterPhase::Ready), "the first cluster runs on");
}

#[tokio::test]
async fn a_leader_cut_off_from_its_peers_is_not_believed_over_a_newer_term() {
    let s = Scenario::new("stale-leader").await;
    s.create(&seed_cluster("my-cluster")).await;
    let ready = s.wait_phase(ClusterPhase::Ready).await;
    let old_term = ready.status.as_ref().unwrap().term.unwrap();
    let sim = &s.kubelet.sim;
    let old_leader = sim.leader().unwrap();

    // Still answering the operator, still claiming to lead its old term.
    sim.partition_node_with(old_leader, Partition::PeersOnly);
    let moved = s
        .wait_for("the new leader in a newer term", |c| {
            c.status
                .as_ref()
                .is_some_and(|s| s.leader_id.is_some_and(|id| id != old_leader) && s.term > Some(old_term))
        })
        .await;
    assert_eq!(phase_of(&moved), Some(ClusterPhase::Degraded));
    let status = moved.status.as_ref().unwrap();
    let cut_off = status.members.iter().find(|m| m.node_id == old_leader).unwrap();
    assert!(!cut_off.healthy, "{status:?}");
    assert_eq!(
        sim.view_of(old_leader),
        Some((old_term, old_leader)),
        "the cut-off node still believes it leads"
    );

    sim.heal_node(old_leader);
    let healed = s.wait_phase(ClusterPhase::Ready).await;
    assert_ne!(healed.status.unwrap().leader_id, Some(old_leader));
}

#[tokio::test]
async fn two_clusters_created_together_in_one_namespace_each_go_their_own_way() {
    let s = Scenario::new("two-clusters").await;
    // No kubelet plays `other`'s pods: it must wait for them while `my-cluster` forms.
    s.create(&seed_cluster("other")).await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;
    let other =
        support::eventually(support::scenario::FORM_TIMEOUT, "other waiting for its pods", || async {
            let other = s.clusters.get("other").await.ok()?;
            (phase_of(&other) == Some(ClusterPhase::Provisioning)
                && condition(&other, "Ready").1 == "PodsStarting")
                .then_some(other)
        })
        .await;
    assert_eq!(other.status.as_ref().unwrap().ready_replicas, Some(0));
    let sets: Api<StatefulSet> = Api::namespaced(s.client.clone(), &s.namespace);
    for name in ["my-cluster", "other"] {
        let set = sets.get(name).await.unwrap();
        assert_eq!(set.metadata.owner_references.unwrap()[0].name, name, "each owns its own StatefulSet");
    }
}

/// One health answer that misses the operator's deadline is not a hang: the
/// member is asked again at once, so a Ready cluster stays Ready, with no
/// status write and no Event (its dependants are not woken either).
#[tokio::test]
async fn one_late_health_answer_leaves_a_ready_cluster_ready_and_quiet() {
    let s = Scenario::new("late-poll").await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;
    s.wait_event("the ClusterHealthy Event", |_, reason, _| reason == "ClusterHealthy").await;
    let sim = s.kubelet.sim.clone();
    let in_namespace = format!("/namespaces/{}/", s.namespace);
    let writes_before = s.plane.writes_by(OPERATOR_USER).len();
    let events_before = s.events().await;
    let polls_before = sim.call_count("GetClusterStatus");

    // The leader answers its next poll twice the operator's 500 ms deadline late.
    sim.answer_next_health_poll_late(sim.leader().unwrap(), Duration::from_secs(1));
    // Four more rounds of three members' polls (one a second): the late one among the first.
    support::eventually(Duration::from_secs(30), "four more rounds of health polls", || {
        std::future::ready((sim.call_count("GetClusterStatus") >= polls_before + 12).then_some(()))
    })
    .await;

    let writes: Vec<String> = s.plane.writes_by(OPERATOR_USER)[writes_before..]
        .iter()
        .filter(|w| w.request_uri.contains(&in_namespace))
        .map(|w| format!("{} {}", w.verb, w.request_uri))
        .collect();
    assert!(writes.is_empty(), "API writes (status or Events) after one late answer: {writes:?}");
    assert_eq!(s.events().await, events_before, "Events after one late answer");
    let cluster = s.get().await;
    assert_eq!(phase_of(&cluster), Some(ClusterPhase::Ready));
    assert!(cluster.status.as_ref().unwrap().members.iter().all(|m| m.healthy));
}

/// A leader that stops answering the operator is reported quickly: within a
/// health interval and two call deadlines (the miss, and the retry asked at
/// once), the cluster is Degraded naming it, with a Warning Event; Ready
/// again once it answers.
#[tokio::test]
async fn a_frozen_leader_is_reported_within_a_health_interval_and_two_deadlines() {
    let s = Scenario::new("frozen-leader").await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;
    let sim = s.kubelet.sim.clone();
    let leader = sim.leader().unwrap();
    let pod = format!("my-cluster-{}", leader - 1);

    sim.slow_node(leader, Duration::from_secs(3600));
    let frozen = Instant::now();
    let degraded = s
        .wait_for("Degraded with the frozen leader unhealthy", |c| {
            phase_of(c) == Some(ClusterPhase::Degraded)
                && c.status.as_ref().is_some_and(|s| s.members.iter().any(|m| m.pod == pod && !m.healthy))
        })
        .await;
    let took = frozen.elapsed();
    eprintln!("a frozen leader reported after {took:?}");
    // 1 s health interval + 2 × 500 ms deadlines (2 s to 4 s measured), and
    // slack for the status write on a loaded machine.
    assert!(took < Duration::from_secs(6), "reported {took:?} after the leader froze");
    let (ready, reason, message) = condition(&degraded, "Ready");
    assert_eq!((ready, reason), ("False", "MemberUnhealthy"), "{message}");
    assert!(message.contains(&format!("{pod} (node {leader}) not answering the operator")), "{message}");
    s.wait_event("the MemberUnhealthy Warning", |type_, reason, _| {
        type_ == "Warning" && reason == "MemberUnhealthy"
    })
    .await;

    sim.slow_node(leader, Duration::ZERO);
    s.wait_phase(ClusterPhase::Ready).await;
}
