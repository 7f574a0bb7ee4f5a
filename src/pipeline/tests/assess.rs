//! `assess` on hand-built pipeline observations.

use crate::pipeline::assess::{Submit, assess};
use crate::pipeline::machine::Event;
use crate::pipeline::observation::{ClusterView, Observation, Reference, RouterCopy, ServiceState};

fn reference(role: &str, kind: &'static str, name: &str, state: ServiceState) -> Reference {
    Reference { role: role.into(), kind, name: name.into(), state, assignment: None }
}

fn seed(router: Option<RouterCopy>) -> Observation {
    Observation {
        generation: 3,
        enabled: true,
        cluster: ClusterView::Ready { name: "my-cluster".into() },
        references: vec![
            reference("source", "EtlSource", "kafka-users", ServiceState::Ready),
            reference("step 1", "EtlTransform", "filter-active", ServiceState::Ready),
            reference("step 2", "EtlTransform", "enrich-geo", ServiceState::Ready),
            reference("sink", "EtlSink", "s3-archive", ServiceState::Ready),
        ],
        router,
        leaving: None,
        arriving: false,
    }
}

fn present(generation: i64, enabled: bool, matches: bool) -> Option<RouterCopy> {
    Some(RouterCopy::Present { generation: Some(generation), enabled, matches })
}

#[test]
fn missing_and_unready_references_are_named_exactly() {
    let mut observed = seed(None);
    observed.references[0].state = ServiceState::Missing;
    observed.references[2].state = ServiceState::NotReady;
    let assessment = assess(&observed);
    assert_eq!((assessment.event, assessment.submit), (Event::ReferencesMissing, None));
    let (resolved, message) = &assessment.references_resolved;
    assert!(!resolved);
    assert!(message.contains("missing: EtlSource kafka-users (source)"), "{message}");
    assert!(message.contains("not Ready yet: EtlTransform enrich-geo (step 2)"), "{message}");
    assert!(!message.contains("filter-active"), "{message}");

    observed.references[0].state = ServiceState::Ready;
    assert_eq!(assess(&observed).event, Event::ReferencesNotReady);
}

#[test]
fn the_cluster_comes_first() {
    let mut observed = seed(None);
    observed.cluster = ClusterView::Unresolved("2 router clusters (a, b) and no spec.clusterRef".into());
    observed.references[0].state = ServiceState::Missing;
    let assessment = assess(&observed);
    assert_eq!(assessment.event, Event::NoCluster);
    assert!(assessment.message.contains("(a, b)"));
    observed.cluster = ClusterView::NotReady { name: "a".into() };
    assert_eq!(assess(&observed).event, Event::ClusterNotReady);
}

#[test]
fn a_young_pipeline_waits_for_what_is_absent_and_an_older_one_reports_it_missing() {
    let mut young = seed(None);
    young.arriving = true;
    young.cluster = ClusterView::Absent("no EtlRouterCluster in namespace ns".into());
    let waiting = assess(&young);
    assert_eq!(waiting.event, Event::ClusterNotReady);
    assert!(
        waiting.message.contains("on its way") && waiting.message.contains("10 s"),
        "{}",
        waiting.message
    );
    young.cluster = ClusterView::Unresolved("several clusters".into());
    assert_eq!(assess(&young).event, Event::NoCluster, "several clusters is no lag");
    young.cluster = ClusterView::Ready { name: "my-cluster".into() };
    young.references[1].state = ServiceState::Missing;
    let waiting = assess(&young);
    assert_eq!(waiting.event, Event::ReferencesNotReady);
    let (resolved, message) = &waiting.references_resolved;
    assert!(!resolved && message.contains("not seen yet: EtlTransform filter-active (step 1)"), "{message}");

    let mut older = young.clone();
    older.arriving = false;
    let missing = assess(&older);
    assert_eq!(missing.event, Event::ReferencesMissing);
    assert!(missing.message.contains("missing: EtlTransform filter-active"), "{}", missing.message);
    older.cluster = ClusterView::Absent("no EtlRouterCluster in namespace ns".into());
    assert_eq!(assess(&older).event, Event::NoCluster);
}

#[test]
fn the_router_call_follows_the_routers_own_copy() {
    let create = assess(&seed(Some(RouterCopy::Absent)));
    assert_eq!((create.event, create.submit), (Event::OutOfSync, Some(Submit::Create)));
    assert!(create.message.contains("generation 3"), "{}", create.message);
    assert_eq!(assess(&seed(present(2, true, true))).submit, Some(Submit::Update), "older generation");
    assert_eq!(assess(&seed(present(3, true, false))).submit, Some(Submit::Update), "config drifted");
    assert_eq!(assess(&seed(present(3, false, true))).submit, Some(Submit::Enable));
    let mut disabled = seed(present(3, true, true));
    disabled.enabled = false;
    assert_eq!(assess(&disabled).submit, Some(Submit::Disable));
    let mut held_disabled = seed(present(3, false, true));
    held_disabled.enabled = false;
    let held_disabled = assess(&held_disabled);
    assert_eq!((held_disabled.event, held_disabled.submit), (Event::Disabled, None));
    assert!(held_disabled.message.contains("spec.enabled"), "{}", held_disabled.message);
    let in_sync = assess(&seed(present(3, true, true)));
    assert_eq!((in_sync.event, in_sync.submit), (Event::InSync, None));
    assert!(in_sync.references_resolved.0);
}

#[test]
fn router_trouble_and_unhealthy_services_are_their_own_reasons() {
    let unimplemented = assess(&seed(Some(RouterCopy::Unimplemented("UNIMPLEMENTED".into()))));
    assert_eq!(unimplemented.event, Event::RouterAdminUnimplemented);
    assert!(
        unimplemented.message.contains("lacks RouterAdmin")
            || unimplemented.message.contains("cannot run pipelines")
    );
    let unreachable = assess(&seed(Some(RouterCopy::Unreachable("deadline exceeded".into()))));
    assert_eq!((unreachable.event, unreachable.submit), (Event::RouterUnreachable, None));

    let mut sick = seed(present(3, true, true));
    sick.references[3].state = ServiceState::Unhealthy("disk full".into());
    let assessment = assess(&sick);
    assert_eq!(assessment.event, Event::ServiceUnhealthy);
    assert!(assessment.message.contains("EtlSink s3-archive (sink) (disk full)"), "{}", assessment.message);
}

#[test]
fn a_router_without_router_admin_is_named_before_the_cluster_and_the_references() {
    let mut observed = seed(Some(RouterCopy::Unimplemented("its RouterAdmin condition".into())));
    observed.cluster = ClusterView::NotReady { name: "my-cluster".into() };
    observed.references[0].state = ServiceState::Missing;
    let assessment = assess(&observed);
    assert_eq!((assessment.event, assessment.submit), (Event::RouterAdminUnimplemented, None));
    assert!(assessment.message.contains("cannot run pipelines"), "{}", assessment.message);
    observed.cluster = ClusterView::Unresolved("no EtlRouterCluster".into());
    assert_eq!(assess(&observed).event, Event::NoCluster, "a cluster must be found first");
}

#[test]
fn a_service_named_by_many_steps_is_listed_once() {
    let mut observed = seed(None);
    observed.references = std::iter::once(reference("source", "EtlSource", "in", ServiceState::Ready))
        .chain(
            (1..=1000).map(|i| reference(&format!("step {i}"), "EtlTransform", "t", ServiceState::Missing)),
        )
        .chain(std::iter::once(reference("sink", "EtlSink", "out", ServiceState::Missing)))
        .collect();
    let assessment = assess(&observed);
    assert_eq!(assessment.event, Event::ReferencesMissing);
    assert_eq!(
        assessment.references_resolved.1,
        "missing: EtlTransform t (step 1 and 999 more), EtlSink out (sink); \
         the pipeline goes on by itself once they are Ready"
    );
}

#[test]
fn a_pipeline_someone_else_made_under_this_id_is_a_conflict_and_never_written() {
    let assessment = assess(&seed(Some(RouterCopy::Foreign)));
    assert_eq!((assessment.event, assessment.submit), (Event::Conflict, None));
    assert!(assessment.message.contains("did not submit"), "{}", assessment.message);
    assert_eq!(crate::pipeline::assess::submission(&RouterCopy::Foreign, 3, true), None);
}

#[test]
fn a_router_copy_without_the_operators_marker_is_foreign() {
    use crate::pipeline::observe::copy_of;
    use crate::router::mapping::{PipelineSummary, pipeline_config};
    let spec = crate::crd::EtlPipelineSpec { source: "s".into(), sink: "k".into(), ..Default::default() };
    let desired = pipeline_config("ns", "p", 3, &spec);
    let mut hand_made = desired.clone();
    hand_made.metadata.clear();
    assert_eq!(copy_of(&PipelineSummary::of(&hand_made), &desired), RouterCopy::Foreign);
    assert!(matches!(
        copy_of(&PipelineSummary::of(&desired), &desired),
        RouterCopy::Present { generation: Some(3), enabled: false, matches: true }
    ));
}

#[test]
fn a_pipeline_leaves_the_cluster_its_status_records_before_anything_else_unless_it_is_gone() {
    use crate::pipeline::observation::Leaving;
    let mut moving = seed(Some(RouterCopy::Absent));
    moving.leaving = Some(Leaving { from: "old".into(), gone: false });
    let assessment = assess(&moving);
    assert_eq!((assessment.event, assessment.submit), (Event::Moving, None));
    assert!(assessment.message.contains("from router cluster old to my-cluster"), "{}", assessment.message);
    moving.cluster = ClusterView::NotReady { name: "my-cluster".into() };
    assert_eq!(assess(&moving).event, Event::Moving, "leaving does not wait for the new cluster");
    moving.cluster = ClusterView::Unresolved("no such cluster".into());
    assert_eq!(assess(&moving).event, Event::NoCluster, "no move without a destination");
    let mut gone = seed(Some(RouterCopy::Absent));
    gone.leaving = Some(Leaving { from: "old".into(), gone: true });
    assert_eq!(assess(&gone).submit, Some(Submit::Create), "nothing to remove from a cluster that is gone");
}

/// A retried read that failed after `attempts` tries, each timing out.
fn gave_up_after(attempts: usize) -> crate::router::RouterError {
    let timeout = crate::router::RouterError::DeadlineExceeded {
        member: "10.0.0.1:50051".into(),
        method: "ListPipelines",
        timeout: std::time::Duration::from_secs(3),
    };
    crate::router::RouterError::Exhausted { attempts, last: Box::new(timeout) }
}

#[test]
fn failures_differing_only_in_attempt_counts_give_identical_conditions() {
    use crate::crd::Phase;
    use crate::pipeline::conditions::conditions;
    use crate::pipeline::observe::router_copy;
    let desired = crate::router::PipelineConfig::default();
    let conditions_after = |attempts| {
        let assessment = assess(&seed(Some(router_copy(Err(&gave_up_after(attempts)), &desired))));
        conditions(Phase::Degraded, assessment.event, &assessment.message)
    };
    assert_eq!(conditions_after(3), conditions_after(5));
    assert!(
        conditions_after(3)[0].message.contains("did not answer ListPipelines"),
        "{:?}",
        conditions_after(3)
    );
}
