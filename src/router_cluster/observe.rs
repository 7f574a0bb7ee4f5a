//! Reads what the reconciler needs from the watch caches, and polls the
//! health of every ready pod. Reads only; never writes, never GETs.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::build::{self, Names};
use super::observation::{MemberView, PodState, Probe, Role, RouterView, StatefulSetState};
use crate::crd::EtlRouterCluster;
use crate::router::proto::router::{GetClusterStatusResponse, NodeRole};
use crate::router::{ErrorClass, RouterError, ServiceType};
use crate::runtime::apply::controller_of;
use crate::runtime::cache::get;
use crate::runtime::clusters;
use crate::runtime::{Context, Error};

/// The objects a cluster owns, as keys of [`AppliedHashes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owned {
    ConfigMap,
    RaftService,
    ClientService,
    StatefulSet,
    PodDisruptionBudget,
}

/// The applied hash of each owned object that exists and is this cluster's.
pub type AppliedHashes = BTreeMap<Owned, String>;

/// The live objects under this cluster's derived names, whoever owns them.
#[derive(Clone, Debug, Default)]
pub struct Live {
    pub config_map: Option<Arc<ConfigMap>>,
    pub raft_service: Option<Arc<Service>>,
    pub client_service: Option<Arc<Service>>,
    pub stateful_set: Option<Arc<StatefulSet>>,
    pub pdb: Option<Arc<PodDisruptionBudget>>,
    /// The cluster's members (the pods its own StatefulSet controls), by ordinal.
    pub pods: Vec<Arc<Pod>>,
}

impl Live {
    pub fn meta(&self, kind: Owned) -> Option<&ObjectMeta> {
        match kind {
            Owned::ConfigMap => self.config_map.as_ref().map(|o| o.meta()),
            Owned::RaftService => self.raft_service.as_ref().map(|o| o.meta()),
            Owned::ClientService => self.client_service.as_ref().map(|o| o.meta()),
            Owned::StatefulSet => self.stateful_set.as_ref().map(|o| o.meta()),
            Owned::PodDisruptionBudget => self.pdb.as_ref().map(|o| o.meta()),
        }
    }

    /// The applied hashes of the objects that belong to the cluster with `uid`.
    pub fn applied(&self, uid: &str) -> AppliedHashes {
        let kinds = [
            Owned::ConfigMap,
            Owned::RaftService,
            Owned::ClientService,
            Owned::StatefulSet,
            Owned::PodDisruptionBudget,
        ];
        kinds
            .into_iter()
            .filter_map(|kind| {
                let meta = self.meta(kind).filter(|meta| owned_by(meta, uid))?;
                Some((kind, meta.annotations.as_ref()?.get(build::HASH_ANNOTATION)?.clone()))
            })
            .collect()
    }

    /// The StatefulSet, if it is this cluster's.
    pub fn own_stateful_set(&self, uid: &str) -> Option<&StatefulSet> {
        self.stateful_set.as_deref().filter(|set| owned_by(set.meta(), uid))
    }
}

fn owned_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|owner| owner.uid == uid)
}

/// The live objects of `cluster`, from the caches.
pub fn live(cluster: &EtlRouterCluster, ctx: &Context) -> Result<Live, Error> {
    let namespace =
        cluster.namespace().ok_or_else(|| Error::InvalidObject("no metadata.namespace".into()))?;
    let names = Names::of(&cluster.name_any());
    let cache = &ctx.cache;
    // Members only: a pod that merely carries the cluster's label is not one.
    let mut pods: Vec<Arc<Pod>> = match clusters::own_stateful_set(cache, cluster) {
        Some(set) => cache
            .pods
            .state()
            .into_iter()
            .filter(|pod| clusters::is_member(pod, &set) && build::ordinal_of(&pod.name_any()).is_some())
            .collect(),
        None => Vec::new(),
    };
    pods.sort_by_key(|pod| build::ordinal_of(&pod.name_any()));
    Ok(Live {
        config_map: get(&cache.config_maps, &namespace, &names.config_map),
        raft_service: get(&cache.services, &namespace, &names.raft_service),
        client_service: get(&cache.services, &namespace, &names.client_service),
        stateful_set: get(&cache.stateful_sets, &namespace, &names.stateful_set),
        pdb: get(&cache.pdbs, &namespace, &names.pdb),
        pods,
    })
}

/// What the health poll found.
pub struct Polled {
    /// One per pod that was asked `GetClusterStatus`.
    pub probes: Vec<Probe>,
    /// Pods whose router serves no `RouterAdmin`: found now, or remembered
    /// (by pod uid) and not asked again.
    pub without_admin: Vec<String>,
}

/// Router pods (by uid) whose router answered `GetClusterStatus` with
/// UNIMPLEMENTED: a router build does not change under a running pod, so each
/// is asked once, and its cluster's health comes from its pods. Bounded: past
/// `LIMIT` pods it starts over (each pod is then asked once more). Registered
/// with the context when the kind is wired.
#[derive(Debug, Default)]
pub struct PodsWithoutRouterAdmin(std::sync::Mutex<std::collections::HashSet<String>>);

impl PodsWithoutRouterAdmin {
    const LIMIT: usize = 4096;

    pub fn contains(&self, uid: &str) -> bool {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(uid)
    }

    pub fn insert(&self, uid: &str) {
        let mut set = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if set.len() >= Self::LIMIT {
            set.clear();
        }
        set.insert(uid.to_owned());
    }
}

/// One health poll of every ready pod with an IP, concurrently; a pod whose
/// router answered UNIMPLEMENTED before is not asked again.
pub async fn probe(pods: &[PodState], grpc_port: i32, ctx: &Context) -> Polled {
    let without_router_admin = ctx.state::<PodsWithoutRouterAdmin>();
    let polled = pods.iter().filter(|pod| pod.ready && !pod.terminating && pod.ip.is_some());
    let answers = join_all(polled.map(|pod| async move {
        if without_router_admin.contains(&pod.uid) {
            return Err(pod.name.clone());
        }
        let member = format!("{}:{grpc_port}", pod.ip.as_deref().unwrap_or_default());
        let outcome = match member_status(ctx, &member).await {
            Err(error) if error.class() == ErrorClass::Unimplemented => {
                without_router_admin.insert(&pod.uid);
                return Err(pod.name.clone());
            }
            result => result.map(router_view).map_err(|error| error.summary()),
        };
        Ok(Probe { pod: pod.name.clone(), outcome })
    }))
    .await;
    let (probes, without_admin) = answers.into_iter().partition::<Vec<_>, _>(Result::is_ok);
    Polled {
        probes: probes.into_iter().filter_map(Result::ok).collect(),
        without_admin: without_admin.into_iter().filter_map(Result::err).collect(),
    }
}

/// A member's `GetClusterStatus`, asked again at once when the answer misses
/// the deadline: one late answer is not a hang (counting it would turn the
/// cluster Degraded and wake its dependants until the next poll), while a
/// member that misses twice in a row is reported within two deadlines.
async fn member_status(ctx: &Context, member: &str) -> Result<GetClusterStatusResponse, RouterError> {
    match ctx.router.member_status(member).await {
        Err(RouterError::DeadlineExceeded { .. }) => {
            tracing::debug!(member, "health poll missed its deadline; asking again at once");
            ctx.router.member_status(member).await
        }
        answer => answer,
    }
}

/// Whether the cluster's `ServiceRegistry` answers: its registered services,
/// from the snapshot its services share, so at most one `ListServices` per
/// health interval reaches the router for the cluster and its services together.
pub async fn registry_check(cluster: &EtlRouterCluster, ctx: &Context) -> Result<(), String> {
    let namespace = cluster.namespace().unwrap_or_default();
    let members = clusters::members(&ctx.cache, cluster);
    let key = clusters::snapshot_key(&namespace, &cluster.name_any());
    ctx.registries
        .get(&key, &members, ctx.timing.health_interval, || {
            ctx.router.list_services(&members, ServiceType::Unspecified)
        })
        .await
        .map(drop)
        .map_err(|error| error.summary())
}

pub fn stateful_set_state(stateful_set: &StatefulSet, spec_applied: bool) -> StatefulSetState {
    let status = stateful_set.status.as_ref();
    StatefulSetState {
        replicas: stateful_set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        update_revision: status.and_then(|s| s.update_revision.clone()),
        up_to_date: status.and_then(|s| s.observed_generation) >= stateful_set.metadata.generation,
        spec_applied,
    }
}

pub fn pod_state(pod: &Pod) -> Option<PodState> {
    let name = pod.name_any();
    let ordinal = build::ordinal_of(&name)?;
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    Some(PodState {
        ordinal,
        uid: pod.uid().unwrap_or_default(),
        ready,
        ip: status.and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()),
        revision: pod.labels().get("controller-revision-hash").cloned(),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        name,
    })
}

fn router_view(response: GetClusterStatusResponse) -> RouterView {
    RouterView {
        node_id: response.node_id,
        leader_id: response.leader_id,
        term: response.term,
        members: response
            .nodes
            .iter()
            .map(|node| MemberView {
                node_id: node.node_id,
                role: match NodeRole::try_from(node.role) {
                    Ok(NodeRole::Leader) => Role::Leader,
                    Ok(NodeRole::Follower) => Role::Follower,
                    Ok(NodeRole::Candidate) => Role::Candidate,
                    Ok(NodeRole::Learner) => Role::Learner,
                    _ => Role::Unknown,
                },
                healthy: node.healthy,
            })
            .collect(),
    }
}
