//! Which router cluster a dependant (a pipeline or a service) belongs to,
//! where that cluster's members listen, and which dependants a cluster's
//! change concerns. Read from the watch caches only.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use super::reconciler::FINALIZER;
use super::references::ServiceResource;
use crate::crd::{ClusterRef, EtlRouterCluster};
use crate::runtime::apply::controller_of;
use crate::runtime::cache::Cache;

/// Label every router pod carries: the name of its EtlRouterCluster. It
/// selects the pods the operator watches; membership is the StatefulSet's
/// control ([`is_member`]), since anyone can label a pod.
pub const CLUSTER_LABEL: &str = "conveyor.etl/cluster";

/// The outcome of looking for a dependant's cluster.
#[derive(Clone, Debug)]
pub enum Resolution {
    Found(Arc<EtlRouterCluster>),
    /// No reference and no cluster in the namespace.
    NoneInNamespace,
    /// `spec.clusterRef` names a cluster the namespace does not have.
    Missing(String),
    /// No reference and several clusters: their names, sorted.
    Ambiguous(Vec<String>),
}

impl Resolution {
    /// What a person should know and do when no cluster was found.
    pub fn problem(&self, namespace: &str) -> Option<String> {
        match self {
            Resolution::Found(_) => None,
            Resolution::NoneInNamespace => Some(format!(
                "no EtlRouterCluster in namespace {namespace}: create one, or set spec.clusterRef.name"
            )),
            Resolution::Missing(name) => Some(format!(
                "spec.clusterRef names EtlRouterCluster {name:?}, which does not exist in namespace {namespace}"
            )),
            Resolution::Ambiguous(names) => Some(format!(
                "namespace {namespace} has several EtlRouterClusters ({}) and spec.clusterRef is not set: \
                 set spec.clusterRef.name to one of them",
                names.join(", ")
            )),
        }
    }
}

/// Condition of an EtlRouterCluster saying whether its router serves
/// `RouterAdmin`; False (reason `RouterAdminUnimplemented`) when it does not.
pub const ROUTER_ADMIN_CONDITION: &str = "RouterAdmin";

/// Whether the cluster can serve its services and pipelines: Ready, or
/// Degraded (a member down, a roll or a scale in progress: a leader and
/// quorum hold, or it would be Unavailable). Dependants of a Degraded
/// cluster stay as they are instead of all flapping with it.
pub fn serves_dependants(cluster: &EtlRouterCluster) -> bool {
    let status = cluster.status.as_ref();
    serves(status.and_then(|s| s.phase), status.is_some_and(|s| s.leader.is_some()))
}

/// Whether a cluster in `phase`, with a leader known or not, serves its dependants.
pub fn serves(phase: Option<crate::crd::ClusterPhase>, leader_known: bool) -> bool {
    use crate::crd::ClusterPhase;
    match phase {
        Some(ClusterPhase::Ready) => true,
        Some(ClusterPhase::Degraded) => leader_known,
        _ => false,
    }
}

/// What its dependants read of a router cluster: whether it is there to
/// stay, serves, answers RouterAdmin, and its members as its status reports
/// them (their pods' endpoints follow the pods, which the status follows).
/// Not its phase while it forms, nor its term or other conditions.
pub fn dependants_view(cluster: &EtlRouterCluster) -> impl std::hash::Hash + use<> {
    let status = cluster.status.as_ref();
    let members: Vec<(u64, String, bool)> = status
        .map(|s| s.members.iter().map(|m| (m.node_id, m.pod.clone(), m.healthy)).collect())
        .unwrap_or_default();
    (
        cluster.uid(),
        cluster.metadata.deletion_timestamp.is_some(),
        serves_dependants(cluster),
        without_router_admin(cluster),
        members,
        status.and_then(|s| s.leader.clone()),
        cluster.spec.ports.grpc,
    )
}

/// The cluster's own word that its router serves no `RouterAdmin`, when it
/// says so: dependants need not ask the router what it cannot answer.
pub fn without_router_admin(cluster: &EtlRouterCluster) -> Option<String> {
    let conditions = cluster.status.as_ref().map(|status| status.conditions.as_slice()).unwrap_or_default();
    crate::runtime::conditions::find(conditions, ROUTER_ADMIN_CONDITION)
        .filter(|condition| condition.status == "False")
        .map(|condition| condition.message.clone())
}

/// The key of a cluster's shared router snapshots (registered services, pipelines).
pub fn snapshot_key(namespace: &str, cluster: &str) -> String {
    format!("{namespace}/{cluster}")
}

/// `reference`'s cluster, else the only cluster in `namespace`.
pub fn resolve(
    clusters: &[Arc<EtlRouterCluster>],
    namespace: &str,
    reference: Option<&ClusterRef>,
) -> Resolution {
    let mut in_namespace: Vec<&Arc<EtlRouterCluster>> =
        clusters.iter().filter(|c| c.namespace().as_deref() == Some(namespace)).collect();
    in_namespace.sort_by_key(|c| c.name_any());
    match reference {
        Some(reference) => in_namespace
            .into_iter()
            .find(|c| c.name_any() == reference.name)
            .map(|c| Resolution::Found(c.clone()))
            .unwrap_or_else(|| Resolution::Missing(reference.name.clone())),
        None => match in_namespace.as_slice() {
            [] => Resolution::NoneInNamespace,
            [only] => Resolution::Found((*only).clone()),
            several => Resolution::Ambiguous(several.iter().map(|c| c.name_any()).collect()),
        },
    }
}

/// The cluster's own StatefulSet (named after it and controlled by it), from the cache.
pub fn own_stateful_set(cache: &Cache, cluster: &EtlRouterCluster) -> Option<Arc<StatefulSet>> {
    let namespace = cluster.namespace()?;
    let uid = cluster.uid()?;
    crate::runtime::cache::get(&cache.stateful_sets, &namespace, &cluster.name_any())
        .filter(|set| controller_of(&set.metadata).is_some_and(|owner| owner.uid == uid))
}

/// Whether `pod` is a member of the cluster whose StatefulSet is `set`: one
/// the set controls. A pod that only carries the cluster's label is not.
pub fn is_member(pod: &Pod, set: &StatefulSet) -> bool {
    let Some(set_uid) = set.metadata.uid.as_deref() else { return false };
    pod.namespace() == set.namespace()
        && controller_of(&pod.metadata).is_some_and(|owner| owner.uid == set_uid)
}

/// The gRPC endpoints (`podIP:grpcPort`) of `cluster`'s ready members, sorted.
pub fn members(cache: &Cache, cluster: &EtlRouterCluster) -> Vec<String> {
    let Some(set) = own_stateful_set(cache, cluster) else { return Vec::new() };
    member_endpoints(&cache.pods.state(), &set, cluster.spec.ports.grpc)
}

fn member_endpoints(pods: &[Arc<Pod>], set: &StatefulSet, grpc_port: i32) -> Vec<String> {
    let mut members: Vec<String> = pods
        .iter()
        .filter(|pod| is_member(pod, set) && pod.metadata.deletion_timestamp.is_none())
        .filter_map(|pod| {
            let status = pod.status.as_ref()?;
            let ready = status.conditions.as_ref()?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
            let ip = status.pod_ip.as_deref().filter(|ip| !ip.is_empty())?;
            ready.then(|| format!("{ip}:{grpc_port}"))
        })
        .collect();
    members.sort();
    members
}

/// The objects of `store` a change of `cluster` concerns: those in its
/// namespace that name it, or name none (they may resolve to it), or whose
/// status records it (they may be moving away from it).
pub fn dependants<K>(
    store: &Store<K>,
    cluster: &EtlRouterCluster,
    reference: fn(&K) -> Option<&ClusterRef>,
    recorded: fn(&K) -> Option<&str>,
) -> Vec<ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let name = cluster.name_any();
    store
        .state()
        .iter()
        .filter(|object| object.namespace() == cluster.namespace())
        .filter(|object| {
            reference(object).is_none_or(|r| r.name == name) || recorded(object) == Some(name.as_str())
        })
        .map(|object| ObjectRef::from_obj(object.as_ref()))
        .collect()
}

/// The pipelines and services (`"EtlPipeline a"`) whose status records
/// `cluster` and whose cleanup finalizer is still held: what they put on its
/// router has not been taken off yet.
pub fn still_on_router(cache: &Cache, cluster: &EtlRouterCluster) -> Vec<String> {
    fn on<K>(store: &Store<K>, cluster: &EtlRouterCluster, recorded: fn(&K) -> Option<&String>) -> Vec<String>
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        store
            .state()
            .iter()
            .filter(|object| object.namespace() == cluster.namespace())
            .filter(|object| recorded(object).is_some_and(|name| *name == cluster.name_any()))
            .filter(|object| object.finalizers().iter().any(|f| f == FINALIZER))
            .map(|object| format!("{} {}", K::kind(&()), object.name_any()))
            .collect()
    }
    let mut held = on(&cache.pipelines, cluster, |p| p.status.as_ref()?.cluster.as_ref());
    held.extend(on(&cache.sources, cluster, |s| s.service_status()?.cluster.as_ref()));
    held.extend(on(&cache.transforms, cluster, |s| s.service_status()?.cluster.as_ref()));
    held.extend(on(&cache.sinks, cluster, |s| s.service_status()?.cluster.as_ref()));
    held.sort();
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(namespace: &str, name: &str) -> Arc<EtlRouterCluster> {
        let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/seed.yaml"))
            .unwrap();
        let mut cluster: EtlRouterCluster =
            serde_norway::from_str(yaml.split("\n---\n").next().unwrap()).unwrap();
        cluster.metadata.name = Some(name.into());
        cluster.metadata.namespace = Some(namespace.into());
        Arc::new(cluster)
    }

    fn pod(name: &str, controller_uid: Option<&str>, ip: &str) -> Arc<Pod> {
        let owner = controller_uid.map(|uid| {
            serde_json::json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "c", "uid": uid, "controller": true}])
        });
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "a", "labels": {CLUSTER_LABEL: "c"}, "ownerReferences": owner},
                "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn members_are_the_ready_pods_the_clusters_stateful_set_controls_not_any_with_its_label() {
        let set: StatefulSet = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "c", "namespace": "a", "uid": "set-uid"}}),
        )
        .unwrap();
        let pods = [
            pod("c-1", Some("set-uid"), "10.0.0.2"),
            pod("c-0", Some("set-uid"), "10.0.0.1"),
            pod("stray-2", None, "10.0.0.9"),
            pod("other-0", Some("another-set-uid"), "10.0.0.8"),
        ];
        assert_eq!(member_endpoints(&pods, &set, 50051), ["10.0.0.1:50051", "10.0.0.2:50051"]);
        assert!(is_member(&pods[0], &set) && !is_member(&pods[2], &set) && !is_member(&pods[3], &set));
    }

    #[test]
    fn a_reference_wins_else_the_only_cluster_else_a_problem_naming_them() {
        let clusters = [cluster("a", "one"), cluster("b", "two"), cluster("b", "three")];
        let found = |r: Resolution| match r {
            Resolution::Found(c) => c.name_any(),
            other => panic!("{other:?}"),
        };
        assert_eq!(found(resolve(&clusters, "a", None)), "one");
        let two = ClusterRef { name: "two".into() };
        assert_eq!(found(resolve(&clusters, "b", Some(&two))), "two");
        assert!(matches!(resolve(&clusters, "a", Some(&two)), Resolution::Missing(n) if n == "two"));
        assert!(matches!(resolve(&clusters, "c", None), Resolution::NoneInNamespace));
        let ambiguous = resolve(&clusters, "b", None);
        assert!(matches!(&ambiguous, Resolution::Ambiguous(names) if names == &["three", "two"]));
        let message = ambiguous.problem("b").unwrap();
        assert!(message.contains("three, two") && message.contains("spec.clusterRef"), "{message}");
        assert!(resolve(&clusters, "a", Some(&two)).problem("a").unwrap().contains("\"two\""));
    }
}
