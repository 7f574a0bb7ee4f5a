//! One reconcile of an EtlRouterCluster: observe → assess → machine → act.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::assess::{Assessment, assess};
use super::build::{self, Desired, FIELD_MANAGER, HASH_ANNOTATION, Names};
use super::conditions::{self as cluster_conditions, READY};
use super::machine::{Event, next_phase};
use super::observe::{AppliedHashes, Owned, observe};
use super::validate::{Validation, validate};
use crate::conditions::{self, Wanted};
use crate::controller::{Context, Error};
use crate::crd::{ClusterPhase, EtlRouterCluster, EtlRouterClusterStatus, StorageRetention};

pub const FINALIZER: &str = "conveyor.etl/cleanup";
pub const PAUSED_ANNOTATION: &str = "conveyor.etl/paused";
const SYNCED: &str = "Synced";

/// Entry point for the controller: runs the finalizer helper around
/// `EtlRouterCluster::reconcile` and `cleanup`, and makes a failure visible.
pub async fn run(cluster: Arc<EtlRouterCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = cluster.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<EtlRouterCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, cluster.clone(), |event| async {
        match event {
            Finalizer::Apply(cluster) => cluster.reconcile(&ctx).await,
            Finalizer::Cleanup(cluster) => cluster.cleanup(&ctx).await,
        }
    })
    .await
    .map_err(|error| match error {
        kube::runtime::finalizer::Error::ApplyFailed(error)
        | kube::runtime::finalizer::Error::CleanupFailed(error) => error,
        other => Error::Finalizer(Box::new(other)),
    });
    match result {
        Ok(action) => {
            ctx.reset_retry_delay(&ObjectRef::from_obj(&*cluster));
            Ok(action)
        }
        Err(error) => {
            if let Err(report_error) = cluster.report_failure(&error, &ctx).await {
                tracing::warn!(%report_error, "could not record the failure on the cluster's status");
            }
            Err(error)
        }
    }
}

/// Requeue with jittered exponential backoff after a failure.
pub fn error_policy(cluster: Arc<EtlRouterCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.next_retry_delay(&ObjectRef::from_obj(&*cluster));
    tracing::warn!(cluster = %cluster.name_any(), %error, ?delay, "reconcile failed");
    Action::requeue(delay)
}

impl EtlRouterCluster {
    fn paused(&self) -> bool {
        self.annotations().get(PAUSED_ANNOTATION).is_some_and(|value| value == "true")
    }

    fn current_phase(&self) -> ClusterPhase {
        self.status.as_ref().and_then(|status| status.phase).unwrap_or_default()
    }

    fn existing_conditions(&self) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition] {
        self.status.as_ref().map(|status| status.conditions.as_slice()).unwrap_or_default()
    }

    #[tracing::instrument(
        name = "reconcile_router_cluster",
        skip_all,
        fields(namespace = self.namespace().unwrap_or_default(), name = %self.name_any(), event, phase)
    )]
    pub async fn reconcile(&self, ctx: &Context) -> Result<Action, Error> {
        let validation = validate(&self.name_any(), &self.spec);
        let observed = observe(self, &validation, ctx).await?;
        let assessment = assess(&observed.observation);
        let current = self.current_phase();
        let phase = next_phase(current, assessment.event);
        let span = tracing::Span::current();
        span.record("event", tracing::field::debug(assessment.event));
        span.record("phase", tracing::field::debug(phase));
        if phase != current {
            tracing::info!(from = ?current, to = ?phase, event = ?assessment.event, "phase transition");
        }
        let paused = self.paused();

        if !paused && validation.is_valid() {
            let desired = build::desired(self, assessment.replicas_step, ctx.pdb_api().await?)?;
            self.apply_changed(ctx, desired, &observed.applied).await?;
            if let Some(pod) = &assessment.roll_next {
                let namespace = self.namespace().unwrap_or_default();
                Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
                    .delete(pod, &DeleteParams::default())
                    .await?;
                tracing::info!(cluster = %self.name_any(), %pod, "deleted pod to roll it to the new template");
            }
        }

        let status = self.next_status(phase, &assessment, paused, &validation);
        self.write_status_and_event(ctx, status, assessment.event).await?;

        let settled = phase == ClusterPhase::Ready;
        Ok(Action::requeue(if settled { ctx.timing.health_interval } else { ctx.timing.progress_interval }))
    }

    /// Applies, by server-side apply, only the objects whose content hash differs from the applied one.
    async fn apply_changed(
        &self,
        ctx: &Context,
        desired: Desired,
        applied: &AppliedHashes,
    ) -> Result<(), Error> {
        let namespace = self.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
        let client = &ctx.client;
        let changed = |kind: Owned, meta: &kube::api::ObjectMeta| {
            let wanted = meta.annotations.as_ref().and_then(|a| a.get(HASH_ANNOTATION));
            wanted != applied.get(&kind)
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
        if changed(Owned::StatefulSet, &desired.stateful_set.metadata) {
            apply(&Api::<StatefulSet>::namespaced(client.clone(), &namespace), &desired.stateful_set).await?;
        }
        let resource = build::pdb_api_resource(ctx.pdb_api().await?);
        let budgets = Api::<DynamicObject>::namespaced_with(client.clone(), &namespace, &resource);
        match &desired.pdb {
            Some(pdb) if changed(Owned::PodDisruptionBudget, &pdb.metadata) => {
                let name = pdb.metadata.name.clone().unwrap_or_default();
                budgets.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(pdb)).await?;
            }
            None if applied.contains_key(&Owned::PodDisruptionBudget) => {
                budgets.delete(&Names::of(&self.name_any()).pdb, &DeleteParams::default()).await?;
            }
            _ => {}
        }
        Ok(())
    }

    fn next_status(
        &self,
        phase: ClusterPhase,
        assessment: &Assessment,
        paused: bool,
        validation: &Validation,
    ) -> EtlRouterClusterStatus {
        let existing = self.existing_conditions();
        let mut wanted: Vec<Wanted> =
            cluster_conditions::main_conditions(phase, assessment.event, &assessment.message).into();
        wanted.push(Wanted::new(SYNCED, true, "ReconcileSucceeded", "the last reconcile succeeded"));
        if paused || conditions::find(existing, cluster_conditions::PAUSED).is_some() {
            wanted.push(cluster_conditions::paused(paused));
        }
        if !validation.warnings.is_empty()
            || conditions::find(existing, cluster_conditions::SPEC_WARNING).is_some()
        {
            wanted.push(cluster_conditions::spec_warnings(&validation.warnings));
        }
        EtlRouterClusterStatus {
            phase: Some(phase),
            observed_generation: self.metadata.generation,
            ready_replicas: Some(assessment.ready_replicas),
            leader: assessment.leader_pod.clone(),
            leader_id: assessment.leader_id,
            term: assessment.term,
            commit_index: assessment.commit_index,
            members: assessment.members.clone(),
            conditions: conditions::merge(existing, &wanted, self.metadata.generation, &now()),
        }
    }

    /// Writes status only when it changed, and records an Event when the
    /// phase or the Ready reason changed.
    async fn write_status_and_event(
        &self,
        ctx: &Context,
        status: EtlRouterClusterStatus,
        event: Event,
    ) -> Result<(), Error> {
        let previous = self.status.clone().unwrap_or_default();
        if previous == status {
            return Ok(());
        }
        self.patch_status(ctx, &status).await?;

        let reason_of =
            |s: &EtlRouterClusterStatus| conditions::find(&s.conditions, READY).map(|c| c.reason.clone());
        let phase = status.phase.unwrap_or_default();
        if previous.phase != status.phase || reason_of(&previous) != reason_of(&status) {
            let ready = conditions::find(&status.conditions, READY);
            let reason = ready.map(|c| c.reason.clone()).unwrap_or_default();
            let message = ready.map(|c| c.message.as_str()).unwrap_or_default();
            let note = match previous.phase {
                Some(from) if from == phase => format!("{phase:?}: {message}"),
                Some(from) => format!("{from:?} → {phase:?}: {message}"),
                None => format!("new → {phase:?}: {message}"),
            };
            let warning = cluster_conditions::event_type(phase, event) == "Warning";
            self.publish(ctx, warning, reason, note).await?;
        }
        Ok(())
    }

    /// Server-side apply of the whole status, as the operator's one field manager.
    async fn patch_status(&self, ctx: &Context, status: &EtlRouterClusterStatus) -> Result<(), Error> {
        let namespace = self.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
        let api: Api<EtlRouterCluster> = Api::namespaced(ctx.client.clone(), &namespace);
        let body = serde_json::json!({ "apiVersion": "conveyor.etl/v1", "kind": "EtlRouterCluster", "status": status });
        api.patch_status(&self.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(body))
            .await?;
        Ok(())
    }

    async fn publish(&self, ctx: &Context, warning: bool, reason: String, note: String) -> Result<(), Error> {
        let event = KubeEvent {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason,
            note: Some(truncate(note, 1000)),
            action: "Reconcile".into(),
            secondary: None,
        };
        ctx.recorder.publish(&event, &self.object_ref(&())).await?;
        Ok(())
    }

    /// Records a failed reconcile as `Synced=False` and a Warning Event, once per distinct failure.
    async fn report_failure(&self, error: &Error, ctx: &Context) -> Result<(), Error> {
        let existing = self.existing_conditions();
        let message = error.to_string();
        let unchanged = conditions::find(existing, SYNCED)
            .is_some_and(|c| c.status == "False" && c.reason == error.reason() && c.message == message);
        if unchanged || self.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let mut status = self.status.clone().unwrap_or_default();
        let wanted = [Wanted::new(SYNCED, false, error.reason(), message.clone())];
        status.conditions = conditions::merge(existing, &wanted, self.metadata.generation, &now());
        self.patch_status(ctx, &status).await?;
        self.publish(ctx, true, error.reason().to_string(), message).await
    }

    /// Runs before the cluster is deleted: owned objects go through owner
    /// references; data volumes only when `storage.retentionPolicy: Delete`.
    pub async fn cleanup(&self, ctx: &Context) -> Result<Action, Error> {
        let retention = self.spec.storage.as_ref().map(|storage| storage.retention_policy);
        if retention == Some(StorageRetention::Delete) {
            let namespace = self.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
            let selector = format!("{}={}", build::CLUSTER_LABEL, self.name_any());
            for claim in claims.list(&ListParams::default().labels(&selector)).await? {
                claims.delete(&claim.name_any(), &DeleteParams::default()).await?;
            }
        }
        Ok(Action::await_change())
    }
}

async fn apply<K>(api: &Api<K>, object: &K) -> Result<(), Error>
where
    K: Resource + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
{
    let name = object.meta().name.clone().ok_or(Error::MissingField("metadata.name"))?;
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await?;
    Ok(())
}

/// Now, to the second: the API server stores condition times in seconds.
fn now() -> Time {
    let now = k8s_openapi::jiff::Timestamp::now();
    Time(k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

fn truncate(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}
