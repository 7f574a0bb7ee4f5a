//! The router client against the in-process simulator, over real gRPC on loopback.
//!
//! Each test runs its own cluster on its own loopback range (127.<test>.0.<node>,
//! port 0), so tests run in parallel without port clashes. Nothing waits with a
//! bare sleep: conditions are polled with a deadline by [`until`].

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conveyor_etl_operator::crd::{DlqSpec, EtlPipelineSpec, GrpcSpec};
use conveyor_etl_operator::router::mapping::{
    self, METADATA_DLQ_ENABLED, METADATA_DLQ_MAX_RETRIES, METADATA_GENERATION, ServiceKind,
};
use conveyor_etl_operator::router::{
    ClientOptions, ClusterHealth, ErrorClass, NodeRole, PipelineConfig, Router, RouterClient, RouterError,
    ServiceType, StageStatus,
};
use conveyor_router_sim::{SimCluster, SimOptions};
use support::router_sim::{fast_options, node_addr, until};

/// Node ids 1..=count on 127.<range>.0.<id>, any free port.
fn nodes(range: u8, count: u8) -> Vec<(u64, SocketAddr)> {
    (1..=count).map(|id| (u64::from(id), node_addr(range, id))).collect()
}

async fn cluster(range: u8, count: u8) -> (SimCluster, Vec<String>) {
    let sim = SimCluster::start(nodes(range, count), SimOptions::default()).await.unwrap();
    let members = sim.endpoints();
    (sim, members)
}

fn spec(steps: &[&str]) -> EtlPipelineSpec {
    EtlPipelineSpec {
        source: "kafka-users".into(),
        steps: steps.iter().map(|step| step.to_string()).collect(),
        sink: "clickhouse".into(),
        dlq: DlqSpec { enabled: true, max_retries: 5 },
        cluster_ref: None,
        enabled: true,
    }
}

fn config(name: &str, generation: i64) -> PipelineConfig {
    mapping::pipeline_config("team-a", name, generation, &spec(&["filter", "enrich"]))
}

fn count(sim: &SimCluster, method: &str, target: &str) -> usize {
    sim.mutation_log().iter().filter(|mutation| mutation.is(method, target)).count()
}

#[tokio::test]
async fn health_poll_of_a_three_node_cluster() {
    let (sim, members) = cluster(41, 3).await;
    let client = RouterClient::new(fast_options());

    for (index, member) in members.iter().enumerate() {
        let status = client.member_status(member).await.unwrap();
        assert_eq!(status.node_id, index as u64 + 1);
        assert_eq!((status.leader_id, status.term), (1, 1));
        assert_eq!(status.health(), ClusterHealth::Healthy);
        assert_eq!(status.nodes.len(), 3);
        assert!(status.nodes.iter().all(|node| node.healthy));
        let addresses: Vec<_> = status.nodes.iter().map(|node| node.address.clone()).collect();
        assert_eq!(addresses, members);
        assert_eq!(status.nodes[0].role(), NodeRole::Leader);
        assert_eq!(status.nodes[2].role(), NodeRole::Follower);
    }

    sim.stop_node(3).await;
    let status = client.member_status(&members[0]).await.unwrap();
    assert_eq!(status.health(), ClusterHealth::Degraded);
    assert_eq!(status.leader_id, 1);
    assert!(!status.nodes[2].healthy);
    let error = client.member_status(&members[2]).await.unwrap_err();
    assert!(
        matches!(error, RouterError::Unavailable { ref member, .. } if member == &members[2]),
        "{error:?}"
    );
    assert_eq!(error.reason(), "RouterUnreachable");

    // The channel to the stopped member is rebuilt once it is back.
    sim.restart_node(3).await.unwrap();
    let status = client.member_status(&members[2]).await.unwrap();
    assert_eq!((status.node_id, status.health()), (3, ClusterHealth::Healthy));
    sim.shutdown().await;
}

#[tokio::test]
async fn pipeline_create_update_get_enable_disable_delete() {
    let (sim, members) = cluster(42, 3).await;
    let client = RouterClient::new(fast_options());
    let first = config("users", 1);
    let id = mapping::pipeline_id("team-a", "users");

    assert_eq!(client.get_pipeline(&members, &id).await.unwrap(), None);
    assert_eq!(client.create_pipeline(&members, first.clone()).await.unwrap(), id);

    let stored = client.get_pipeline(&members, &id).await.unwrap().unwrap();
    assert_eq!(stored.config.as_ref(), Some(&first));
    let status = stored.status.unwrap();
    assert_eq!((status.version, status.enabled), (1, true));
    let mut stages: Vec<_> = status.stage_statuses.keys().cloned().collect();
    stages.sort();
    assert_eq!(stages, ["sink", "source", "step-0", "step-1"]);
    let metadata = &stored.config.unwrap().metadata;
    assert_eq!(metadata[METADATA_DLQ_ENABLED], "true");
    assert_eq!(metadata[METADATA_DLQ_MAX_RETRIES], "5");
    assert_eq!(metadata[METADATA_GENERATION], "1");

    // Creating the very same submission again is a success, not a second create.
    assert_eq!(client.create_pipeline(&members, first.clone()).await.unwrap(), id);
    assert_eq!(count(&sim, "CreatePipeline", &id), 1);

    let second = mapping::pipeline_config("team-a", "users", 2, &spec(&["filter"]));
    assert_eq!(client.update_pipeline(&members, second.clone()).await.unwrap(), 2);
    let (config, status) = sim.pipeline(&id).unwrap();
    assert_eq!(config, second);
    assert_eq!(status.version, 2);

    let buffered = StageStatus { records_processed: 10, records_buffered: 3, errors: 1, avg_latency_ms: 2.5 };
    assert!(sim.set_stage_status(&id, "sink", buffered));
    let stored = client.get_pipeline(&members, &id).await.unwrap().unwrap();
    assert_eq!(stored.status.unwrap().stage_statuses["sink"], buffered);

    client.set_pipeline_enabled(&members, &id, false).await.unwrap();
    let stored = client.get_pipeline(&members, &id).await.unwrap().unwrap();
    assert!(!stored.status.unwrap().enabled);
    assert!(!sim.pipeline(&id).unwrap().0.enabled);
    client.set_pipeline_enabled(&members, &id, true).await.unwrap();
    assert!(sim.pipeline(&id).unwrap().1.enabled);

    // A different config under an existing id is a conflict, reported at once.
    let conflicting = mapping::pipeline_config("team-a", "users", 9, &spec(&[]));
    let error = client.create_pipeline(&members, conflicting).await.unwrap_err();
    assert!(matches!(error, RouterError::AlreadyExists { .. }), "{error:?}");
    assert_eq!(error.class(), ErrorClass::Permanent);

    // Buffered records keep the pipeline unless the delete is forced.
    let error = client.delete_pipeline(&members, &id, false).await.unwrap_err();
    assert!(matches!(error, RouterError::Rejected { method: "DeletePipeline", .. }), "{error:?}");
    client.delete_pipeline(&members, &id, true).await.unwrap();
    assert_eq!(client.get_pipeline(&members, &id).await.unwrap(), None);
    client.delete_pipeline(&members, &id, true).await.unwrap();

    let error = client.update_pipeline(&members, second).await.unwrap_err();
    assert!(matches!(error, RouterError::NotFound { method: "UpdatePipeline", .. }), "{error:?}");
    let error = client.set_pipeline_enabled(&members, &id, true).await.unwrap_err();
    assert_eq!(error.reason(), "RouterNotFound");

    let methods: Vec<_> = sim.mutation_log().iter().map(|mutation| mutation.method).collect();
    assert_eq!(
        methods,
        ["CreatePipeline", "UpdatePipeline", "DisablePipeline", "EnablePipeline", "DeletePipeline"]
    );
    let indices: Vec<_> = sim.mutation_log().iter().map(|mutation| mutation.index).collect();
    assert_eq!(indices, [1, 2, 3, 4, 5]);
    let status = client.member_status(&members[1]).await.unwrap();
    assert_eq!((status.commit_index, status.applied_index), (5, 5));
    sim.shutdown().await;
}

#[tokio::test]
async fn register_deregister_and_list_services() {
    let (sim, members) = cluster(43, 3).await;
    let client = RouterClient::new(fast_options());
    let grpc = |endpoint: &str| GrpcSpec { endpoint: endpoint.into() };

    let source =
        mapping::register_request(ServiceKind::Source, "ns", "kafka", &grpc("kafka-svc:50051")).unwrap();
    let transform =
        mapping::register_request(ServiceKind::Transform, "ns", "filter", &grpc("[fd00::7]:9000")).unwrap();
    let sink = mapping::register_request(ServiceKind::Sink, "ns", "ch", &grpc("10.1.2.3:8123")).unwrap();
    let registered = client.register(&members, source.clone()).await.unwrap();
    assert!(registered.success && !registered.registration_id.is_empty());
    client.register(&members, transform).await.unwrap();
    client.register(&members, sink).await.unwrap();

    // Register is an upsert: the same service keeps its registration.
    let again = client.register(&members, source).await.unwrap();
    assert_eq!(again.registration_id, registered.registration_id);

    let all = client.list_services(&members, ServiceType::Unspecified).await.unwrap();
    assert_eq!(all.len(), 3);
    let sources = client.list_services(&members, ServiceType::Source).await.unwrap();
    assert_eq!(sources.len(), 1);
    let identity = sources[0].identity.as_ref().unwrap();
    assert_eq!((identity.service_id.as_str(), identity.name.as_str()), ("ns/kafka", "kafka"));
    let endpoint = sources[0].endpoint.as_ref().unwrap();
    assert_eq!((endpoint.host.as_str(), endpoint.port), ("kafka-svc", 50051));
    let transforms = client.list_services(&members, ServiceType::Transform).await.unwrap();
    assert_eq!(transforms[0].endpoint.as_ref().unwrap().host, "fd00::7");

    client.deregister(&members, "ns/kafka").await.unwrap();
    client.deregister(&members, "ns/kafka").await.unwrap();
    assert!(client.list_services(&members, ServiceType::Source).await.unwrap().is_empty());
    assert_eq!(sim.services().len(), 2);
    assert_eq!(count(&sim, "Register", "ns/kafka"), 2);
    assert_eq!(count(&sim, "Deregister", "ns/kafka"), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn write_sent_to_a_follower_reaches_the_leader() {
    let (sim, members) = cluster(44, 3).await;
    let client = RouterClient::new(fast_options());
    let id = client.create_pipeline(&members, config("users", 1)).await.unwrap();
    assert_eq!(client.cached_leader(&members).as_deref(), Some(members[0].as_str()));

    // Leadership moves; the client still believes node 1 leads, so its next write
    // goes to a follower, which names the leader.
    assert!(sim.transfer_leadership(2));
    let version = client.update_pipeline(&members, config("users", 2)).await.unwrap();
    assert_eq!(version, 2);
    assert_eq!(
        sim.call_count("UpdatePipeline"),
        2,
        "one refused by the follower, one accepted by the leader"
    );
    let update = sim.mutation_log().into_iter().find(|mutation| mutation.is("UpdatePipeline", &id)).unwrap();
    assert_eq!((update.node, update.term), (2, 2));
    assert_eq!(client.cached_leader(&members).as_deref(), Some(members[1].as_str()));

    // Knowing only a follower, the client still reaches the leader it names.
    let follower_only = vec![members[2].clone()];
    let other = client.create_pipeline(&follower_only, config("orders", 1)).await.unwrap();
    let create =
        sim.mutation_log().into_iter().find(|mutation| mutation.is("CreatePipeline", &other)).unwrap();
    assert_eq!(create.node, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn leader_crash_after_commit_lands_the_create_exactly_once() {
    let (sim, members) = cluster(45, 3).await;
    let client = RouterClient::new(fast_options());
    client.create_pipeline(&members, config("first", 1)).await.unwrap();

    // Node 1 commits the next create and dies before answering: the client sees a
    // failure, retries against the newly elected leader, finds its own pipeline.
    sim.crash_after_next_write();
    let id = client.create_pipeline(&members, config("second", 1)).await.unwrap();
    assert_eq!(id, "team-a/second");
    assert_eq!(count(&sim, "CreatePipeline", &id), 1, "log: {:?}", sim.mutation_log());
    assert_eq!(sim.call_count("CreatePipeline"), 3, "first, the lost one, the retry that found it");
    assert_eq!(sim.leader(), Some(2));
    assert_eq!(sim.term(), 2);
    let create = sim.mutation_log().into_iter().find(|mutation| mutation.is("CreatePipeline", &id)).unwrap();
    assert_eq!((create.node, create.term), (1, 1));

    let version = client.update_pipeline(&members, config("second", 2)).await.unwrap();
    assert_eq!(version, 2);
    let update = sim.mutation_log().into_iter().find(|mutation| mutation.is("UpdatePipeline", &id)).unwrap();
    assert_eq!((update.node, update.term), (2, 2));
    sim.shutdown().await;
}

#[tokio::test]
async fn leader_killed_mid_sequence_every_operation_lands_once() {
    let (sim, members) = cluster(46, 3).await;
    let client = RouterClient::new(fast_options());
    let names: Vec<String> = (0..6).map(|index| format!("p{index}")).collect();
    for (index, name) in names.iter().enumerate() {
        if index == 3 {
            sim.stop_node(1).await;
        }
        client.create_pipeline(&members, config(name, 1)).await.unwrap();
    }
    for name in &names {
        assert_eq!(count(&sim, "CreatePipeline", &format!("team-a/{name}")), 1, "{name}");
    }
    let log = sim.mutation_log();
    let nodes: Vec<_> = log.iter().map(|mutation| (mutation.node, mutation.term)).collect();
    assert_eq!(nodes, [(1, 1), (1, 1), (1, 1), (2, 2), (2, 2), (2, 2)]);
    assert_eq!(client.cached_leader(&members).as_deref(), Some(members[1].as_str()));
    sim.shutdown().await;
}

#[tokio::test]
async fn partitioned_member_answers_with_a_deadline_error_within_the_bound() {
    let (sim, members) = cluster(47, 3).await;
    let options = ClientOptions { call_timeout: Duration::from_millis(300), ..fast_options() };
    let client = RouterClient::new(options.clone());
    client.member_status(&members[2]).await.unwrap();

    sim.partition_node(3);
    let started = Instant::now();
    let error = client.member_status(&members[2]).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(error, RouterError::DeadlineExceeded { ref member, method: "GetClusterStatus", .. } if member == &members[2]),
        "{error:?}"
    );
    assert_eq!(error.class(), ErrorClass::Transient);
    assert_eq!(error.reason(), "RouterTimeout");
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    // The partition never answers: ending at all, near the deadline, is the point (slack for load).
    assert!(elapsed < options.call_timeout + Duration::from_secs(1), "{elapsed:?}");

    // A partitioned follower does not stop writes: two of three still form a quorum.
    client.create_pipeline(&members, config("users", 1)).await.unwrap();

    // A partitioned leader: the write waits out one deadline, then lands on the new leader.
    sim.heal_node(3);
    sim.partition_node(1);
    let started = Instant::now();
    let version = client.update_pipeline(&members, config("users", 2)).await.unwrap();
    assert_eq!(version, 2);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(sim.leader(), Some(2));

    sim.heal_node(1);
    let client_status = client.member_status(&members[0]).await.unwrap();
    assert_eq!((client_status.leader_id, client_status.health()), (2, ClusterHealth::Healthy));
    sim.shutdown().await;
}

#[tokio::test]
async fn quorum_lost_is_a_transient_error_retried_with_backoff() {
    let (sim, members) = cluster(48, 3).await;
    let options = ClientOptions {
        max_attempts: 4,
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        ..fast_options()
    };
    let client = RouterClient::new(options);
    sim.stop_node(2).await;
    sim.stop_node(3).await;

    let status = client.member_status(&members[0]).await.unwrap();
    assert_eq!((status.leader_id, status.health()), (0, ClusterHealth::Unhealthy));

    let calls_before = sim.call_count("GetClusterStatus");
    let started = Instant::now();
    let error = client.create_pipeline(&members, config("users", 1)).await.unwrap_err();
    let elapsed = started.elapsed();
    let RouterError::Exhausted { attempts, last } = &error else {
        panic!("expected Exhausted, got {error:?}")
    };
    assert_eq!(*attempts, 4);
    assert!(matches!(**last, RouterError::NoQuorum { .. }), "{last:?}");
    assert_eq!(error.class(), ErrorClass::Transient);
    assert_eq!(error.reason(), "QuorumLost");
    // Three backoffs of at least 50, 100 and 200 ms: not a hot loop, and bounded.
    assert!(elapsed >= Duration::from_millis(350), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(
        sim.call_count("GetClusterStatus") - calls_before,
        4,
        "one status call per attempt on the live node"
    );
    assert_eq!(sim.call_count("CreatePipeline"), 0);

    sim.restart_node(2).await.unwrap();
    until(Duration::from_secs(3), "a leader after quorum returns", || async { sim.leader().is_some() }).await;
    client.create_pipeline(&members, config("users", 1)).await.unwrap();
    assert_eq!(sim.term(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn router_admin_unimplemented_is_its_own_error_kind() {
    let (sim, members) = cluster(49, 3).await;
    let client = RouterClient::new(fast_options());
    sim.set_router_admin_unimplemented(true);

    let error = client.member_status(&members[0]).await.unwrap_err();
    assert_eq!(error, RouterError::Unimplemented { service: "RouterAdmin", method: "GetClusterStatus" });
    assert_eq!(error.class(), ErrorClass::Unimplemented);
    assert_eq!(error.reason(), "RouterAdminUnimplemented");

    let calls_before = sim.call_count("GetClusterStatus");
    let error = client.create_pipeline(&members, config("users", 1)).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Unimplemented, "{error:?}");
    assert_eq!(sim.call_count("GetClusterStatus") - calls_before, 3, "one discovery round, no retries");

    // The registry is still served: registration tries the members in turn.
    let request = mapping::register_request(
        ServiceKind::Sink,
        "ns",
        "ch",
        &GrpcSpec { endpoint: "clickhouse:8123".into() },
    )
    .unwrap();
    client.register(&members, request).await.unwrap();
    assert_eq!(client.list_services(&members, ServiceType::Sink).await.unwrap().len(), 1);
    assert!(sim.mutation_log().iter().all(|mutation| mutation.method == "Register" && mutation.node == 1));

    sim.set_router_admin_unimplemented(false);
    client.create_pipeline(&members, config("users", 1)).await.unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn membership_grows_from_three_to_five() {
    let (sim, _) = cluster(50, 3).await;
    let client = RouterClient::new(fast_options());
    sim.add_node(4, node_addr(50, 4)).await.unwrap();
    sim.add_node(5, node_addr(50, 5)).await.unwrap();
    let members = sim.endpoints();
    assert_eq!(members.len(), 5);
    let status = client.member_status(&members[4]).await.unwrap();
    assert_eq!((status.node_id, status.nodes.len(), status.health()), (5, 5, ClusterHealth::Healthy));

    // Two of five down: still a quorum. Three down: none.
    sim.stop_node(1).await;
    sim.stop_node(2).await;
    until(Duration::from_secs(3), "node 3 leads", || async { sim.leader() == Some(3) }).await;
    client.create_pipeline(&members, config("users", 1)).await.unwrap();
    sim.stop_node(3).await;
    let status = client.member_status(&members[3]).await.unwrap();
    assert_eq!((status.leader_id, status.health()), (0, ClusterHealth::Unhealthy));

    sim.remove_node(1).await;
    sim.remove_node(2).await;
    until(Duration::from_secs(3), "a leader among the three left", || async { sim.leader() == Some(4) })
        .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn slowed_member_answers_late_or_times_out() {
    let (sim, members) = cluster(51, 3).await;
    let options = ClientOptions { call_timeout: Duration::from_millis(300), ..fast_options() };
    let client = RouterClient::new(options);

    sim.slow_node(2, Duration::from_millis(100));
    let started = Instant::now();
    client.member_status(&members[1]).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(100), "{:?}", started.elapsed());

    sim.slow_node(2, Duration::from_millis(1000));
    let started = Instant::now();
    let error = client.member_status(&members[1]).await.unwrap_err();
    assert!(matches!(error, RouterError::DeadlineExceeded { .. }), "{error:?}");
    // Well below the 1 s the node takes: the deadline cut the call (slack for a loaded machine).
    assert!(started.elapsed() < Duration::from_millis(900), "{:?}", started.elapsed());

    sim.slow_node(2, Duration::ZERO);
    client.member_status(&members[1]).await.unwrap();
    sim.shutdown().await;
}

/// The simulator's answers as any gRPC client sees them, without the operator's client.
#[tokio::test]
async fn simulator_speaks_the_contract_to_a_plain_grpc_client() {
    use conveyor_etl_operator::router::proto::router::router_admin_client::RouterAdminClient;
    use conveyor_etl_operator::router::proto::router::{
        CreatePipelineRequest, DisablePipelineRequest, GetMetricsRequest, ListPipelinesRequest,
    };

    let (sim, members) = cluster(52, 3).await;
    let mut leader = RouterAdminClient::connect(format!("http://{}", members[0])).await.unwrap();
    let mut follower = RouterAdminClient::connect(format!("http://{}", members[2])).await.unwrap();

    let refused = follower
        .create_pipeline(CreatePipelineRequest { config: Some(config("users", 1)) })
        .await
        .unwrap()
        .into_inner();
    assert!(!refused.success);
    assert_eq!(refused.error, format!("not leader; leader is 1 at {}", members[0]));

    let created = leader
        .create_pipeline(CreatePipelineRequest { config: Some(config("users", 1)) })
        .await
        .unwrap()
        .into_inner();
    assert!(created.success, "{}", created.error);
    assert_eq!(created.pipeline_id, "team-a/users");
    let again = leader
        .create_pipeline(CreatePipelineRequest { config: Some(config("users", 1)) })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.success);
    assert_eq!(again.error, "pipeline team-a/users already exists");

    let disabled = leader
        .disable_pipeline(DisablePipelineRequest { pipeline_id: "team-a/users".into(), drain: true })
        .await
        .unwrap()
        .into_inner();
    assert!(disabled.success);
    let enabled_only =
        follower.list_pipelines(ListPipelinesRequest { include_disabled: false }).await.unwrap().into_inner();
    assert!(enabled_only.pipelines.is_empty());
    let all =
        follower.list_pipelines(ListPipelinesRequest { include_disabled: true }).await.unwrap().into_inner();
    assert_eq!(all.pipelines.len(), 1);

    let metrics = follower
        .get_metrics(GetMetricsRequest { metric_names: vec!["pipelines".into(), "commit_index".into()] })
        .await
        .unwrap()
        .into_inner()
        .metrics;
    assert_eq!(metrics.len(), 2);
    assert_eq!((metrics["pipelines"], metrics["commit_index"]), (1.0, 2.0));

    sim.set_router_admin_unimplemented(true);
    let status = follower.list_pipelines(ListPipelinesRequest { include_disabled: true }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_pipeline_list_past_grpcs_default_four_mebibytes_is_read() {
    // About 8,000 pipelines make a list this large; five fat ones do too.
    let (sim, members) = cluster(53, 1).await;
    let client = RouterClient::new(fast_options());
    for i in 0..5 {
        let mut fat = config(&format!("fat-{i}"), 1);
        fat.metadata.insert("padding".into(), "x".repeat(1024 * 1024));
        client.create_pipeline(&members, fat).await.unwrap();
    }
    let listed = client.list_pipelines(&members).await.unwrap();
    let mut ids: Vec<&str> = listed.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["team-a/fat-0", "team-a/fat-1", "team-a/fat-2", "team-a/fat-3", "team-a/fat-4"]);
    let fat = client.get_pipeline(&members, "team-a/fat-0").await.unwrap().unwrap().config.unwrap();
    let bytes: usize = fat.metadata.values().map(String::len).sum();
    assert!(5 * bytes > 4 * 1024 * 1024, "{bytes}");
    // Each summarised as the whole config would be.
    assert!(listed.iter().all(|(id, summary)| id != "team-a/fat-0" || summary.same_shape_as(&fat)));
    drop(sim);
}
