//! EtlSource, EtlTransform and EtlSink end to end: the operator (in-process,
//! under its own RBAC) registers them with a simulated router cluster whose
//! pods the test's kubelet runs.

mod support;

use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::json;

use conveyor_etl_operator::crd::{ClusterPhase, EtlSink, EtlSource, Phase, ServiceStatus};
use conveyor_etl_operator::router::{Router, RouterClient, ServiceType, mapping};
use conveyor_router_sim::{RegistryMode, SimCluster, SimOptions};
use support::control_plane::OPERATOR_USER;
use support::eventually;
use support::objects::{self, SERVICE_KINDS, api_of, create};
use support::router_sim::OtherWriter;
use support::scenario::{FORM_TIMEOUT, Scenario, seed_cluster};

fn examples() -> Vec<DynamicObject> {
    objects::examples(&SERVICE_KINDS)
}

fn service(kind: &str, name: &str, endpoint: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "conveyor.etl/v1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {"grpc": {"endpoint": endpoint}},
    }))
    .unwrap()
}

fn status_of(object: &DynamicObject) -> ServiceStatus {
    objects::status_as(object)
}

fn ready_condition(status: &ServiceStatus) -> Option<(String, String, String)> {
    let c = status.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn wait_status(
    s: &Scenario,
    kind: &str,
    name: &str,
    what: &str,
    check: impl Fn(&ServiceStatus) -> bool,
) -> ServiceStatus {
    objects::wait_status(s, kind, name, what, check).await
}

async fn wait_ready(s: &Scenario, kind: &str, name: &str) -> ServiceStatus {
    wait_status(s, kind, name, "Ready", |st| st.phase == Some(Phase::Ready)).await
}

fn registered_ids(s: &Scenario) -> Vec<String> {
    let mut ids: Vec<String> =
        s.kubelet.sim.services().into_iter().filter_map(|svc| svc.identity.map(|i| i.service_id)).collect();
    ids.sort();
    ids
}

async fn ready_cluster(prefix: &str) -> Scenario {
    let s = Scenario::new(prefix).await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;
    s
}

async fn events_of(s: &Scenario, kind: &str, name: &str) -> Vec<(String, String)> {
    objects::events_about(s, kind, name).await
}

#[tokio::test]
async fn the_example_services_wait_for_the_cluster_then_register_and_reach_ready() {
    let s = Scenario::new("svc-examples").await;
    let examples = examples();
    assert_eq!(examples.len(), 4);
    for object in &examples {
        create(&s, object).await;
    }
    // Reported once the reference grace after the service's creation is over.
    let waiting = wait_status(&s, "EtlSource", "kafka-users", "no cluster", |st: &ServiceStatus| {
        st.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == "NoRouterCluster")
    })
    .await;
    let (status, reason, message) = ready_condition(&waiting).unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "NoRouterCluster"), "{message}");
    assert_eq!(waiting.phase, Some(Phase::Pending));

    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;
    for object in &examples {
        let kind = &object.types.as_ref().unwrap().kind;
        let name = object.metadata.name.as_deref().unwrap();
        let status = wait_ready(&s, kind, name).await;
        assert_eq!(status.cluster.as_deref(), Some("my-cluster"));
        assert!(status.registration_id.is_some(), "{status:?}");
        assert_eq!(status.health.as_deref(), Some("Healthy"));
        let (ready, reason, _) = ready_condition(&status).unwrap();
        assert_eq!((ready.as_str(), reason.as_str()), ("True", "Registered"));
    }
    let ns = &s.namespace;
    let expected: Vec<String> = ["clickhouse-analytics", "enrich-geo", "filter-active", "kafka-users"]
        .iter()
        .map(|name| format!("{ns}/{name}"))
        .collect();
    assert_eq!(registered_ids(&s), expected);
    let sink = s
        .kubelet
        .sim
        .services()
        .into_iter()
        .find(|svc| svc.identity.as_ref().unwrap().name == "clickhouse-analytics")
        .unwrap();
    assert_eq!(sink.identity.as_ref().unwrap().service_type(), ServiceType::Sink);
    let endpoint = sink.endpoint.unwrap();
    assert_eq!((endpoint.host.as_str(), endpoint.port), ("clickhouse-sink-svc", 50051));
    // The Event follows the status write that told of it, so it is polled for.
    eventually(FORM_TIMEOUT, "a Provisioning → Ready Event", || async {
        let events = events_of(&s, "EtlSink", "clickhouse-analytics").await;
        events.iter().any(|(_, note)| note.starts_with("Provisioning → Ready")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_bad_endpoint_is_quoted_and_nothing_is_registered() {
    let s = ready_cluster("svc-bad-endpoint").await;
    create(&s, &service("EtlSink", "broken", "clickhouse:99999")).await;
    create(&s, &service("EtlSink", "fine", "clickhouse:9000")).await;
    wait_ready(&s, "EtlSink", "fine").await;
    let status = wait_status(&s, "EtlSink", "broken", "InvalidEndpoint", |st| {
        ready_condition(st).is_some_and(|c| c.1 == "InvalidEndpoint")
    })
    .await;
    let (ready, _, message) = ready_condition(&status).unwrap();
    assert_eq!(ready, "False");
    assert!(message.contains("\"clickhouse:99999\""), "{message}");
    assert_eq!(status.phase, Some(Phase::Pending));
    assert_eq!(registered_ids(&s), [format!("{}/fine", s.namespace)]);
    assert!(s.kubelet.sim.mutation_log().iter().all(|m| !m.target.ends_with("/broken")));
}

#[tokio::test]
async fn two_clusters_and_no_reference_is_a_condition_naming_both() {
    let s = Scenario::new("svc-ambiguous").await;
    s.create(&seed_cluster("my-cluster")).await;
    s.create(&seed_cluster("other")).await;
    create(&s, &service("EtlSource", "events", "events:50051")).await;
    let status = wait_status(&s, "EtlSource", "events", "AmbiguousRouterCluster", |st| {
        ready_condition(st).is_some_and(|c| c.1 == "AmbiguousRouterCluster")
    })
    .await;
    let message = ready_condition(&status).unwrap().2;
    assert!(message.contains("my-cluster, other"), "{message}");
    assert!(registered_ids(&s).is_empty());

    // Naming one resolves it by itself: the service now waits for that cluster.
    let patch = json!({"spec": {"clusterRef": {"name": "my-cluster"}}});
    api_of(&s, "EtlSource").patch("events", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    let status = wait_status(&s, "EtlSource", "events", "waiting for my-cluster", |st| {
        ready_condition(st).is_some_and(|c| c.1 != "AmbiguousRouterCluster")
    })
    .await;
    let (_, reason, message) = ready_condition(&status).unwrap();
    assert!(["RouterClusterNotReady", "Registered", "Registering"].contains(&reason.as_str()), "{reason}");
    assert!(message.contains("my-cluster"), "{message}");
}

#[tokio::test]
async fn a_registration_the_router_lost_is_registered_again() {
    let s = ready_cluster("svc-lost").await;
    create(&s, &service("EtlTransform", "filter", "filter:50051")).await;
    wait_ready(&s, "EtlTransform", "filter").await;
    let id = mapping::service_id(&s.namespace, "filter");
    let client = RouterClient::new(support::operator::router_options());
    client.deregister(&s.kubelet.sim.endpoints(), &id).await.unwrap();
    assert!(registered_ids(&s).is_empty());
    eventually(FORM_TIMEOUT, "the service registered again", || async {
        (registered_ids(&s) == [id.clone()]).then_some(())
    })
    .await;
    let registers = s.kubelet.sim.mutation_log().iter().filter(|m| m.is("Register", &id)).count();
    assert_eq!(registers, 2, "registered once, then once more after the loss");
    wait_ready(&s, "EtlTransform", "filter").await;
}

#[tokio::test]
async fn an_endpoint_change_re_registers() {
    let s = ready_cluster("svc-edit").await;
    create(&s, &service("EtlSource", "kafka", "kafka:1")).await;
    wait_ready(&s, "EtlSource", "kafka").await;
    let patch = json!({"spec": {"grpc": {"endpoint": "kafka:2"}}});
    api_of(&s, "EtlSource").patch("kafka", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    eventually(FORM_TIMEOUT, "the new endpoint on the router", || async {
        let services = s.kubelet.sim.services();
        services.iter().any(|svc| svc.endpoint.as_ref().is_some_and(|e| e.port == 2)).then_some(())
    })
    .await;
    wait_status(&s, "EtlSource", "kafka", "Ready for generation 2", |st| {
        st.phase == Some(Phase::Ready) && st.observed_generation == Some(2)
    })
    .await;
}

#[tokio::test]
async fn deleting_a_service_deregisters_it() {
    let s = ready_cluster("svc-delete").await;
    create(&s, &service("EtlSink", "archive", "s3-archive:50051")).await;
    wait_ready(&s, "EtlSink", "archive").await;
    let sinks: Api<EtlSink> = Api::namespaced(s.client.clone(), &s.namespace);
    let held = sinks.get("archive").await.unwrap();
    assert!(held.metadata.finalizers.unwrap_or_default().contains(&"conveyor.etl/cleanup".to_owned()));
    sinks.delete("archive", &DeleteParams::default()).await.unwrap();
    eventually(FORM_TIMEOUT, "the sink gone", || async {
        sinks.get_opt("archive").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(registered_ids(&s).is_empty());
    let id = mapping::service_id(&s.namespace, "archive");
    assert!(s.kubelet.sim.mutation_log().iter().any(|m| m.is("Deregister", &id)));
}

/// EtlSink `archive` registered, then, with the operator stopped, its
/// status made to record no registration (as when the operator is killed
/// between Register and its status write) and the sink deleted. The
/// operator is left stopped.
async fn registered_then_deleted_unrecorded(prefix: &str) -> (Scenario, Api<EtlSink>) {
    let mut s = ready_cluster(prefix).await;
    create(&s, &service("EtlSink", "archive", "s3-archive:50051")).await;
    wait_ready(&s, "EtlSink", "archive").await;
    s.operator.take().unwrap().stop().await;
    let sinks: Api<EtlSink> = Api::namespaced(s.client.clone(), &s.namespace);
    let forget = json!({"status": {"registrationId": null, "phase": "Pending", "conditions": []}});
    sinks.patch_status("archive", &PatchParams::default(), &Patch::Merge(&forget)).await.unwrap();
    sinks.delete("archive", &DeleteParams::default()).await.unwrap();
    (s, sinks)
}

#[tokio::test]
async fn a_registration_the_status_never_recorded_is_deregistered_on_deletion() {
    // The operator killed between Register and its status write (found by
    // the chaos suite): the status shows no registration, the router holds one.
    let (mut s, sinks) = registered_then_deleted_unrecorded("svc-unrecorded").await;
    s.operator = Some(support::operator::RunningOperator::start(s.plane, &s.namespace).await);
    eventually(FORM_TIMEOUT, "the sink gone", || async {
        sinks.get_opt("archive").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(registered_ids(&s).is_empty(), "{:?}", registered_ids(&s));
}

#[tokio::test]
async fn an_unrecorded_registration_is_not_let_go_while_its_router_cannot_be_asked() {
    // The chaos suite's kill -9: the status never recorded the Register, and
    // the first Deregister after the restart fails. Letting the service go
    // then leaves its registration on the router for good.
    let (mut s, sinks) = registered_then_deleted_unrecorded("svc-unrecorded-refused").await;
    for node in 1..=3 {
        s.kubelet.sim.partition_node_with(node, conveyor_router_sim::Partition::Refuse);
    }
    s.operator = Some(support::operator::RunningOperator::start(s.plane, &s.namespace).await);
    let held = wait_status(&s, "EtlSink", "archive", "Synced=False while the router refuses", |st| {
        st.conditions.iter().any(|c| c.type_ == "Synced" && c.status == "False")
    })
    .await;
    let synced = held.conditions.iter().find(|c| c.type_ == "Synced").unwrap();
    assert!(synced.message.contains("router"), "{synced:?}");
    assert!(
        sinks.get_opt("archive").await.unwrap().is_some(),
        "released while the router could not be asked"
    );
    assert_eq!(registered_ids(&s), [mapping::service_id(&s.namespace, "archive")]);

    for node in 1..=3 {
        s.kubelet.sim.heal_node(node);
    }
    eventually(FORM_TIMEOUT, "the sink gone once the router answers", || async {
        sinks.get_opt("archive").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(registered_ids(&s).is_empty(), "{:?}", registered_ids(&s));
}

#[tokio::test]
async fn a_service_whose_cluster_is_gone_is_released_with_an_event() {
    let s = ready_cluster("svc-orphan").await;
    create(&s, &service("EtlSource", "kafka", "kafka:50051")).await;
    wait_ready(&s, "EtlSource", "kafka").await;
    s.clusters.delete("my-cluster", &DeleteParams::default()).await.unwrap();
    eventually(FORM_TIMEOUT, "the cluster gone", || async {
        s.clusters.get_opt("my-cluster").await.unwrap().is_none().then_some(())
    })
    .await;
    let sources: Api<EtlSource> = Api::namespaced(s.client.clone(), &s.namespace);
    sources.delete("kafka", &DeleteParams::default()).await.unwrap();
    eventually(FORM_TIMEOUT, "the source released", || async {
        sources.get_opt("kafka").await.unwrap().is_none().then_some(())
    })
    .await;
    eventually(FORM_TIMEOUT, "a RouterClusterGone Event naming the cluster", || async {
        let events = events_of(&s, "EtlSource", "kafka").await;
        let gone = events.iter().find(|(reason, _)| reason == "RouterClusterGone");
        gone.is_some_and(|(_, note)| note.contains("my-cluster is gone")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn ready_services_cost_no_api_writes_and_one_list_per_interval_while_the_router_log_moves() {
    let s = ready_cluster("svc-quiet").await;
    for object in examples() {
        create(&s, &object).await;
    }
    for object in examples() {
        wait_ready(&s, &object.types.unwrap().kind, object.metadata.name.as_deref().unwrap()).await;
    }
    let sim = s.kubelet.sim.clone();
    let in_namespace = format!("/namespaces/{}/", s.namespace);
    let service_writes = || {
        s.plane
            .writes_by(OPERATOR_USER)
            .into_iter()
            .filter(|w| w.request_uri.contains(&in_namespace))
            .filter(|w| ["etlsources", "etltransforms", "etlsinks"].iter().any(|k| w.request_uri.contains(k)))
            .map(|w| format!("{} {}", w.verb, w.request_uri))
            .collect::<Vec<_>>()
    };
    let writes_before = service_writes().len();
    let lists_before = sim.call_count("ListServices");
    let log_before = sim.mutation_log().len();

    // Another client registers and deregisters its own service all along.
    let writer = {
        let sim = sim.clone();
        let grpc = conveyor_etl_operator::crd::GrpcSpec { endpoint: "other:1".into() };
        let request =
            mapping::register_request(mapping::ServiceKind::Source, "elsewhere", "x", &grpc).unwrap();
        OtherWriter::start(move |client, _| {
            let (endpoints, request) = (sim.endpoints(), request.clone());
            async move {
                let _ = client.register(&endpoints, request).await;
                let _ = client.deregister(&endpoints, "elsewhere/x").await;
            }
        })
    };
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await; // the observation window, not a wait for a state
    writer.stop().await;

    assert!(sim.mutation_log().len() - log_before > 50, "the router's log must move during the window");
    let writes = service_writes()[writes_before..].to_vec();
    assert!(writes.is_empty(), "API writes while the services are unchanged: {writes:?}");
    let ours = format!("{}/", s.namespace);
    let router_writes: Vec<_> =
        sim.mutation_log()[log_before..].iter().filter(|m| m.target.starts_with(&ours)).cloned().collect();
    assert!(router_writes.is_empty(), "router writes for unchanged services: {router_writes:?}");
    // One list per health interval (1 s in tests), shared by the four services.
    let lists = sim.call_count("ListServices") - lists_before;
    let allowed = 2 * window.as_secs() + 4;
    assert!(lists <= allowed, "{lists} ListServices in {window:?} for four services; at most {allowed}");
    for object in examples() {
        let kind = object.types.unwrap().kind;
        let status =
            status_of(&api_of(&s, &kind).get(object.metadata.name.as_deref().unwrap()).await.unwrap());
        assert_eq!(status.phase, Some(Phase::Ready), "{kind}");
    }
}

/// `object` with `spec.clusterRef` naming `cluster`.
fn on_cluster(mut object: DynamicObject, cluster: &str) -> DynamicObject {
    object.data["spec"]["clusterRef"] = json!({"name": cluster});
    object
}

fn registered_ids_on(sim: &conveyor_router_sim::SimCluster) -> Vec<String> {
    let mut ids: Vec<String> =
        sim.services().into_iter().filter_map(|svc| svc.identity.map(|i| i.service_id)).collect();
    ids.sort();
    ids
}

/// The simulator's lease in the leased-registry tests (the public router's is 30 s).
const LEASE: Duration = Duration::from_secs(2);

fn leased_sim() -> SimOptions {
    leased_sim_with(LEASE)
}

fn leased_sim_with(ttl: Duration) -> SimOptions {
    SimOptions { registry: RegistryMode::Leased { ttl }, ..SimOptions::default() }
}

/// The service ids member `node` holds live registrations of, sorted.
fn ids_on(sim: &SimCluster, node: u64) -> Vec<String> {
    let mut ids: Vec<String> =
        sim.services_on(node).into_iter().filter_map(|svc| svc.identity.map(|i| i.service_id)).collect();
    ids.sort();
    ids
}

/// The example services Ready on my-cluster, each naming it, beside a second
/// cluster `other`; `other`'s kubelet and simulator.
async fn services_beside_another_cluster(prefix: &str) -> (Scenario, support::kubelet::FakeKubelet) {
    let s = ready_cluster(prefix).await;
    let other = s.ready_cluster_beside("other").await;
    for object in examples() {
        create(&s, &on_cluster(object, "my-cluster")).await;
    }
    for object in examples() {
        let status = wait_ready(&s, &objects::kind_of(&object), &objects::name_of(&object)).await;
        assert_eq!(status.cluster.as_deref(), Some("my-cluster"));
    }
    (s, other)
}

async fn move_to(s: &Scenario, kind: &str, name: &str, cluster: &str) {
    let patch = json!({"spec": {"clusterRef": {"name": cluster}}});
    api_of(s, kind).patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
}

#[tokio::test]
async fn services_moved_to_another_cluster_end_registered_there_only() {
    let (s, other) = services_beside_another_cluster("svc-move").await;
    let all = registered_ids(&s);
    assert_eq!(all.len(), 4);
    for object in examples() {
        move_to(&s, &objects::kind_of(&object), &objects::name_of(&object), "other").await;
    }
    for object in examples() {
        let (kind, name) = (objects::kind_of(&object), objects::name_of(&object));
        let status = wait_status(&s, &kind, &name, "Ready on other", |st| {
            st.phase == Some(Phase::Ready) && st.cluster.as_deref() == Some("other")
        })
        .await;
        assert!(status.registration_id.is_some(), "{status:?}");
    }
    assert_eq!(registered_ids_on(&other.sim), all, "not all registered with other");
    assert_eq!(registered_ids(&s), Vec::<String>::new(), "still registered with my-cluster");
    for object in examples() {
        let (kind, name) = (objects::kind_of(&object), objects::name_of(&object));
        let events = eventually(FORM_TIMEOUT, "a Deregistered Event naming both clusters", || async {
            let events = events_of(&s, &kind, &name).await;
            events
                .iter()
                .any(|(reason, note)| {
                    reason == "Deregistered"
                        && note.contains("my-cluster")
                        && note.contains("moving to other")
                })
                .then_some(events)
        })
        .await;
        assert!(events.iter().any(|(_, note)| note.contains("Provisioning → Ready")), "{events:#?}");
    }
}

#[tokio::test]
async fn a_service_moving_away_from_an_unreachable_cluster_waits_then_moves_once_that_cluster_is_deleted() {
    let (s, other) = services_beside_another_cluster("svc-move-gone").await;
    for node in 1..=3 {
        s.kubelet.sim.partition_node_with(node, conveyor_router_sim::Partition::Refuse);
    }
    move_to(&s, "EtlSink", "clickhouse-analytics", "other").await;
    let waiting = wait_status(&s, "EtlSink", "clickhouse-analytics", "the move waiting", |st| {
        ready_condition(st).is_some_and(|(_, reason, _)| reason == "MovingCluster")
            && st.conditions.iter().any(|c| c.type_ == "Synced" && c.status == "False")
    })
    .await;
    let (ready, _, message) = ready_condition(&waiting).unwrap();
    assert_eq!(ready, "False");
    assert!(message.contains("from EtlRouterCluster my-cluster to other"), "{message}");
    assert_eq!(waiting.cluster.as_deref(), Some("my-cluster"));
    assert!(registered_ids_on(&other.sim).is_empty(), "registered with other before leaving my-cluster");

    // The cluster it cannot leave is deleted: nothing is left to deregister from.
    s.clusters.delete("my-cluster", &DeleteParams::default()).await.unwrap();
    wait_status(&s, "EtlSink", "clickhouse-analytics", "Ready on other", |st| {
        st.phase == Some(Phase::Ready) && st.cluster.as_deref() == Some("other")
    })
    .await;
    let sink_id = mapping::service_id(&s.namespace, "clickhouse-analytics");
    assert_eq!(registered_ids_on(&other.sim), [sink_id]);
    eventually(FORM_TIMEOUT, "a RouterClusterGone Event", || async {
        let events = events_of(&s, "EtlSink", "clickhouse-analytics").await;
        events
            .iter()
            .any(|(reason, note)| reason == "RouterClusterGone" && note.contains("my-cluster"))
            .then_some(())
    })
    .await;
}
/// Samples every 100 ms for `window` that every member holds exactly `ids`.
async fn held_throughout(sim: &SimCluster, members: &[u64], ids: &[String], window: Duration) {
    let until = Instant::now() + window;
    let mut samples = 0;
    while Instant::now() < until {
        for &node in members {
            assert_eq!(ids_on(sim, node), ids, "member {node} after {samples} samples");
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(100)).await; // the sampling pace, not a wait
    }
    assert!(samples > 10, "only {samples} samples in {window:?}");
}

/// The public router keeps registrations per node, in memory, each with a
/// 30 s lease renewed by `Heartbeat`: a registration must live on every
/// member for as long as its service exists. Ten minutes of the real lease
/// are twenty lease periods; this test gives the simulator a 2 s lease
/// (its leased-registry flag) and runs 25 of them (the equivalent of 12.5
/// minutes at 30 s) with a member restart in the middle, sampling every
/// member every 100 ms, then deletes the services.
#[tokio::test]
async fn leased_registrations_live_on_every_member_through_many_leases_and_a_restart_then_go() {
    let s = Scenario::with_sim("svc-leased", leased_sim()).await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;
    create(&s, &service("EtlSource", "kafka", "kafka:50051")).await;
    create(&s, &service("EtlSink", "archive", "s3-archive:50051")).await;
    for (kind, name) in [("EtlSource", "kafka"), ("EtlSink", "archive")] {
        let status = wait_ready(&s, kind, name).await;
        let message = ready_condition(&status).unwrap().2;
        assert!(message.contains("all 3 members"), "{message}");
    }
    let sim = s.kubelet.sim.clone();
    let members = [1, 2, 3];
    let ids = vec![mapping::service_id(&s.namespace, "archive"), mapping::service_id(&s.namespace, "kafka")];
    eventually(FORM_TIMEOUT, "both registered on every member", || async {
        members.iter().all(|&node| ids_on(&sim, node) == ids).then_some(())
    })
    .await;
    let in_namespace = format!("/namespaces/{}/", s.namespace);
    let service_writes = || {
        s.plane
            .writes_by(OPERATOR_USER)
            .into_iter()
            .filter(|w| w.request_uri.contains(&in_namespace))
            .filter(|w| ["etlsources", "etlsinks"].iter().any(|k| w.request_uri.contains(k)))
            .map(|w| format!("{} {}", w.verb, w.request_uri))
            .collect::<Vec<_>>()
    };
    let writes_before = service_writes().len();
    let (streams_before, heartbeats_before) = (sim.call_count("Heartbeat"), sim.heartbeats());

    held_throughout(&sim, &members, &ids, 12 * LEASE).await;
    // A member restarts: its registry was in memory only.
    sim.stop_node(2).await;
    sim.restart_node(2).await.unwrap();
    assert!(ids_on(&sim, 2).is_empty());
    eventually(2 * LEASE, "registered again on the restarted member", || async {
        (ids_on(&sim, 2) == ids).then_some(())
    })
    .await;
    held_throughout(&sim, &members, &ids, 12 * LEASE).await;

    // One stream per member (reopened once, to the restarted one), not one per service.
    let streams = sim.call_count("Heartbeat") - streams_before;
    assert!(streams <= 3, "{streams} Heartbeat streams opened for 2 services on 3 members");
    // Each registration renewed on each member at least once per lease.
    let heartbeats = sim.heartbeats() - heartbeats_before;
    assert!(heartbeats >= 2 * 3 * 24, "{heartbeats} heartbeats in 25 leases");
    eprintln!("25 leases of {LEASE:?}: {streams} Heartbeat streams opened, {heartbeats} heartbeats");
    // Registered once per member, and once more on the restarted one.
    let log = sim.mutation_log();
    for id in &ids {
        let registers: Vec<u64> = log.iter().filter(|m| m.is("Register", id)).map(|m| m.node).collect();
        let per_node = |node| registers.iter().filter(|&&n| n == node).count();
        assert_eq!((per_node(1), per_node(2), per_node(3)), (1, 2, 1), "{id}: {registers:?}");
    }
    let writes = service_writes()[writes_before..].to_vec();
    assert!(writes.is_empty(), "API writes while the services did not change: {writes:?}");

    api_of(&s, "EtlSource").delete("kafka", &DeleteParams::default()).await.unwrap();
    api_of(&s, "EtlSink").delete("archive", &DeleteParams::default()).await.unwrap();
    for kind in ["EtlSource", "EtlSink"] {
        eventually(FORM_TIMEOUT, "the services gone", || async {
            api_of(&s, kind).list(&Default::default()).await.unwrap().items.is_empty().then_some(())
        })
        .await;
    }
    for node in members {
        assert!(ids_on(&sim, node).is_empty(), "member {node} still holds {:?}", ids_on(&sim, node));
        for id in &ids {
            let deregistered = sim.mutation_log().iter().any(|m| m.is("Deregister", id) && m.node == node);
            assert!(deregistered, "{id} not deregistered from member {node}");
        }
    }
}

/// A member the operator cannot renew leases on turns the service's
/// condition False with the member named; healing it turns it back.
#[tokio::test]
async fn a_member_whose_lease_lapses_is_named_in_the_condition() {
    let s = Scenario::with_sim("svc-lapse", leased_sim()).await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;
    create(&s, &service("EtlSource", "kafka", "kafka:50051")).await;
    wait_ready(&s, "EtlSource", "kafka").await;
    let sim = s.kubelet.sim.clone();
    let cut = sim.addr(3).unwrap().to_string();
    sim.partition_node_with(3, conveyor_router_sim::Partition::Refuse);
    let status = wait_status(&s, "EtlSource", "kafka", "RegistrationLapsed", |st| {
        ready_condition(st).is_some_and(|c| c.1 == "RegistrationLapsed")
    })
    .await;
    let (ready, _, message) = ready_condition(&status).unwrap();
    assert_eq!(ready, "False");
    assert!(message.contains(&cut), "{message}");
    assert_eq!(status.phase, Some(Phase::Degraded));
    sim.heal_node(3);
    wait_ready(&s, "EtlSource", "kafka").await;
    eventually(FORM_TIMEOUT, "a Warning Event naming the lapse", || async {
        let events = events_of(&s, "EtlSource", "kafka").await;
        events.iter().any(|(reason, _)| reason == "RegistrationLapsed").then_some(())
    })
    .await;
}

/// An operator restart (or a new leader) finds the leases from the status:
/// the members still hold the registrations, so nothing is registered again
/// and no status moves; the new operator's heartbeats renew them. The lease
/// (10 s here) must outlast the restart, as the public router's 30 s does.
#[tokio::test]
async fn an_operator_restart_renews_leased_registrations_without_registering_or_status_writes() {
    const LONGER: Duration = Duration::from_secs(10);
    let mut s = Scenario::with_sim("svc-leased-restart", leased_sim_with(LONGER)).await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;
    create(&s, &service("EtlSource", "kafka", "kafka:50051")).await;
    wait_ready(&s, "EtlSource", "kafka").await;
    let sim = s.kubelet.sim.clone();
    let id = mapping::service_id(&s.namespace, "kafka");
    eventually(FORM_TIMEOUT, "registered on every member", || async {
        [1, 2, 3].iter().all(|&node| ids_on(&sim, node) == [id.clone()]).then_some(())
    })
    .await;
    let registers = || sim.mutation_log().iter().filter(|m| m.is("Register", &id)).count();
    let registers_before = registers();
    let in_namespace = format!("/namespaces/{}/etlsources", s.namespace);
    let writes = || {
        s.plane.writes_by(OPERATOR_USER).into_iter().filter(|w| w.request_uri.contains(&in_namespace)).count()
    };
    let writes_before = writes();

    s.operator.take().unwrap().stop().await;
    s.operator = Some(support::operator::RunningOperator::start(s.plane, &s.namespace).await);
    let heartbeats = sim.heartbeats();
    eventually(FORM_TIMEOUT, "the new operator renewing on every member", || async {
        (sim.heartbeats() >= heartbeats + 3).then_some(())
    })
    .await;
    held_throughout(&sim, &[1, 2, 3], std::slice::from_ref(&id), 2 * LONGER).await;
    assert_eq!(registers(), registers_before, "registered again after the operator restarted");
    assert_eq!(writes(), writes_before, "status written though nothing changed");
}
