//! The pure parts of a service reconcile: which event, and what the message says.

use std::sync::Arc;

use crate::crd::{ClusterPhase, EtlRouterCluster, EtlRouterClusterStatus, GrpcSpec};
use crate::router::mapping::register_request;
use crate::router::proto::common::HealthStatus;
use crate::router::proto::registry::ServiceHealth;
use crate::router::{RegisteredService, RouterError, ServiceKind};
use crate::runtime::clusters::Resolution;
use crate::service::assess::{against_registry, blocker, differences};
use crate::service::machine::Event;

fn cluster(phase: Option<ClusterPhase>) -> Arc<EtlRouterCluster> {
    let yaml =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/seed.yaml")).unwrap();
    let mut cluster: EtlRouterCluster =
        serde_norway::from_str(yaml.split("\n---\n").next().unwrap()).unwrap();
    cluster.status = phase.map(|phase| EtlRouterClusterStatus { phase: Some(phase), ..Default::default() });
    Arc::new(cluster)
}

fn request(endpoint: &str) -> crate::router::RegisterRequest {
    register_request(ServiceKind::Source, "ns", "kafka", &GrpcSpec { endpoint: endpoint.into() }).unwrap()
}

/// What the router would hold after registering `request`.
fn registered(request: &crate::router::RegisterRequest, health: HealthStatus) -> RegisteredService {
    RegisteredService {
        identity: request.identity.clone(),
        endpoint: request.endpoint.clone(),
        metadata: request.metadata.clone(),
        health: Some(ServiceHealth { status: health.into(), message: "lag".into(), ..Default::default() }),
        assigned_partitions: vec![1, 2],
        ..Default::default()
    }
}

const MEMBERS: &[String] = &[];

#[test]
fn a_bad_endpoint_comes_first_and_is_quoted() {
    let bad = register_request(ServiceKind::Sink, "ns", "x", &GrpcSpec { endpoint: "sink:99999".into() });
    let found = blocker(&bad, &Resolution::NoneInNamespace, MEMBERS, "ns", false).unwrap();
    assert_eq!(found.event, Event::EndpointInvalid);
    assert!(found.message.contains("\"sink:99999\""), "{}", found.message);
}

#[test]
fn no_cluster_several_clusters_and_a_cluster_not_ready_say_so() {
    let ok = Ok(request("kafka:1"));
    let none = blocker(&ok, &Resolution::NoneInNamespace, MEMBERS, "ns", false).unwrap();
    assert_eq!(none.event, Event::NoCluster);
    // A service younger than the reference grace waits for a cluster that may be on its way.
    let young = blocker(&ok, &Resolution::NoneInNamespace, MEMBERS, "ns", true).unwrap();
    assert_eq!(young.event, Event::ClusterNotReady);
    assert!(young.message.contains("on its way") && young.message.contains("10 s"), "{}", young.message);
    let named = blocker(&ok, &Resolution::Missing("c".into()), MEMBERS, "ns", true).unwrap();
    assert_eq!(named.event, Event::ClusterNotReady);
    let several = Resolution::Ambiguous(vec!["a".into(), "b".into()]);
    assert_eq!(blocker(&ok, &several, MEMBERS, "ns", true).unwrap().event, Event::AmbiguousCluster);
    let several = Resolution::Ambiguous(vec!["a".into(), "b".into()]);
    let ambiguous = blocker(&ok, &several, MEMBERS, "ns", false).unwrap();
    assert_eq!(ambiguous.event, Event::AmbiguousCluster);
    assert!(ambiguous.message.contains("a, b"), "{}", ambiguous.message);
    let forming = Resolution::Found(cluster(Some(ClusterPhase::RaftForming)));
    let members = ["127.0.0.1:50051".to_owned()];
    let waiting = blocker(&ok, &forming, &members, "ns", false).unwrap();
    assert_eq!(waiting.event, Event::ClusterNotReady);
    assert!(waiting.message.contains("my-cluster is not Ready"), "{}", waiting.message);
    // The same words at every step of the forming: the status is not rewritten for each.
    let provisioning = Resolution::Found(cluster(Some(ClusterPhase::Provisioning)));
    assert_eq!(blocker(&ok, &provisioning, &members, "ns", false).unwrap().message, waiting.message);
    let ready = Resolution::Found(cluster(Some(ClusterPhase::Ready)));
    assert_eq!(
        blocker(&ok, &ready, MEMBERS, "ns", false).unwrap().event,
        Event::ClusterNotReady,
        "no members"
    );
    assert!(blocker(&ok, &ready, &members, "ns", false).is_none());
    // Degraded with a leader (a member down, quorum held) serves; without one it does not.
    let mut degraded = (*cluster(Some(ClusterPhase::Degraded))).clone();
    assert_eq!(
        blocker(&ok, &Resolution::Found(Arc::new(degraded.clone())), &members, "ns", false).unwrap().event,
        Event::ClusterNotReady
    );
    degraded.status.as_mut().unwrap().leader = Some("my-cluster-0".into());
    assert!(blocker(&ok, &Resolution::Found(Arc::new(degraded)), &members, "ns", false).is_none());
    let unavailable = Resolution::Found(cluster(Some(ClusterPhase::Unavailable)));
    assert_eq!(blocker(&ok, &unavailable, &members, "ns", false).unwrap().event, Event::ClusterNotReady);
}

#[test]
fn the_registry_decides_between_registering_unhealthy_and_registered() {
    let desired = request("kafka:1");
    let healthy = registered(&desired, HealthStatus::Healthy);
    let read = |services: Vec<RegisteredService>| Ok(Arc::new(services));

    let found = against_registry(&read(vec![healthy.clone()]), &desired, Some("reg-1"), "c");
    assert_eq!((found.event, found.view.as_ref()), (Event::Registered, Some(&healthy)));
    let missing = against_registry(&read(vec![]), &desired, Some("reg-1"), "c");
    assert_eq!(missing.event, Event::NotRegistered);
    assert!(missing.message.contains("no longer holds"), "{}", missing.message);
    let no_id = against_registry(&read(vec![healthy.clone()]), &desired, None, "c");
    assert_eq!(no_id.event, Event::NotRegistered, "an id is only learnt by registering");

    let moved = request("kafka:2");
    let changed = against_registry(&read(vec![healthy.clone()]), &moved, Some("reg-1"), "c");
    assert_eq!(changed.event, Event::NotRegistered);
    assert!(changed.message.contains("endpoint kafka:1 → kafka:2"), "{}", changed.message);

    let sick = against_registry(
        &read(vec![registered(&desired, HealthStatus::Unhealthy)]),
        &desired,
        Some("r"),
        "c",
    );
    assert_eq!(sick.event, Event::ServiceUnhealthy);
    assert!(sick.message.contains("Unhealthy: lag"), "{}", sick.message);

    let down = Err(Arc::new(RouterError::NoMembers));
    assert_eq!(against_registry(&down, &desired, Some("r"), "c").event, Event::RouterUnreachable);
}

#[test]
fn differences_name_endpoint_labels_and_identity() {
    let desired = request("kafka:1");
    let held = registered(&desired, HealthStatus::Healthy);
    assert!(differences(&held, &desired).is_empty());
    let mut relabelled = held.clone();
    relabelled.metadata.as_mut().unwrap().labels.insert("extra".into(), "x".into());
    assert_eq!(differences(&relabelled, &desired), ["labels"]);
    let sink =
        register_request(ServiceKind::Sink, "ns", "kafka", &GrpcSpec { endpoint: "[::1]:5".into() }).unwrap();
    let both = differences(&held, &sink);
    assert_eq!(both.len(), 3, "{both:?}");
    assert!(both.contains(&"endpoint kafka:1 → [::1]:5".to_owned()), "{both:?}");
}

#[test]
fn a_move_names_both_clusters() {
    let moving = crate::service::assess::moving("old", "new");
    assert_eq!(moving.event, Event::Moving);
    assert!(moving.message.contains("from EtlRouterCluster old to new"), "{}", moving.message);
}

#[test]
fn registry_failures_differing_only_in_attempt_counts_give_identical_conditions() {
    use crate::crd::Phase;
    use crate::service::conditions::ready;
    let desired = request("kafka:9092");
    let condition_after = |attempts| {
        let last = RouterError::Unavailable { member: "10.0.0.1:50051".into(), message: "refused".into() };
        let down = Err(Arc::new(RouterError::Exhausted { attempts, last: Box::new(last) }));
        let assessment = against_registry(&down, &desired, Some("r"), "c");
        ready(Phase::Degraded, assessment.event, &assessment.message)
    };
    assert_eq!(condition_after(2), condition_after(4));
    assert!(condition_after(2).message.contains("10.0.0.1:50051 is unreachable"), "{:?}", condition_after(2));
}

#[test]
fn leases_decide_between_registering_lapsed_and_registered() {
    use crate::service::assess::against_leases;
    use crate::service::leases::LeaseView;
    let view = |kept, lapsed: &[&str], first_lease| LeaseView {
        kept,
        lapsed: lapsed.iter().map(|m| m.to_string()).collect(),
        members: 3,
        first_lease,
        registration_id: None,
    };
    assert_eq!(against_leases(&view(false, &[], false), "c").event, Event::NotRegistered);
    let alive = against_leases(&view(true, &[], false), "c");
    assert_eq!(alive.event, Event::Registered);
    assert!(alive.message.contains("renewed on all 3 members"), "{}", alive.message);
    let registering = against_leases(&view(true, &["10.0.0.3:50051"], true), "c");
    assert_eq!(registering.event, Event::NotRegistered, "within the first lease it is still registering");
    assert!(registering.message.contains("2 of 3"), "{}", registering.message);
    let lapsed = against_leases(&view(true, &["10.0.0.3:50051"], false), "c");
    assert_eq!(lapsed.event, Event::LeaseLapsed);
    assert!(
        lapsed.message.contains("1 of 3 members") && lapsed.message.contains("10.0.0.3:50051"),
        "{}",
        lapsed.message
    );
    let nobody = LeaseView { members: 0, ..view(true, &[], false) };
    assert_eq!(against_leases(&nobody, "c").event, Event::NotRegistered, "no member to hold it yet");
}
