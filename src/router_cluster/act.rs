//! Acts on a decision: applies the objects whose content changed (after
//! checking they are this cluster's, on the server for names the caches do
//! not hold), and takes one roll step. The only part of a reconcile that
//! writes to the cluster's objects.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Preconditions};
use kube::{Api, ResourceExt};

use super::assess::RollStep;
use super::build::{Desired, HASH_ANNOTATION};
use super::observe::{AppliedHashes, Live, Owned};
use crate::crd::EtlRouterCluster;
use crate::runtime::apply::{apply, check_owned, check_owned_on_server};
use crate::runtime::policy::{Evicted, evict};
use crate::runtime::{Context, Error};

const KINDS: [(Owned, &str); 5] = [
    (Owned::ConfigMap, "ConfigMap"),
    (Owned::RaftService, "Service"),
    (Owned::ClientService, "Service"),
    (Owned::StatefulSet, "StatefulSet"),
    (Owned::PodDisruptionBudget, "PodDisruptionBudget"),
];

fn name_of(desired: &Desired, kind: Owned) -> Option<&str> {
    match kind {
        Owned::ConfigMap => desired.config_map.metadata.name.as_deref(),
        Owned::RaftService => desired.raft_service.metadata.name.as_deref(),
        Owned::ClientService => desired.client_service.metadata.name.as_deref(),
        Owned::StatefulSet => desired.stateful_set.metadata.name.as_deref(),
        Owned::PodDisruptionBudget => desired.pdb.as_ref().and_then(|pdb| pdb.metadata.name.as_deref()),
    }
}

/// Every object this step would apply or delete must be absent or this
/// cluster's; otherwise nothing at all is applied.
pub fn check_ownership(cluster: &EtlRouterCluster, desired: &Desired, live: &Live) -> Result<(), Error> {
    let uid = cluster.uid().unwrap_or_default();
    for (kind, kind_name) in KINDS {
        if let Some(name) =
            name_of(desired, kind).map(str::to_owned).or_else(|| live.meta(kind).and_then(|m| m.name.clone()))
        {
            check_owned(kind_name, &name, live.meta(kind), &uid)?;
        }
    }
    Ok(())
}

/// The objects this step applies that the owned caches do not hold must be
/// absent or this cluster's on the server too (a person's unlabelled object
/// is invisible to the caches); otherwise nothing at all is applied. Objects
/// the caches hold cost no read.
pub async fn check_ownership_on_server(
    cluster: &EtlRouterCluster,
    ctx: &Context,
    desired: &Desired,
    live: &Live,
) -> Result<(), Error> {
    let namespace =
        cluster.namespace().ok_or_else(|| Error::InvalidObject("no metadata.namespace".into()))?;
    let uid = cluster.uid().unwrap_or_default();
    let client = &ctx.client;
    for (kind, kind_name) in KINDS {
        let Some(name) = name_of(desired, kind).filter(|_| live.meta(kind).is_none()) else { continue };
        match kind {
            Owned::ConfigMap => {
                let api = Api::<ConfigMap>::namespaced(client.clone(), &namespace);
                check_owned_on_server(&api, kind_name, name, &uid).await?
            }
            Owned::RaftService | Owned::ClientService => {
                let api = Api::<Service>::namespaced(client.clone(), &namespace);
                check_owned_on_server(&api, kind_name, name, &uid).await?
            }
            Owned::StatefulSet => {
                let api = Api::<StatefulSet>::namespaced(client.clone(), &namespace);
                check_owned_on_server(&api, kind_name, name, &uid).await?
            }
            Owned::PodDisruptionBudget => {
                let api = Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace);
                check_owned_on_server(&api, kind_name, name, &uid).await?
            }
        }
    }
    Ok(())
}

/// Applies, by server-side apply, only the objects whose content hash differs
/// from the applied one. While shrinking, the disruption budget is tightened
/// before the StatefulSet loses a member; while growing, it loosens after.
pub async fn apply_changed(
    cluster: &EtlRouterCluster,
    ctx: &Context,
    desired: &Desired,
    applied: &AppliedHashes,
    shrinking: bool,
) -> Result<(), Error> {
    let namespace =
        cluster.namespace().ok_or_else(|| Error::InvalidObject("no metadata.namespace".into()))?;
    let client = &ctx.client;
    let changed = |kind: Owned, meta: &kube::api::ObjectMeta| {
        meta.annotations.as_ref().and_then(|a| a.get(HASH_ANNOTATION)) != applied.get(&kind)
    };
    if changed(Owned::ConfigMap, &desired.config_map.metadata) {
        apply(&Api::<ConfigMap>::namespaced(client.clone(), &namespace), &desired.config_map).await?;
    }
    let services = Api::<Service>::namespaced(client.clone(), &namespace);
    if changed(Owned::RaftService, &desired.raft_service.metadata) {
        apply(&services, &desired.raft_service).await?;
    }
    if changed(Owned::ClientService, &desired.client_service.metadata) {
        apply(&services, &desired.client_service).await?;
    }
    let stateful_sets = Api::<StatefulSet>::namespaced(client.clone(), &namespace);
    let apply_stateful_set = changed(Owned::StatefulSet, &desired.stateful_set.metadata);
    if apply_stateful_set && !shrinking {
        apply(&stateful_sets, &desired.stateful_set).await?;
    }
    let budgets = Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace);
    match &desired.pdb {
        Some(pdb) if changed(Owned::PodDisruptionBudget, &pdb.metadata) => apply(&budgets, pdb).await?,
        None if applied.contains_key(&Owned::PodDisruptionBudget) => {
            let name = super::build::Names::of(&cluster.name_any()).pdb;
            budgets.delete(&name, &DeleteParams::default()).await?;
        }
        _ => {}
    }
    if apply_stateful_set && shrinking {
        apply(&stateful_sets, &desired.stateful_set).await?;
    }
    Ok(())
}

/// Replaces one pod: a healthy member of a multi-member cluster through the
/// Eviction API (a budget or a drain in progress may refuse; the next
/// reconcile tries again), a broken one, or the only member of a one-member
/// cluster, by deletion (its budget allows no disruption, so an eviction
/// would be refused forever, and there is no quorum to guard: the roll the
/// user asked for takes it down whatever way it goes). Either only hits the
/// pod's current incarnation. Returns the refusal a user should read, if
/// the eviction was refused.
pub async fn roll(
    cluster: &EtlRouterCluster,
    ctx: &Context,
    step: &RollStep,
    live: &Live,
) -> Result<Option<String>, Error> {
    let Some(pod) =
        live.pods.iter().find(|pod| pod.name_any() == step.pod && pod.uid().as_deref() == Some(&step.uid))
    else {
        return Ok(None);
    };
    let namespace = cluster.namespace().unwrap_or_default();
    if step.healthy && cluster.spec.replicas > 1 {
        match evict(&ctx.client, pod).await? {
            Evicted::Yes => {
                tracing::info!(cluster = %cluster.name_any(), pod = %step.pod, "evicted pod to roll it to the current template")
            }
            Evicted::Refused(why) => {
                tracing::info!(cluster = %cluster.name_any(), pod = %step.pod, %why, "eviction refused for now; will retry");
                return Ok(Some(format!(
                    "the eviction of {} is refused for now, retrying: {why} (kubectl get pdb {} shows the budget)",
                    step.pod,
                    cluster.name_any()
                )));
            }
            Evicted::Gone => {}
        }
        return Ok(None);
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: Some(step.uid.clone()), resource_version: None }),
        ..DeleteParams::default()
    };
    match Api::<Pod>::namespaced(ctx.client.clone(), &namespace).delete(&step.pod, &params).await {
        Ok(_) => {
            tracing::info!(cluster = %cluster.name_any(), pod = %step.pod, healthy = step.healthy, "deleted a pod that ran an old template");
            Ok(None)
        }
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(None),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str, uid: &str) -> EtlRouterCluster {
        let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/seed.yaml"))
            .unwrap();
        let mut cluster: EtlRouterCluster =
            serde_norway::from_str(yaml.split("\n---\n").next().unwrap()).unwrap();
        cluster.metadata.name = Some(name.into());
        cluster.metadata.namespace = Some("ns".into());
        cluster.metadata.uid = Some(uid.into());
        cluster
    }

    #[test]
    fn a_colliding_derived_name_stops_the_apply_naming_object_and_owner() {
        let a = cluster("a", "uid-a");
        let a_raft = cluster("a-raft", "uid-b");
        let a_objects = super::super::build::desired(&a, 3).unwrap();
        // Cluster `a` owns the headless Service `a-raft`, the name cluster `a-raft` wants for its client Service.
        let live = Live {
            client_service: Some(std::sync::Arc::new(a_objects.raft_service.clone())),
            ..Live::default()
        };
        let wanted = super::super::build::desired(&a_raft, 3).unwrap();
        let error = check_ownership(&a_raft, &wanted, &live).unwrap_err();
        let message = error.to_string();
        assert_eq!(error.reason(), "ObjectOwnedElsewhere");
        assert!(message.contains("Service a-raft") && message.contains("EtlRouterCluster a)"), "{message}");
        // Its own objects pass.
        let own = Live {
            client_service: Some(std::sync::Arc::new(wanted.client_service.clone())),
            ..Live::default()
        };
        assert!(check_ownership(&a_raft, &wanted, &own).is_ok());
    }
}
