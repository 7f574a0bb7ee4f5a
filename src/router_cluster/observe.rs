//! Reads what the reconciler needs: the owned objects' applied hashes, the
//! pods, and one health poll of every ready pod. Reads only; never writes.

use std::collections::BTreeMap;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{DynamicObject, ListParams};
use kube::{Api, Resource, ResourceExt};

use super::build::{self, Names, PdbApi};
use super::observation::{MemberView, Observation, PodState, Probe, Role, RouterView, StatefulSetState};
use super::validate::Validation;
use crate::controller::{Context, Error};
use crate::crd::EtlRouterCluster;
use crate::router::proto::router::{GetClusterStatusResponse, NodeRole};

/// The objects a cluster owns, as keys of [`AppliedHashes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owned {
    ConfigMap,
    RaftService,
    ClientService,
    StatefulSet,
    PodDisruptionBudget,
}

/// The applied hash of each owned object that exists.
pub type AppliedHashes = BTreeMap<Owned, String>;

/// An observation plus what the reconciler needs to act on it.
pub struct Observed {
    pub observation: Observation,
    pub applied: AppliedHashes,
}

pub async fn observe(
    cluster: &EtlRouterCluster,
    validation: &Validation,
    ctx: &Context,
) -> Result<Observed, Error> {
    let namespace = cluster.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let name = cluster.name_any();
    let names = Names::of(&name);
    let client = ctx.client.clone();

    let stateful_set =
        Api::<StatefulSet>::namespaced(client.clone(), &namespace).get_opt(&names.stateful_set).await?;
    let config_map =
        Api::<ConfigMap>::namespaced(client.clone(), &namespace).get_opt(&names.config_map).await?;
    let services = Api::<Service>::namespaced(client.clone(), &namespace);
    let raft_service = services.get_opt(&names.raft_service).await?;
    let client_service = services.get_opt(&names.client_service).await?;
    // Read even when disabled: a budget left from before must be removed.
    let resource = build::pdb_api_resource(ctx.pdb_api().await?);
    let pdb = Api::<DynamicObject>::namespaced_with(client.clone(), &namespace, &resource)
        .get_opt(&names.pdb)
        .await?;

    let mut applied = AppliedHashes::new();
    let mut record = |kind: Owned, annotations: Option<&BTreeMap<String, String>>| {
        if let Some(hash) = annotations.and_then(|a| a.get(build::HASH_ANNOTATION)) {
            applied.insert(kind, hash.clone());
        }
    };
    record(Owned::StatefulSet, stateful_set.as_ref().and_then(|o| o.meta().annotations.as_ref()));
    record(Owned::ConfigMap, config_map.as_ref().and_then(|o| o.meta().annotations.as_ref()));
    record(Owned::RaftService, raft_service.as_ref().and_then(|o| o.meta().annotations.as_ref()));
    record(Owned::ClientService, client_service.as_ref().and_then(|o| o.meta().annotations.as_ref()));
    record(Owned::PodDisruptionBudget, pdb.as_ref().and_then(|o| o.meta().annotations.as_ref()));

    let selector = format!("{}={name}", build::CLUSTER_LABEL);
    let pod_list =
        Api::<Pod>::namespaced(client, &namespace).list(&ListParams::default().labels(&selector)).await?;
    let mut pods: Vec<PodState> = pod_list.items.iter().filter_map(pod_state).collect();
    pods.sort_by_key(|pod| pod.ordinal);

    let grpc_port = cluster.spec.ports.grpc;
    let polled: Vec<&PodState> =
        pods.iter().filter(|pod| pod.ready && !pod.terminating && pod.ip.is_some()).collect();
    let probes = join_all(polled.iter().map(|pod| async move {
        let member = format!("{}:{grpc_port}", pod.ip.as_deref().unwrap_or_default());
        let outcome =
            ctx.router.member_status(&member).await.map(router_view).map_err(|error| error.to_string());
        Probe { pod: pod.name.clone(), outcome }
    }))
    .await;

    let observation = Observation {
        cluster_name: name,
        target_replicas: cluster.spec.replicas,
        spec_errors: validation.errors.clone(),
        stateful_set: stateful_set.as_ref().map(stateful_set_state),
        pods,
        probes,
    };
    Ok(Observed { observation, applied })
}

fn stateful_set_state(stateful_set: &StatefulSet) -> StatefulSetState {
    let status = stateful_set.status.as_ref();
    StatefulSetState {
        replicas: stateful_set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        update_revision: status.and_then(|s| s.update_revision.clone()),
        up_to_date: status.and_then(|s| s.observed_generation) >= stateful_set.metadata.generation,
    }
}

fn pod_state(pod: &Pod) -> Option<PodState> {
    let name = pod.name_any();
    let ordinal = build::ordinal_of(&name)?;
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    Some(PodState {
        ordinal,
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
        commit_index: response.commit_index,
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

/// Which PodDisruptionBudget API version the server serves.
pub async fn discover_pdb_api(client: &kube::Client) -> Result<PdbApi, Error> {
    let served = client.list_api_group_resources("policy/v1").await;
    Ok(match served {
        Ok(list) if list.resources.iter().any(|r| r.name == "poddisruptionbudgets") => PdbApi::V1,
        Ok(_) => PdbApi::V1Beta1,
        Err(kube::Error::Api(status)) if status.code == 404 => PdbApi::V1Beta1,
        Err(error) => return Err(error.into()),
    })
}
