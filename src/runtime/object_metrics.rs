//! Per-object gauges the alerts need: each object's phase and Ready, and each
//! router cluster's members, leader and term. Like `conveyor_objects` they
//! are computed from the watch caches at scrape time, so an object's series
//! go away with it. Cardinality is bounded by the objects: one series per
//! object (per phase for `conveyor_object_phase`), and nothing labelled with
//! values that move, such as the leader's name.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;

use super::Cache;
use super::metrics::{CLUSTER_PHASES, PHASES, PIPELINE_PHASES};
use crate::crd::EtlRouterCluster;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    kind: &'static str,
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectPhaseLabels {
    kind: &'static str,
    namespace: String,
    name: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    namespace: String,
    name: String,
}

/// The gauges of one scrape, filled object by object.
#[derive(Clone, Debug, Default)]
pub struct ObjectGauges {
    phase: Family<ObjectPhaseLabels, Gauge>,
    ready: Family<ObjectLabels, Gauge>,
    members: Family<ClusterLabels, Gauge>,
    members_healthy: Family<ClusterLabels, Gauge>,
    leader: Family<ClusterLabels, Gauge>,
    term: Family<ClusterLabels, Gauge>,
}

fn ready_is_true(conditions: &[Condition]) -> bool {
    conditions.iter().any(|c| c.type_ == super::conditions::READY && c.status == "True")
}

impl ObjectGauges {
    /// Phase (every known phase, 1 for the current one; an object without a
    /// status yet is Pending, as its reconcile sees it) and Ready of one object.
    pub fn object<P>(
        &self,
        kind: &'static str,
        object: &impl ResourceExt,
        known: &[P],
        phase: Option<P>,
        conditions: &[Condition],
    ) where
        P: PartialEq + Default + std::fmt::Debug + Copy,
    {
        let namespace = object.namespace().unwrap_or_default();
        let name = object.name_any();
        let current = phase.unwrap_or_default();
        for known in known {
            let labels = ObjectPhaseLabels {
                kind,
                namespace: namespace.clone(),
                name: name.clone(),
                phase: format!("{known:?}"),
            };
            self.phase.get_or_create(&labels).set(i64::from(*known == current));
        }
        self.ready
            .get_or_create(&ObjectLabels { kind, namespace, name })
            .set(i64::from(ready_is_true(conditions)));
    }

    /// An EtlRouterCluster: its phase and Ready, and what its status says of
    /// its members, leader and term.
    pub fn cluster(&self, cluster: &EtlRouterCluster) {
        let status = cluster.status.clone().unwrap_or_default();
        self.object("EtlRouterCluster", cluster, &CLUSTER_PHASES, status.phase, &status.conditions);
        let labels =
            ClusterLabels { namespace: cluster.namespace().unwrap_or_default(), name: cluster.name_any() };
        self.members.get_or_create(&labels).set(status.members.len() as i64);
        let healthy = status.members.iter().filter(|m| m.healthy).count();
        self.members_healthy.get_or_create(&labels).set(healthy as i64);
        self.leader.get_or_create(&labels).set(i64::from(status.leader_id.is_some()));
        self.term.get_or_create(&labels).set(status.term.unwrap_or_default() as i64);
    }

    /// Every object in the caches.
    fn of(cache: &Cache) -> ObjectGauges {
        let gauges = ObjectGauges::default();
        for cluster in cache.router_clusters.state() {
            gauges.cluster(&cluster);
        }
        for pipeline in cache.pipelines.state() {
            let status = pipeline.status.clone().unwrap_or_default();
            gauges.object(
                "EtlPipeline",
                pipeline.as_ref(),
                &PIPELINE_PHASES,
                status.phase,
                &status.conditions,
            );
        }
        macro_rules! services {
            ($($store:ident => $kind:literal),*) => {$(
                for service in cache.$store.state() {
                    let status = service.status.clone().unwrap_or_default();
                    gauges.object($kind, service.as_ref(), &PHASES, status.phase, &status.conditions);
                }
            )*};
        }
        services!(sources => "EtlSource", transforms => "EtlTransform", sinks => "EtlSink");
        gauges
    }
}

impl Collector for ObjectGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let families: [(&str, &str, &dyn EncodeMetric); 6] = [
            ("object_phase", "1 for each object's current phase, 0 for its other phases", &self.phase),
            ("object_ready", "1 while an object's Ready condition is True", &self.ready),
            ("router_cluster_members", "Raft members a router cluster's status lists", &self.members),
            (
                "router_cluster_members_healthy",
                "Members the router reports healthy, by router cluster",
                &self.members_healthy,
            ),
            ("router_cluster_leader", "1 while a router cluster's status names a Raft leader", &self.leader),
            ("router_cluster_term", "A router cluster's Raft term (0: not known)", &self.term),
        ];
        for (name, help, family) in families {
            family.encode(encoder.encode_descriptor(name, help, None, family.metric_type())?)?;
        }
        Ok(())
    }
}

/// Registered once; builds [`ObjectGauges`] from the caches at each scrape.
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
        ObjectGauges::of(&self.cache).encode(encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ClusterPhase, EtlRouterClusterStatus, MemberStatus};

    fn encoded(gauges: ObjectGauges) -> String {
        let mut registry = prometheus_client::registry::Registry::with_prefix("conveyor");
        registry.register_collector(Box::new(gauges));
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
        let gauges = ObjectGauges::default();
        gauges.cluster(&cluster);
        let text = encoded(gauges);
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
        let gauges = ObjectGauges::default();
        gauges.cluster(&cluster);
        let text = encoded(gauges);
        let object = r#"kind="EtlRouterCluster",namespace="ns",name="new""#;
        assert!(text.contains(&format!(r#"conveyor_object_phase{{{object},phase="Pending"}} 1"#)), "{text}");
        assert!(text.contains(&format!(r#"conveyor_object_ready{{{object}}} 0"#)), "{text}");
        assert!(text.contains(r#"conveyor_router_cluster_leader{namespace="ns",name="new"} 0"#), "{text}");
    }
}
