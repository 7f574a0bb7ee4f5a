//! Per-object gauges the alerts need: each object's phase and Ready, and each
//! router cluster's members, leader and term. Like `conveyor_objects` they
//! are computed from the watch caches at scrape time, so an object's series
//! go away with it. Cardinality is bounded by the objects: one series per
//! object (per phase for `conveyor_object_phase`), and nothing labelled with
//! values that move, such as the leader's name.

//!
//! At ten thousand pipelines a scrape holds tens of thousands of series, so
//! they are written straight from the cached objects as they are read, not
//! gathered into gauge families first (which doubled the scrape's memory).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{Resource, ResourceExt};

use super::Cache;
use super::metrics::{CLUSTER_PHASES, PHASES, PIPELINE_PHASES};
use crate::crd::{EtlPipeline, EtlRouterCluster, EtlSink, EtlSource, EtlTransform};

fn ready_is_true(conditions: &[Condition]) -> bool {
    conditions.iter().any(|c| c.type_ == super::conditions::READY && c.status == "True")
}

/// The objects one scrape reports, as the caches hold them.
#[derive(Debug, Default)]
pub struct Objects {
    pub clusters: Vec<Arc<EtlRouterCluster>>,
    pub pipelines: Vec<Arc<EtlPipeline>>,
    pub sources: Vec<Arc<EtlSource>>,
    pub transforms: Vec<Arc<EtlTransform>>,
    pub sinks: Vec<Arc<EtlSink>>,
}

impl Objects {
    fn of(cache: &Cache) -> Objects {
        Objects {
            clusters: cache.router_clusters.state(),
            pipelines: cache.pipelines.state(),
            sources: cache.sources.state(),
            transforms: cache.transforms.state(),
            sinks: cache.sinks.state(),
        }
    }
}

/// One object's series: its phase among its kind's (`phases`, `current`;
/// an object without a status yet is Pending, as its reconcile sees it) and Ready.
struct Row<'a> {
    kind: &'static str,
    namespace: &'a str,
    name: &'a str,
    phases: &'a [String],
    current: Option<usize>,
    ready: bool,
}

impl<'a> Row<'a> {
    fn labels(&self) -> Vec<(&'static str, &'a str)> {
        vec![("kind", self.kind), ("namespace", self.namespace), ("name", self.name)]
    }
}

fn service_status(status: Option<&crate::crd::ServiceStatus>) -> (Option<crate::crd::Phase>, &[Condition]) {
    (status.and_then(|s| s.phase), status.map(|s| s.conditions.as_slice()).unwrap_or_default())
}

fn phase_names<P: std::fmt::Debug>(known: &[P]) -> Vec<String> {
    known.iter().map(|phase| format!("{phase:?}")).collect()
}

fn row<'a, P: PartialEq + Default + Copy>(
    kind: &'static str,
    object: &'a impl ResourceExt,
    (known, phases): (&[P], &'a [String]),
    phase: Option<P>,
    conditions: &[Condition],
) -> Row<'a> {
    let current = phase.unwrap_or_default();
    Row {
        kind,
        namespace: object.meta().namespace.as_deref().unwrap_or_default(),
        name: object.meta().name.as_deref().unwrap_or_default(),
        phases,
        current: known.iter().position(|known| *known == current),
        ready: ready_is_true(conditions),
    }
}

/// Writes a gauge family `name` with one series per item of `series`.
fn gauges<'a, I>(encoder: &mut DescriptorEncoder, name: &str, help: &str, series: I) -> std::fmt::Result
where
    I: IntoIterator<Item = (Vec<(&'static str, &'a str)>, i64)>,
{
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        family.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

/// Writes every per-object gauge of `objects`.
pub fn encode(objects: &Objects, mut encoder: DescriptorEncoder) -> std::fmt::Result {
    let (cluster_phases, pipeline_phases, service_phases) =
        (phase_names(&CLUSTER_PHASES), phase_names(&PIPELINE_PHASES), phase_names(&PHASES));
    let mut rows = Vec::with_capacity(objects.clusters.len() + objects.pipelines.len());
    for cluster in &objects.clusters {
        let status = cluster.status.as_ref();
        let conditions = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
        let known = (&CLUSTER_PHASES[..], &cluster_phases[..]);
        rows.push(row("EtlRouterCluster", cluster.as_ref(), known, status.and_then(|s| s.phase), conditions));
    }
    for pipeline in &objects.pipelines {
        let status = pipeline.status.as_ref();
        let conditions = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
        let known = (&PIPELINE_PHASES[..], &pipeline_phases[..]);
        rows.push(row("EtlPipeline", pipeline.as_ref(), known, status.and_then(|s| s.phase), conditions));
    }
    let known = (&PHASES[..], &service_phases[..]);
    for source in &objects.sources {
        let (phase, conditions) = service_status(source.status.as_ref());
        rows.push(row("EtlSource", source.as_ref(), known, phase, conditions));
    }
    for transform in &objects.transforms {
        let (phase, conditions) = service_status(transform.status.as_ref());
        rows.push(row("EtlTransform", transform.as_ref(), known, phase, conditions));
    }
    for sink in &objects.sinks {
        let (phase, conditions) = service_status(sink.status.as_ref());
        rows.push(row("EtlSink", sink.as_ref(), known, phase, conditions));
    }

    gauges(
        &mut encoder,
        "object_phase",
        "1 for each object's current phase, 0 for its other phases",
        rows.iter().flat_map(|row| {
            row.phases.iter().enumerate().map(move |(index, phase)| {
                let mut labels = row.labels();
                labels.push(("phase", phase.as_str()));
                (labels, i64::from(row.current == Some(index)))
            })
        }),
    )?;
    gauges(
        &mut encoder,
        "object_ready",
        "1 while an object's Ready condition is True",
        rows.iter().map(|row| (row.labels(), i64::from(row.ready))),
    )?;

    let clusters: Vec<_> = objects
        .clusters
        .iter()
        .map(|cluster| {
            let status = cluster.status.as_ref();
            let members = status.map(|s| s.members.as_slice()).unwrap_or_default();
            let labels = vec![
                ("namespace", cluster.meta().namespace.as_deref().unwrap_or_default()),
                ("name", cluster.meta().name.as_deref().unwrap_or_default()),
            ];
            let figures = [
                members.len() as i64,
                members.iter().filter(|m| m.healthy).count() as i64,
                i64::from(status.is_some_and(|s| s.leader_id.is_some())),
                status.and_then(|s| s.term).unwrap_or_default() as i64,
            ];
            (labels, figures)
        })
        .collect();
    let families = [
        ("router_cluster_members", "Raft members a router cluster's status lists"),
        ("router_cluster_members_healthy", "Members the router reports healthy, by router cluster"),
        ("router_cluster_leader", "1 while a router cluster's status names a Raft leader"),
        ("router_cluster_term", "A router cluster's Raft term (0: not known)"),
    ];
    for (index, (name, help)) in families.into_iter().enumerate() {
        gauges(
            &mut encoder,
            name,
            help,
            clusters.iter().map(|(labels, figures)| (labels.clone(), figures[index])),
        )?;
    }
    Ok(())
}

/// Registered once; writes the per-object gauges from the caches at each scrape.
pub struct PerObject {
    pub cache: Cache,
}

impl std::fmt::Debug for PerObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PerObject")
    }
}

impl Collector for PerObject {
    fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
        encode(&Objects::of(&self.cache), encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ClusterPhase, EtlRouterClusterStatus, MemberStatus};

    #[derive(Debug)]
    struct Scrape(Objects);

    impl Collector for Scrape {
        fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
            super::encode(&self.0, encoder)
        }
    }

    fn encoded(clusters: Vec<EtlRouterCluster>) -> String {
        let clusters = clusters.into_iter().map(Arc::new).collect();
        encoded_objects(Objects { clusters, ..Default::default() })
    }

    fn encoded_objects(objects: Objects) -> String {
        let mut registry = prometheus_client::registry::Registry::with_prefix("conveyor");
        registry.register_collector(Box::new(Scrape(objects)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    /// The seed's cluster, as `ns/name`.
    fn seed_cluster(name: &str) -> EtlRouterCluster {
        use serde::Deserialize;
        let seed = include_str!("../../deploy/examples/seed.yaml");
        let first = serde_norway::Deserializer::from_str(seed).next().unwrap();
        let mut cluster = EtlRouterCluster::deserialize(first).unwrap();
        cluster.metadata.name = Some(name.into());
        cluster.metadata.namespace = Some("ns".into());
        cluster
    }

    fn member(node_id: u64, healthy: bool) -> MemberStatus {
        MemberStatus { node_id, pod: format!("c-{}", node_id - 1), role: "Follower".into(), healthy }
    }

    #[test]
    fn a_degraded_cluster_is_told_by_name_with_its_members_and_leader() {
        let mut cluster = seed_cluster("c");
        cluster.status = Some(EtlRouterClusterStatus {
            phase: Some(ClusterPhase::Degraded),
            leader_id: Some(1),
            term: Some(7),
            members: vec![member(1, true), member(2, true), member(3, false)],
            ..Default::default()
        });
        let text = encoded(vec![cluster]);
        let object = r#"kind="EtlRouterCluster",namespace="ns",name="c""#;
        for line in [
            format!(r#"conveyor_object_phase{{{object},phase="Degraded"}} 1"#),
            format!(r#"conveyor_object_phase{{{object},phase="Ready"}} 0"#),
            format!(r#"conveyor_object_ready{{{object}}} 0"#),
            r#"conveyor_router_cluster_members{namespace="ns",name="c"} 3"#.into(),
            r#"conveyor_router_cluster_members_healthy{namespace="ns",name="c"} 2"#.into(),
            r#"conveyor_router_cluster_leader{namespace="ns",name="c"} 1"#.into(),
            r#"conveyor_router_cluster_term{namespace="ns",name="c"} 7"#.into(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn an_object_without_status_is_pending_and_not_ready() {
        let cluster = seed_cluster("new");
        let text = encoded(vec![cluster]);
        let object = r#"kind="EtlRouterCluster",namespace="ns",name="new""#;
        assert!(text.contains(&format!(r#"conveyor_object_phase{{{object},phase="Pending"}} 1"#)), "{text}");
        assert!(text.contains(&format!(r#"conveyor_object_ready{{{object}}} 0"#)), "{text}");
        assert!(text.contains(r#"conveyor_router_cluster_leader{namespace="ns",name="new"} 0"#), "{text}");
    }

    #[test]
    fn pipelines_and_services_show_their_kinds_phases_and_ready() {
        use crate::crd::{EtlPipelineSpec, EtlPipelineStatus, Phase};
        let mut pipeline = EtlPipeline::new("p", EtlPipelineSpec::default());
        pipeline.metadata.namespace = Some("ns".into());
        let ready = Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "PipelineRunning".into(),
            message: String::new(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
            observed_generation: Some(1),
        };
        pipeline.status = Some(EtlPipelineStatus {
            phase: Some(Phase::Disabled),
            conditions: vec![ready],
            ..Default::default()
        });
        let mut source: EtlSource = serde_json::from_value(serde_json::json!({
            "apiVersion": "conveyor.etl/v1", "kind": "EtlSource",
            "metadata": {"name": "s", "namespace": "ns"},
            "spec": {"grpc": {"endpoint": "s:50051"}},
        }))
        .unwrap();
        source.status = None;
        let text = encoded_objects(Objects {
            pipelines: vec![Arc::new(pipeline)],
            sources: vec![Arc::new(source)],
            ..Default::default()
        });
        let pipeline = r#"kind="EtlPipeline",namespace="ns",name="p""#;
        let source = r#"kind="EtlSource",namespace="ns",name="s""#;
        for line in [
            format!(r#"conveyor_object_phase{{{pipeline},phase="Disabled"}} 1"#),
            format!(r#"conveyor_object_phase{{{pipeline},phase="Pending"}} 0"#),
            format!(r#"conveyor_object_ready{{{pipeline}}} 1"#),
            format!(r#"conveyor_object_phase{{{source},phase="Pending"}} 1"#),
            format!(r#"conveyor_object_ready{{{source}}} 0"#),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(!text.contains(&format!(r#"{source},phase="Disabled""#)), "services have no Disabled phase");
    }
}
