//! EtlPipeline end to end: the operator (in-process, under its own RBAC)
//! submits the pipeline to a simulated router cluster whose pods the test's
//! kubelet runs, keeps the router's copy in line with the spec, and removes
//! it on deletion.

mod support;

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::json;

use conveyor_etl_operator::crd::{
    ClusterPhase, EtlPipeline, EtlPipelineSpec, EtlPipelineStatus, EtlSink, Phase,
};
use conveyor_etl_operator::router::mapping::{self, METADATA_DLQ_ENABLED, METADATA_DLQ_MAX_RETRIES};
use conveyor_etl_operator::router::{Router, RouterClient};
use conveyor_etl_operator::runtime::Timing;
use conveyor_router_sim::Mutation;
use support::control_plane::OPERATOR_USER;
use support::eventually;
use support::objects::{self, SERVICE_KINDS, create, event_count, events_about, name_of};
use support::operator::RunningOperator;
use support::router_sim::OtherWriter;
use support::scenario::{FORM_TIMEOUT, Scenario, seed_cluster};

const PIPELINE: &str = "user-analytics";

fn seed_pipeline() -> DynamicObject {
    objects::examples(&["EtlPipeline"]).remove(0)
}

async fn ready_cluster(prefix: &str) -> Scenario {
    let s = Scenario::new(prefix).await;
    s.create(&seed_cluster("my-cluster")).await;
    s.wait_phase(ClusterPhase::Ready).await;
    s
}

async fn create_services(s: &Scenario) {
    for service in objects::examples(&SERVICE_KINDS) {
        create(s, &service).await;
    }
}

async fn wait_services_ready(s: &Scenario) {
    for service in objects::examples(&SERVICE_KINDS) {
        let (kind, name) = (objects::kind_of(&service), name_of(&service));
        objects::wait_status::<conveyor_etl_operator::crd::ServiceStatus>(s, &kind, &name, "Ready", |st| {
            st.phase == Some(Phase::Ready)
        })
        .await;
    }
}

async fn wait_pipeline(
    s: &Scenario,
    what: &str,
    check: impl Fn(&EtlPipelineStatus) -> bool,
) -> EtlPipelineStatus {
    objects::wait_status(s, "EtlPipeline", PIPELINE, what, check).await
}

async fn wait_ready(s: &Scenario, generation: i64) -> EtlPipelineStatus {
    wait_pipeline(s, &format!("Ready at generation {generation}"), |st| {
        st.phase == Some(Phase::Ready) && st.applied_generation == Some(generation)
    })
    .await
}

fn condition(status: &EtlPipelineStatus, type_: &str) -> (String, String, String) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_}: {status:#?}"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

fn id(s: &Scenario) -> String {
    mapping::pipeline_id(&s.namespace, PIPELINE)
}

/// The router's mutations of this pipeline, by method.
fn writes(s: &Scenario, method: &str) -> Vec<Mutation> {
    let id = id(s);
    s.kubelet.sim.mutation_log().into_iter().filter(|m| m.is(method, &id)).collect()
}

fn pipelines(s: &Scenario) -> Api<EtlPipeline> {
    Api::namespaced(s.client.clone(), &s.namespace)
}

/// A cluster, the example services and the seed's pipeline, all Ready.
async fn ready_example_set(prefix: &str) -> Scenario {
    let s = ready_cluster(prefix).await;
    create_services(&s).await;
    create(&s, &seed_pipeline()).await;
    wait_ready(&s, 1).await;
    // The Event of the move to Ready follows its status write: wait for it
    // too, so tests that count writes from here see only their own.
    eventually(FORM_TIMEOUT, "the pipeline's Ready Event", || async {
        (event_count(&s, "EtlPipeline", PIPELINE, "PipelineRunning").await >= 1).then_some(())
    })
    .await;
    s
}

#[tokio::test]
async fn the_example_set_reaches_ready_with_the_pipeline_in_order_on_the_router() {
    let s = ready_example_set("pl-examples").await;
    let status = wait_ready(&s, 1).await;
    assert_eq!(status.cluster.as_deref(), Some("my-cluster"));
    assert_eq!(status.router_version, Some(1));
    assert_eq!(status.observed_generation, Some(1));
    let (ready, reason, _) = condition(&status, "Ready");
    assert_eq!((ready.as_str(), reason.as_str()), ("True", "PipelineRunning"));
    assert_eq!(condition(&status, "ReferencesResolved").0, "True");

    let (config, router_status) = s.kubelet.sim.pipeline(&id(&s)).expect("the router holds the pipeline");
    let stages: Vec<(String, String)> =
        config.stages.iter().map(|st| (st.id.clone(), st.name.clone())).collect();
    let expected = [
        ("source", "kafka-users"),
        ("step-0", "filter-active"),
        ("step-1", "enrich-geo"),
        ("sink", "clickhouse-analytics"),
    ];
    assert_eq!(stages, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));
    let edges: Vec<(String, String)> =
        config.edges.iter().map(|e| (e.from_stage.clone(), e.to_stage.clone())).collect();
    assert_eq!(
        edges,
        [("source", "step-0"), ("step-0", "step-1"), ("step-1", "sink")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(config.metadata.get(METADATA_DLQ_ENABLED).map(String::as_str), Some("true"));
    assert_eq!(config.metadata.get(METADATA_DLQ_MAX_RETRIES).map(String::as_str), Some("3"));
    assert!(router_status.enabled);
    assert_eq!(s.kubelet.sim.services().len(), 4);
    assert_eq!(writes(&s, "CreatePipeline").len(), 1);
    let pipeline = pipelines(&s).get(PIPELINE).await.unwrap();
    assert!(pipeline.metadata.finalizers.unwrap_or_default().contains(&"conveyor.etl/cleanup".to_owned()));
}

#[tokio::test]
async fn a_pipeline_applied_before_its_services_names_them_all_then_goes_on_by_itself() {
    let s = ready_cluster("pl-before").await;
    create(&s, &seed_pipeline()).await;
    let waiting = wait_pipeline(&s, "ReferencesMissing", |st| {
        st.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == "ReferencesMissing")
    })
    .await;
    assert_eq!(waiting.phase, Some(Phase::Pending));
    let (resolved, _, message) = condition(&waiting, "ReferencesResolved");
    assert_eq!(resolved, "False");
    for name in [
        "EtlSource kafka-users (source)",
        "EtlTransform filter-active (step 1)",
        "EtlTransform enrich-geo (step 2)",
        "EtlSink clickhouse-analytics (sink)",
    ] {
        assert!(message.contains(name), "{name} not named in {message:?}");
    }
    for service in objects::examples(&SERVICE_KINDS) {
        create(&s, &service).await;
        let name = name_of(&service);
        if name != "clickhouse-analytics" {
            let status = wait_pipeline(&s, &format!("{name} no longer named"), |st| {
                st.conditions
                    .iter()
                    .any(|c| c.type_ == "ReferencesResolved" && !c.message.contains(&format!(" {name} ")))
            })
            .await;
            assert_ne!(status.phase, Some(Phase::Ready), "Ready before every reference is");
        }
    }
    wait_ready(&s, 1).await;
    assert!(s.kubelet.sim.pipeline(&id(&s)).is_some());
    assert_eq!(writes(&s, "CreatePipeline").len(), 1);
    // The missing references were a problem to tell; the waits after them were not.
    let events = eventually(FORM_TIMEOUT, "the PipelineRunning Event", || async {
        let events = events_about(&s, "EtlPipeline", PIPELINE).await;
        events.iter().any(|(reason, _)| reason == "PipelineRunning").then_some(events)
    })
    .await;
    let reasons: Vec<&str> = events.iter().map(|(reason, _)| reason.as_str()).collect();
    assert_eq!(reasons, ["ReferencesMissing", "PipelineRunning"], "{events:#?}");
    // Told once the reference grace is over, after a quiet first wait.
    assert!(events[0].1.starts_with("Pending: missing: "), "{events:#?}");
    assert!(events[1].1.starts_with("Pending → Ready: "), "{events:#?}");
}

#[tokio::test]
async fn editing_the_steps_sends_exactly_one_update_and_applied_generation_follows() {
    let s = ready_example_set("pl-edit").await;
    let patch = json!({"spec": {"steps": ["enrich-geo", "filter-active"]}});
    pipelines(&s).patch(PIPELINE, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    let status = wait_ready(&s, 2).await;
    assert_eq!(status.router_version, Some(2));
    assert_eq!(status.observed_generation, Some(2));
    let (config, router_status) = s.kubelet.sim.pipeline(&id(&s)).unwrap();
    assert_eq!(config.stages[1].name, "enrich-geo");
    assert_eq!(router_status.version, 2);
    assert_eq!(writes(&s, "UpdatePipeline").len(), 1);
    assert_eq!(writes(&s, "CreatePipeline").len(), 1);
    // The Event follows the status write that made the pipeline Ready.
    eventually(FORM_TIMEOUT, "the Updated Event naming generation 2", || async {
        let events = events_about(&s, "EtlPipeline", PIPELINE).await;
        events.iter().any(|(reason, note)| reason == "Updated" && note.contains("generation 2")).then_some(())
    })
    .await;

    // Disabling is its own call, not an update.
    let patch = json!({"spec": {"enabled": false}});
    pipelines(&s).patch(PIPELINE, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    wait_pipeline(&s, "disabled", |st| {
        st.applied_generation == Some(3)
            && st.conditions.iter().any(|c| c.type_ == "Ready" && c.message.contains("disabled"))
    })
    .await;
    assert!(!s.kubelet.sim.pipeline(&id(&s)).unwrap().1.enabled);
    assert_eq!(writes(&s, "UpdatePipeline").len(), 2, "generation 3 changes the config's generation");
}

#[tokio::test]
async fn deleting_the_pipeline_removes_it_from_the_router() {
    let s = ready_example_set("pl-delete").await;
    pipelines(&s).delete(PIPELINE, &DeleteParams::default()).await.unwrap();
    eventually(FORM_TIMEOUT, "the pipeline gone", || async {
        pipelines(&s).get_opt(PIPELINE).await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(s.kubelet.sim.pipeline(&id(&s)).is_none());
    assert_eq!(writes(&s, "DeletePipeline").len(), 1);

    // Created again at once under the same name: the shared list read before
    // the deletion still shows the old copy, and must not pass for this one.
    create(&s, &seed_pipeline()).await;
    wait_ready(&s, 1).await;
    assert!(s.kubelet.sim.pipeline(&id(&s)).is_some(), "Ready while the router does not hold it");
    assert_eq!(writes(&s, "CreatePipeline").len(), 2);
    // Two fresh lists later, nothing was deleted again, by the sweep or otherwise.
    let lists = s.kubelet.sim.call_count("ListPipelines");
    eventually(FORM_TIMEOUT, "two more ListPipelines", || async {
        (s.kubelet.sim.call_count("ListPipelines") >= lists + 2).then_some(())
    })
    .await;
    assert_eq!(writes(&s, "DeletePipeline").len(), 1);
    assert!(s.kubelet.sim.pipeline(&id(&s)).is_some());
}

#[tokio::test]
async fn a_submission_the_router_already_holds_is_never_created_twice() {
    // As if the operator had submitted generation 1 and stopped before writing status.
    let s = ready_cluster("pl-once").await;
    create_services(&s).await;
    let spec: EtlPipelineSpec = serde_json::from_value(seed_pipeline().data["spec"].clone()).unwrap();
    let config = mapping::pipeline_config(&s.namespace, PIPELINE, 1, &spec);
    let client = RouterClient::new(support::operator::router_options());
    client.create_pipeline(&s.kubelet.sim.endpoints(), config).await.unwrap();
    create(&s, &seed_pipeline()).await;
    wait_ready(&s, 1).await;
    assert_eq!(writes(&s, "CreatePipeline").len(), 1, "only the first create");
    assert!(writes(&s, "UpdatePipeline").is_empty());
}

#[tokio::test]
async fn a_pipeline_deleted_or_changed_behind_the_operators_back_is_put_back() {
    let mut s = ready_example_set("pl-drift").await;
    // A Ready pipeline is reconciled again only each stats interval: with an
    // hour, only the cluster's list read can tell it of the drift.
    s.operator.take().unwrap().stop().await;
    let timing = Timing { stats_interval: Duration::from_secs(3600), ..support::operator::timing() };
    let client = support::operator::operator_client(s.plane).await;
    let sim = &s.kubelet.sim;
    let (reads, lists) = (sim.call_count("GetPipeline"), sim.call_count("ListPipelines"));
    s.operator = Some(RunningOperator::start_with_timing(client, &s.namespace, timing));
    // Its first reconcile (its stage figures read) and the first list it
    // compares the next ones with are behind it.
    eventually(FORM_TIMEOUT, "the new operator's first reconcile and list", || async {
        (sim.call_count("GetPipeline") > reads && sim.call_count("ListPipelines") >= lists + 2).then_some(())
    })
    .await;
    let client = RouterClient::new(support::operator::router_options());
    let members = s.kubelet.sim.endpoints();
    client.delete_pipeline(&members, &id(&s), true).await.unwrap();
    eventually(FORM_TIMEOUT, "the pipeline back on the router", || async {
        s.kubelet.sim.pipeline(&id(&s)).map(|_| ())
    })
    .await;
    assert_eq!(writes(&s, "CreatePipeline").len(), 2);

    let (mut config, _) = s.kubelet.sim.pipeline(&id(&s)).unwrap();
    config.stages.swap(1, 2);
    client.update_pipeline(&members, config).await.unwrap();
    eventually(FORM_TIMEOUT, "the steps back in order", || async {
        let (config, _) = s.kubelet.sim.pipeline(&id(&s))?;
        (config.stages[1].name == "filter-active").then_some(())
    })
    .await;
    eventually(FORM_TIMEOUT, "a DriftCorrected Event for each repair", || async {
        (event_count(&s, "EtlPipeline", PIPELINE, "DriftCorrected").await == 2).then_some(())
    })
    .await;
    let events = events_about(&s, "EtlPipeline", PIPELINE).await;
    assert!(events.iter().any(|(_, note)| note.contains("deleted behind the operator's back")), "{events:?}");
    wait_ready(&s, 1).await;
}

#[tokio::test]
async fn an_orphan_on_the_router_is_swept() {
    let s = ready_example_set("pl-orphan").await;
    let spec: EtlPipelineSpec = serde_json::from_value(seed_pipeline().data["spec"].clone()).unwrap();
    let ghost = mapping::pipeline_config(&s.namespace, "ghost", 2, &spec);
    let mut hand_made = mapping::pipeline_config(&s.namespace, "hand-made", 1, &spec);
    hand_made.metadata.clear();
    let client = RouterClient::new(support::operator::router_options());
    let members = s.kubelet.sim.endpoints();
    client.create_pipeline(&members, ghost.clone()).await.unwrap();
    client.create_pipeline(&members, hand_made.clone()).await.unwrap();
    eventually(FORM_TIMEOUT, "the orphan swept", || async {
        s.kubelet.sim.pipeline(&ghost.id).is_none().then_some(())
    })
    .await;
    assert!(
        s.kubelet.sim.pipeline(&hand_made.id).is_some(),
        "a pipeline the operator did not submit is left alone"
    );
    assert!(s.kubelet.sim.pipeline(&id(&s)).is_some());
    s.wait_event("an OrphanDeleted Event naming the ghost", |_, reason, note| {
        reason == "OrphanDeleted" && note.contains("ghost")
    })
    .await;
}

#[tokio::test]
async fn a_ready_pipeline_costs_no_writes_while_the_routers_log_moves() {
    let s = ready_example_set("pl-quiet").await;
    let sim = s.kubelet.sim.clone();
    let in_namespace = format!("/namespaces/{}/", s.namespace);
    let pipeline_writes = || {
        s.plane
            .writes_by(OPERATOR_USER)
            .into_iter()
            .filter(|w| w.request_uri.contains(&in_namespace))
            .map(|w| format!("{} {}", w.verb, w.request_uri))
            .collect::<Vec<_>>()
    };
    let writes_before = pipeline_writes().len();
    let lists_before = sim.call_count("ListPipelines");
    let gets_before = sim.call_count("GetPipeline");
    let log_before = sim.mutation_log().len();

    // Another client writes its own pipeline over and over.
    let writer = {
        let sim = sim.clone();
        let spec: EtlPipelineSpec = serde_json::from_value(seed_pipeline().data["spec"].clone()).unwrap();
        let mut config = mapping::pipeline_config("elsewhere", "x", 1, &spec);
        config.metadata.clear();
        OtherWriter::start(move |client, _| {
            let (endpoints, config) = (sim.endpoints(), config.clone());
            async move {
                let _ = client.create_pipeline(&endpoints, config.clone()).await;
                let _ = client.delete_pipeline(&endpoints, &config.id, true).await;
            }
        })
    };
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await; // the observation window, not a wait for a state
    writer.stop().await;

    assert!(sim.mutation_log().len() - log_before > 50, "the router's log must move during the window");
    let writes = pipeline_writes()[writes_before..].to_vec();
    let now = pipelines(&s).get(PIPELINE).await.unwrap().status;
    assert!(writes.is_empty(), "API writes while nothing changed: {writes:?}; status now {now:#?}");
    let ours = format!("{}/", s.namespace);
    let router_writes: Vec<_> =
        sim.mutation_log()[log_before..].iter().filter(|m| m.target.starts_with(&ours)).cloned().collect();
    assert!(router_writes.is_empty(), "router writes for an unchanged pipeline: {router_writes:?}");
    // The stage figures are read once per stats interval (3 s in tests), and unchanged they write nothing.
    let gets = sim.call_count("GetPipeline") - gets_before;
    assert!(
        gets <= window.as_secs() / 3 + 1,
        "{gets} GetPipeline in {window:?}: more than one per stats interval"
    );
    // One list per health interval (1 s in tests), shared by the pipeline and the cluster's sweep.
    let lists = sim.call_count("ListPipelines") - lists_before;
    let allowed = 2 * window.as_secs() + 4;
    assert!(lists <= allowed, "{lists} ListPipelines in {window:?}; at most {allowed}");
    assert_eq!(wait_ready(&s, 1).await.phase, Some(Phase::Ready));
}

#[tokio::test]
async fn a_router_that_cannot_be_reached_degrades_the_pipeline_until_it_returns() {
    let s = ready_example_set("pl-down").await;
    let sim = s.kubelet.sim.clone();
    for node in 1..=3 {
        sim.partition_node_with(node, conveyor_router_sim::Partition::Refuse);
    }
    let status = wait_pipeline(&s, "Degraded", |st| st.phase == Some(Phase::Degraded)).await;
    let (ready, reason, message) = condition(&status, "Ready");
    assert!(ready != "True", "{reason}: {message}");
    let lists_during = sim.call_count("ListPipelines");
    for node in 1..=3 {
        sim.heal_node(node);
    }
    wait_pipeline(&s, "Ready again", |st| st.phase == Some(Phase::Ready)).await;
    assert!(lists_during < 200, "{lists_during} list attempts in the outage: not a hot loop");
    assert_eq!(writes(&s, "CreatePipeline").len(), 1);
}

#[tokio::test]
async fn a_service_in_use_is_held_with_a_condition_until_its_pipeline_goes() {
    let s = ready_example_set("pl-hold").await;
    let sinks: Api<EtlSink> = Api::namespaced(s.client.clone(), &s.namespace);
    sinks.delete("clickhouse-analytics", &DeleteParams::default()).await.unwrap();
    let held = eventually(FORM_TIMEOUT, "the sink held by its pipeline", || async {
        let sink = sinks.get_opt("clickhouse-analytics").await.unwrap()?;
        let synced = sink.status?.conditions.into_iter().find(|c| c.type_ == "Synced")?;
        (synced.reason == "InUseByPipelines").then_some(synced)
    })
    .await;
    assert_eq!(held.status, "False");
    assert!(held.message.contains("EtlPipeline user-analytics"), "{}", held.message);
    let sink_id = mapping::service_id(&s.namespace, "clickhouse-analytics");
    assert!(s.kubelet.sim.services().iter().any(|svc| svc.identity.as_ref().unwrap().service_id == sink_id));
    eventually(FORM_TIMEOUT, "an InUseByPipelines Event", || async {
        (event_count(&s, "EtlSink", "clickhouse-analytics", "InUseByPipelines").await >= 1).then_some(())
    })
    .await;

    pipelines(&s).delete(PIPELINE, &DeleteParams::default()).await.unwrap();
    eventually(FORM_TIMEOUT, "the sink deregistered and gone", || async {
        sinks.get_opt("clickhouse-analytics").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(s.kubelet.sim.pipeline(&id(&s)).is_none());
    assert!(s.kubelet.sim.services().iter().all(|svc| svc.identity.as_ref().unwrap().service_id != sink_id));
}

#[tokio::test]
async fn the_status_shows_each_stage_with_its_service_and_endpoint() {
    let s = ready_example_set("pl-stages").await;
    let status = wait_ready(&s, 1).await;
    let services: Vec<(&str, &str, Option<&str>)> =
        status.stages.iter().map(|st| (&*st.id, &*st.service, st.endpoint.as_deref())).collect();
    assert_eq!(
        services,
        [
            ("source", "kafka-users", Some("kafka-source-svc:50051")),
            ("step-0", "filter-active", Some("filter-active-svc:50051")),
            ("step-1", "enrich-geo", Some("enrich-geo-svc:50051")),
            ("sink", "clickhouse-analytics", Some("clickhouse-sink-svc:50051")),
        ]
    );
    assert_eq!(status.phase, Some(Phase::Ready));
}

/// Whether each stage shows its errors rising, read from the status as
/// stored (`errorsRising`, absent when false).
fn errors_rising(status: &EtlPipelineStatus) -> Vec<bool> {
    let stages = serde_json::to_value(&status.stages).unwrap();
    stages.as_array().unwrap().iter().map(|stage| stage["errorsRising"] == json!(true)).collect()
}

#[tokio::test]
async fn busy_stage_figures_write_nothing_and_rising_errors_flip_the_stage_once_each_way() {
    use conveyor_router_sim::Rates;
    let s = ready_example_set("pl-busy").await;
    let sim = s.kubelet.sim.clone();
    let status_path = format!("/namespaces/{}/etlpipelines/{PIPELINE}/status", s.namespace);
    let status_writes = || {
        let all = s.plane.writes_by(OPERATOR_USER);
        all.into_iter().filter(|w| w.request_uri.contains(&status_path)).count()
    };
    let before = status_writes();
    let gets_before = sim.call_count("GetPipeline");
    let figures_before = sim.stage_figures(&id(&s));

    sim.set_flow(Rates { records_per_second: 200.0, errors_per_second: 0.0 });
    // Four stats intervals (3 s in tests) of records flowing.
    let window = Duration::from_secs(12);
    tokio::time::sleep(window).await; // the observation window, not a wait for a state
    let moved = sim.stage_figures(&id(&s));
    assert!(
        moved["sink"].records_processed >= figures_before["sink"].records_processed + 1000,
        "the router's figures must move: {figures_before:?} then {moved:?}"
    );
    let gets = sim.call_count("GetPipeline") - gets_before;
    assert!(gets >= 3, "{gets} stats reads in {window:?}: the figures were not read");
    let status = pipelines(&s).get(PIPELINE).await.unwrap().status.unwrap();
    assert_eq!(
        status_writes() - before,
        0,
        "status writes while only counters moved; status now {status:#?}"
    );

    sim.set_flow(Rates { records_per_second: 200.0, errors_per_second: 5.0 });
    let rising = wait_pipeline(&s, "errors rising on every stage", |st| {
        errors_rising(st).iter().all(|rising| *rising)
    })
    .await;
    assert_eq!(rising.phase, Some(Phase::Ready), "errors in the data are not the pipeline's phase");
    tokio::time::sleep(Duration::from_secs(9)).await; // three stats intervals of errors still rising
    assert_eq!(status_writes() - before, 1, "errors starting to rise: one write");
    eventually(FORM_TIMEOUT, "the StageErrorsRising Events", || async {
        (event_count(&s, "EtlPipeline", PIPELINE, "StageErrorsRising").await >= 4).then_some(())
    })
    .await;

    sim.set_flow(Rates { records_per_second: 200.0, errors_per_second: 0.0 });
    wait_pipeline(&s, "errors no longer rising", |st| errors_rising(st).iter().all(|rising| !*rising)).await;
    tokio::time::sleep(Duration::from_secs(9)).await; // three stats intervals of records only
    assert_eq!(status_writes() - before, 2, "errors stopping: one more write");
    eventually(FORM_TIMEOUT, "the StageErrorsStopped Events", || async {
        (event_count(&s, "EtlPipeline", PIPELINE, "StageErrorsStopped").await >= 4).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_thousand_reconciles_of_an_unchanged_ready_pipeline_and_its_services_write_nothing() {
    use conveyor_etl_operator::crd::{EtlSource, EtlTransform};
    use conveyor_etl_operator::runtime::reconciler::run;
    let mut s = ready_example_set("pl-thousand").await;
    // From here on only the direct reconciles below run.
    s.operator.take().unwrap().stop().await;
    let in_namespace = format!("/namespaces/{}/", s.namespace);
    let api_writes = || {
        let all = s.plane.writes_by(OPERATOR_USER);
        all.into_iter().filter(|w| w.request_uri.contains(&in_namespace)).collect::<Vec<_>>()
    };
    let before = api_writes().len();
    let ours = format!("{}/", s.namespace);
    let router_writes =
        || s.kubelet.sim.mutation_log().into_iter().filter(|m| m.target.starts_with(&ours)).count();
    let router_before = router_writes();
    let (ctx, _caches) = support::operator::direct_context(s.plane, &s.namespace).await;
    let pipeline = Arc::new(pipelines(&s).get(PIPELINE).await.unwrap());
    let source = Arc::new(
        Api::<EtlSource>::namespaced(s.client.clone(), &s.namespace).get("kafka-users").await.unwrap(),
    );
    let transform_api = Api::<EtlTransform>::namespaced(s.client.clone(), &s.namespace);
    let mut transforms = Vec::new();
    for name in ["filter-active", "enrich-geo"] {
        transforms.push(Arc::new(transform_api.get(name).await.unwrap()));
    }
    let sink = Arc::new(
        Api::<EtlSink>::namespaced(s.client.clone(), &s.namespace).get("clickhouse-analytics").await.unwrap(),
    );
    for _ in 0..200 {
        run(pipeline.clone(), ctx.clone()).await.unwrap();
        run(source.clone(), ctx.clone()).await.unwrap();
        for transform in &transforms {
            run(transform.clone(), ctx.clone()).await.unwrap();
        }
        run(sink.clone(), ctx.clone()).await.unwrap();
    }
    let new_writes: Vec<String> =
        api_writes()[before..].iter().map(|w| format!("{} {}", w.verb, w.request_uri)).collect();
    assert!(new_writes.is_empty(), "writes for unchanged objects: {new_writes:?}");
    assert_eq!(router_writes(), router_before, "router writes for unchanged objects");
    assert!(before > 0, "the audit log recorded no operator writes at all");
}

#[tokio::test]
async fn a_submission_whose_reply_is_lost_with_the_leader_lands_exactly_once() {
    let s = ready_cluster("pl-crash").await;
    create_services(&s).await;
    wait_services_ready(&s).await;
    // The leader commits the create, then dies before answering.
    let leader = s.kubelet.sim.leader().expect("a leader");
    s.kubelet.sim.crash_after_next_write();
    create(&s, &seed_pipeline()).await;
    let confirmed =
        wait_pipeline(&s, "the router's copy confirmed", |st| st.applied_generation == Some(1)).await;
    assert_eq!(confirmed.router_version, Some(1));
    assert_eq!(writes(&s, "CreatePipeline").len(), 1, "the lost reply did not lead to a second create");
    // With a member gone the cluster may be Degraded, and the pipeline says so; back, it is Ready.
    s.kubelet.sim.restart_node(leader).await.unwrap();
    wait_ready(&s, 1).await;
    assert_eq!(writes(&s, "CreatePipeline").len(), 1);
    assert!(writes(&s, "UpdatePipeline").is_empty());
}

#[tokio::test]
async fn two_clusters_and_no_reference_name_both_and_the_pipeline_waits() {
    let s = Scenario::new("pl-ambiguous").await;
    s.create(&seed_cluster("my-cluster")).await;
    s.create(&seed_cluster("other")).await;
    create(&s, &seed_pipeline()).await;
    let status = wait_pipeline(&s, "NoRouterCluster", |st| {
        st.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == "NoRouterCluster")
    })
    .await;
    let (_, _, message) = condition(&status, "Ready");
    assert!(message.contains("my-cluster, other") && message.contains("spec.clusterRef"), "{message}");
    assert_eq!(status.phase, Some(Phase::Pending));
}

#[tokio::test]
async fn kubectl_get_conveyor_shows_the_example_set_ready() {
    let s = ready_example_set("pl-kubectl").await;
    wait_services_ready(&s).await;
    // A discovery cache of its own: one filled before the CRDs were served lacks the category.
    let cache_dir = format!("--cache-dir={}", std::env::temp_dir().join(&s.namespace).display());
    let output = support::kubectl(
        s.plane,
        &[
            &cache_dir,
            "get",
            "conveyor",
            "-n",
            &s.namespace,
            "--no-headers",
            "-o",
            "custom-columns=KIND:.kind,NAME:.metadata.name,PHASE:.status.phase",
        ],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let rows: Vec<Vec<&str>> = text.lines().map(|line| line.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 6, "a cluster, a pipeline and four services: {text}");
    assert!(rows.iter().all(|row| row.get(2) == Some(&"Ready")), "{text}");
    let described = support::kubectl(s.plane, &["describe", "etlpipeline", PIPELINE, "-n", &s.namespace]);
    let described = String::from_utf8_lossy(&described.stdout);
    for expected in ["ReferencesResolved", "PipelineRunning", "Pending → Ready", "Applied Generation"] {
        assert!(described.contains(expected), "kubectl describe lacks {expected:?}:\n{described}");
    }
}

#[tokio::test]
async fn a_router_without_router_admin_is_its_own_reason() {
    let s = ready_cluster("pl-unimplemented").await;
    create_services(&s).await;
    s.kubelet.sim.set_router_admin_unimplemented(true);
    create(&s, &seed_pipeline()).await;
    let status = wait_pipeline(&s, "RouterAdminUnimplemented", |st| {
        st.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == "RouterAdminUnimplemented")
    })
    .await;
    let (ready, _, message) = condition(&status, "Ready");
    assert_eq!(ready, "False");
    assert!(message.contains("RouterAdmin"), "{message}");
    assert!(s.kubelet.sim.pipeline(&id(&s)).is_none());
    // A router build with RouterAdmin comes in with new pods (a pod found
    // without it is not asked again): the pipeline goes on by itself.
    s.kubelet.sim.set_router_admin_unimplemented(false);
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(s.client.clone(), &s.namespace);
    let router_pods = kube::api::ListParams::default().labels("conveyor.etl/cluster=my-cluster");
    pods.delete_collection(&DeleteParams::default(), &router_pods).await.unwrap();
    wait_ready(&s, 1).await;
}

#[tokio::test]
async fn pipelines_applied_with_their_cluster_and_services_at_once_never_report_a_failure() {
    // Everything at once: each pipeline is reconciled again by the cluster's
    // and services' changes while its own finalizer patch is in flight, from
    // a cached copy that does not show the finalizer yet.
    let s = Scenario::new("pl-at-once").await;
    let names: Vec<String> = (0..12).map(|i| format!("pipeline-{i}")).collect();
    let mut pipelines = Vec::new();
    for name in &names {
        let mut pipeline = seed_pipeline();
        pipeline.metadata.name = Some(name.clone());
        pipelines.push(pipeline);
    }
    let cluster = seed_cluster("my-cluster");
    let creates = pipelines.iter().map(|p| create(&s, p));
    tokio::join!(s.create(&cluster), create_services(&s), futures::future::join_all(creates));
    for name in &names {
        objects::wait_status::<EtlPipelineStatus>(&s, "EtlPipeline", name, "Ready", |st| {
            st.phase == Some(Phase::Ready)
        })
        .await;
    }
    for name in &names {
        let events = events_about(&s, "EtlPipeline", name).await;
        let warnings: Vec<&(String, String)> = events
            .iter()
            .filter(|(reason, _)| reason.contains("Failed") || reason.contains("Error"))
            .collect();
        assert!(warnings.is_empty(), "{name} reported a failure: {events:#?}");
    }
    // Waiting for the cluster and the services is told by the status alone:
    // one Event per pipeline, when it runs.
    for name in &names {
        let events = eventually(FORM_TIMEOUT, "the PipelineRunning Event", || async {
            let events = events_about(&s, "EtlPipeline", name).await;
            events.iter().any(|(reason, _)| reason == "PipelineRunning").then_some(events)
        })
        .await;
        let reasons: Vec<&str> = events.iter().map(|(reason, _)| reason.as_str()).collect();
        assert_eq!(reasons, ["PipelineRunning"], "{name}: {events:#?}");
    }
    // And no cached copy older than the finalizer sent the patch again to be refused.
    let writes = s.plane.writes_by(OPERATOR_USER);
    for name in &names {
        let path = format!("/namespaces/{}/etlpipelines/{name}", s.namespace);
        let patches: Vec<_> = writes
            .iter()
            .filter(|w| {
                w.verb == "patch"
                    && w.request_uri.split('?').next() == Some(&*format!("/apis/conveyor.etl/v1{path}"))
            })
            .map(|w| w.response_status.as_ref().and_then(|st| st["code"].as_u64()))
            .collect();
        assert_eq!(patches, [Some(200)], "{name}'s finalizer patches");
    }
}

#[tokio::test]
async fn a_pipeline_someone_else_created_under_its_id_is_neither_updated_nor_deleted() {
    let s = ready_cluster("pl-foreign").await;
    create_services(&s).await;
    // Made at the router by hand, with the id the EtlPipeline maps to, but
    // without the generation this operator writes into every submission.
    let spec: EtlPipelineSpec = serde_json::from_value(seed_pipeline().data["spec"].clone()).unwrap();
    let mut foreign = mapping::pipeline_config(&s.namespace, PIPELINE, 1, &spec);
    foreign.metadata.clear();
    foreign.stages.truncate(2);
    foreign.edges.truncate(1);
    let client = RouterClient::new(support::operator::router_options());
    // Right after the cluster's shared list was read (by its orphan sweep):
    // the pipeline's reconcile then finds it absent from a list made before
    // the hand-made create, and tries a create the router refuses.
    let lists = s.kubelet.sim.call_count("ListPipelines");
    eventually(FORM_TIMEOUT, "the shared list read", || async {
        (s.kubelet.sim.call_count("ListPipelines") > lists).then_some(())
    })
    .await;
    client.create_pipeline(&s.kubelet.sim.endpoints(), foreign.clone()).await.unwrap();
    create(&s, &seed_pipeline()).await;
    let status = wait_pipeline(&s, "PipelineConflict", |st| {
        st.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == "PipelineConflict")
    })
    .await;
    let (ready, _, message) = condition(&status, "Ready");
    assert_eq!(ready, "False");
    assert!(message.contains("my-cluster") && message.contains("did not submit"), "{message}");
    assert_eq!(status.applied_generation, None, "{status:#?}");
    eventually(FORM_TIMEOUT, "a PipelineConflict Event", || async {
        (event_count(&s, "EtlPipeline", PIPELINE, "PipelineConflict").await >= 1).then_some(())
    })
    .await;
    // Two fresh lists later the router's copy is still the hand-made one.
    let lists = s.kubelet.sim.call_count("ListPipelines");
    eventually(FORM_TIMEOUT, "two more ListPipelines", || async {
        (s.kubelet.sim.call_count("ListPipelines") >= lists + 2).then_some(())
    })
    .await;
    assert_eq!(s.kubelet.sim.pipeline(&id(&s)).unwrap().0, foreign);
    assert!(writes(&s, "UpdatePipeline").is_empty());
    assert_eq!(writes(&s, "CreatePipeline").len(), 1, "only the hand-made create");

    // Deleting the EtlPipeline leaves the foreign pipeline where it is.
    pipelines(&s).delete(PIPELINE, &DeleteParams::default()).await.unwrap();
    eventually(FORM_TIMEOUT, "the EtlPipeline gone", || async {
        pipelines(&s).get_opt(PIPELINE).await.unwrap().is_none().then_some(())
    })
    .await;
    assert_eq!(s.kubelet.sim.pipeline(&id(&s)).unwrap().0, foreign);
    assert!(writes(&s, "DeletePipeline").is_empty());
    let events = events_about(&s, "EtlPipeline", PIPELINE).await;
    assert!(
        events.iter().any(|(reason, note)| reason == "PipelineConflict" && note.contains("left alone")),
        "{events:#?}"
    );
}

/// `object` with `spec.clusterRef` naming `cluster`.
fn on_cluster(mut object: DynamicObject, cluster: &str) -> DynamicObject {
    object.data["spec"]["clusterRef"] = json!({"name": cluster});
    object
}

/// The example set Ready on my-cluster, every object naming it, and a second
/// cluster `other` Ready beside it; `other`'s kubelet and simulator.
async fn example_set_beside_another_cluster(prefix: &str) -> (Scenario, support::kubelet::FakeKubelet) {
    let s = ready_cluster(prefix).await;
    let other = s.ready_cluster_beside("other").await;
    for service in objects::examples(&SERVICE_KINDS) {
        create(&s, &on_cluster(service, "my-cluster")).await;
    }
    create(&s, &on_cluster(seed_pipeline(), "my-cluster")).await;
    let status = wait_ready(&s, 1).await;
    assert_eq!(status.cluster.as_deref(), Some("my-cluster"));
    (s, other)
}

async fn move_pipeline_to(s: &Scenario, cluster: &str) {
    let patch = json!({"spec": {"clusterRef": {"name": cluster}}});
    pipelines(s).patch(PIPELINE, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
}

#[tokio::test]
async fn a_pipeline_moved_to_another_cluster_ends_on_it_only() {
    let (s, other) = example_set_beside_another_cluster("pl-move").await;
    move_pipeline_to(&s, "other").await;
    let status = wait_pipeline(&s, "Ready on other", |st| {
        st.phase == Some(Phase::Ready) && st.cluster.as_deref() == Some("other")
    })
    .await;
    assert_eq!(status.applied_generation, Some(2));
    assert!(other.sim.pipeline(&id(&s)).is_some(), "other does not hold the pipeline");
    assert!(s.kubelet.sim.pipeline(&id(&s)).is_none(), "my-cluster still holds the pipeline");
    assert_eq!(writes(&s, "DeletePipeline").len(), 1);
    let on_other =
        |method: &str| other.sim.mutation_log().into_iter().filter(|m| m.is(method, &id(&s))).count();
    assert_eq!(on_other("CreatePipeline"), 1);
    eventually(FORM_TIMEOUT, "an Event for each step of the move", || async {
        let events = events_about(&s, "EtlPipeline", PIPELINE).await;
        let removed = events.iter().any(|(r, n)| r == "RemovedFromCluster" && n.contains("my-cluster"));
        let moved = events.iter().any(|(r, n)| r == "Moved" && n.contains("on EtlRouterCluster other"));
        (removed && moved).then_some(())
    })
    .await;
    // Two fresh lists of each later, it is still on other only.
    let lists = (s.kubelet.sim.call_count("ListPipelines"), other.sim.call_count("ListPipelines"));
    eventually(FORM_TIMEOUT, "two more ListPipelines on each cluster", || async {
        let now = (s.kubelet.sim.call_count("ListPipelines"), other.sim.call_count("ListPipelines"));
        (now.0 >= lists.0 + 2 && now.1 >= lists.1 + 2).then_some(())
    })
    .await;
    assert!(s.kubelet.sim.pipeline(&id(&s)).is_none());
    assert_eq!((writes(&s, "CreatePipeline").len(), on_other("CreatePipeline")), (1, 1));
}

#[tokio::test]
async fn a_move_away_from_an_unreachable_cluster_is_told_and_completes_once_it_answers() {
    let (s, other) = example_set_beside_another_cluster("pl-move-down").await;
    for node in 1..=3 {
        s.kubelet.sim.partition_node_with(node, conveyor_router_sim::Partition::Refuse);
    }
    move_pipeline_to(&s, "other").await;
    let status = wait_pipeline(&s, "the move waiting for my-cluster", |st| {
        let reason = |type_: &str| st.conditions.iter().find(|c| c.type_ == type_).map(|c| c.reason.clone());
        reason("Ready").as_deref() == Some("MovingCluster")
            && st.conditions.iter().any(|c| c.type_ == "Synced" && c.status == "False")
    })
    .await;
    let (ready, _, message) = condition(&status, "Ready");
    assert_eq!(ready, "False");
    assert!(message.contains("from router cluster my-cluster to other"), "{message}");
    assert_eq!(status.cluster.as_deref(), Some("my-cluster"), "recorded on other before it left my-cluster");
    assert!(other.sim.pipeline(&id(&s)).is_none(), "submitted to other while my-cluster may run it");
    assert!(s.kubelet.sim.pipeline(&id(&s)).is_some());

    for node in 1..=3 {
        s.kubelet.sim.heal_node(node);
    }
    wait_pipeline(&s, "Ready on other", |st| {
        st.phase == Some(Phase::Ready) && st.cluster.as_deref() == Some("other")
    })
    .await;
    assert!(s.kubelet.sim.pipeline(&id(&s)).is_none(), "my-cluster still holds the pipeline");
    assert!(other.sim.pipeline(&id(&s)).is_some());
}

#[tokio::test]
async fn a_move_away_from_an_unreachable_cluster_goes_on_once_that_cluster_is_deleted() {
    let (s, other) = example_set_beside_another_cluster("pl-move-gone").await;
    for node in 1..=3 {
        s.kubelet.sim.partition_node_with(node, conveyor_router_sim::Partition::Refuse);
    }
    move_pipeline_to(&s, "other").await;
    wait_pipeline(&s, "the move waiting for my-cluster", |st| {
        st.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == "MovingCluster")
    })
    .await;
    assert!(other.sim.pipeline(&id(&s)).is_none(), "submitted to other while my-cluster may run it");

    // Gone, my-cluster holds nothing left to remove.
    s.clusters.delete("my-cluster", &DeleteParams::default()).await.unwrap();
    let status = wait_pipeline(&s, "submitted to other", |st| {
        st.cluster.as_deref() == Some("other") && st.applied_generation == Some(2)
    })
    .await;
    assert_eq!(status.router_version, Some(1), "{status:#?}");
    assert!(other.sim.pipeline(&id(&s)).is_some());
    eventually(FORM_TIMEOUT, "a RouterClusterGone Event", || async {
        let events = events_about(&s, "EtlPipeline", PIPELINE).await;
        events.iter().any(|(r, n)| r == "RouterClusterGone" && n.contains("my-cluster")).then_some(())
    })
    .await;
}

/// How far apart the test applies a referrer and what it references: the lag
/// of a watch cache behind one `kubectl apply`, provoked. Well inside the
/// operator's reference grace (10 s), so nothing may be reported missing.
const LAG: Duration = Duration::from_millis(2500);

/// Reasons that tell a person a reference is missing.
const MISSING: [&str; 2] = ["NoRouterCluster", "ReferencesMissing"];

/// Holds for `LAG` from now that neither the pipeline nor any service shows
/// or announces a missing reference. (A new pipeline waiting inside the
/// grace is not even reconciled, so there is no first reconcile to wait for.)
async fn nothing_reported_missing_for_a_lag(s: &Scenario) {
    let mut objects = vec![("EtlPipeline".to_owned(), PIPELINE.to_owned())];
    objects.extend(objects::examples(&SERVICE_KINDS).iter().map(|o| (objects::kind_of(o), name_of(o))));
    let deadline = tokio::time::Instant::now() + LAG;
    while tokio::time::Instant::now() < deadline {
        for (kind, name) in &objects {
            let object = objects::api_of(s, kind).get_opt(name).await.unwrap();
            let conditions = object.map(|o| o.data["status"]["conditions"].clone()).unwrap_or_default();
            for condition in conditions.as_array().into_iter().flatten() {
                let reason = condition["reason"].as_str().unwrap_or_default();
                assert!(!MISSING.contains(&reason), "{kind} {name} reported {condition} within {LAG:?}");
                assert!(
                    condition["type"] != "Synced" || condition["status"] == "True",
                    "{kind} {name}: {condition}"
                );
            }
            let events = events_about(s, kind, name).await;
            assert!(
                events.is_empty(),
                "{kind} {name} announced {events:#?} while its references were on their way"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // poll interval
    }
}

#[tokio::test]
async fn references_applied_a_moment_after_their_referrer_are_awaited_without_a_warning() {
    // The lag of one `kubectl apply` made certain: the pipeline reaches the
    // operator first, its services a moment later, their cluster after that.
    let s = Scenario::new("pl-lagging").await;
    create(&s, &seed_pipeline()).await;
    nothing_reported_missing_for_a_lag(&s).await;
    create_services(&s).await;
    nothing_reported_missing_for_a_lag(&s).await;
    s.create(&seed_cluster("my-cluster")).await;
    wait_ready(&s, 1).await;
    wait_services_ready(&s).await;
    let events = eventually(FORM_TIMEOUT, "the PipelineRunning Event", || async {
        let events = events_about(&s, "EtlPipeline", PIPELINE).await;
        events.iter().any(|(reason, _)| reason == "PipelineRunning").then_some(events)
    })
    .await;
    let reasons: Vec<&str> = events.iter().map(|(reason, _)| reason.as_str()).collect();
    assert_eq!(reasons, ["PipelineRunning"], "{events:#?}");
    for service in objects::examples(&SERVICE_KINDS) {
        let events = events_about(&s, &objects::kind_of(&service), &name_of(&service)).await;
        assert!(events.iter().all(|(reason, _)| !MISSING.contains(&reason.as_str())), "{events:#?}");
    }
}

#[tokio::test]
async fn a_cluster_that_never_comes_is_reported_missing_once_the_grace_is_over() {
    let s = Scenario::new("pl-never").await;
    create_services(&s).await;
    let created = std::time::Instant::now();
    create(&s, &seed_pipeline()).await;
    let status = wait_pipeline(&s, "NoRouterCluster", |st| {
        st.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == "NoRouterCluster")
    })
    .await;
    let took = created.elapsed();
    println!("NoRouterCluster reported {took:?} after the pipeline was created");
    // The grace is 10 s from metadata.creationTimestamp, which has whole seconds.
    assert!(took >= Duration::from_secs(9), "reported after {took:?}, inside the grace");
    assert!(took < Duration::from_secs(15), "reported only after {took:?}");
    assert_eq!(status.phase, Some(Phase::Pending));
    let (_, _, message) = condition(&status, "Ready");
    assert!(message.contains("create one"), "{message}");
    eventually(FORM_TIMEOUT, "a NoRouterCluster Event", || async {
        (event_count(&s, "EtlPipeline", PIPELINE, "NoRouterCluster").await == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn kubectl_get_etlpipelines_shows_cluster_and_enabled_and_a_disabled_pipeline_not_ready() {
    let s = ready_example_set("pl-columns").await;
    let patch = json!({"spec": {"enabled": false}});
    pipelines(&s).patch(PIPELINE, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    let status = wait_pipeline(&s, "disabled, read back from the router", |st| {
        st.applied_generation == Some(2)
            && st.conditions.iter().any(|c| c.type_ == "Ready" && c.message.contains("disabled"))
    })
    .await;
    assert!(!s.kubelet.sim.pipeline(&id(&s)).unwrap().1.enabled);
    assert_eq!(condition(&status, "Ready").0, "False", "a disabled pipeline is not Ready: {status:#?}");
    assert_eq!(condition(&status, "Ready").1, "Disabled");

    let listing = support::kubectl_ok(s.plane, &["get", "etlpipelines", "-n", &s.namespace]);
    let mut lines = listing.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "SOURCE", "SINK", "CLUSTER", "ENABLED", "PHASE", "READY", "AGE"],
        "{listing}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..7],
        [PIPELINE, "kafka-users", "clickhouse-analytics", "my-cluster", "false", "Disabled", "False"]
    );

    // Enabled again, it is Ready again, and says so in the same columns.
    let patch = json!({"spec": {"enabled": true}});
    pipelines(&s).patch(PIPELINE, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    wait_ready(&s, 3).await;
    let listing = support::kubectl_ok(s.plane, &["get", "etlpipelines", "-n", &s.namespace, "--no-headers"]);
    let row: Vec<&str> = listing.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(&row[3..7], ["my-cluster", "true", "Ready", "True"], "{listing}");
}
