//! One reconcile of an EtlRouterCluster: observe → validate → assess →
//! machine → act → status. Status is written even when acting fails, so
//! health is never hidden behind an error.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::act;
use super::assess::{Assessment, assess};
use super::build::{self, Desired};
use super::machine::next_phase;
use super::observation::{Observation, PodState};
use super::observe::{self, AppliedHashes, Live, Owned};
use super::status::{next_status, write_on_change};
use super::validate::{self, validate};
use crate::crd::{ClusterPhase, EtlRouterCluster, EtlRouterClusterStatus, StorageRetention};
use crate::runtime::{self, Context, Error, Reconciler, clusters};

impl Reconciler for EtlRouterCluster {
    type Status = EtlRouterClusterStatus;

    /// Only `retentionPolicy: Delete` asks for work at deletion: the volumes.
    fn needs_cleanup(&self) -> bool {
        self.spec.storage.as_ref().is_some_and(|storage| storage.retention_policy == StorageRetention::Delete)
    }

    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map(|status| status.conditions.as_slice()).unwrap_or_default()
    }

    fn status_with(&self, conditions: Vec<Condition>) -> EtlRouterClusterStatus {
        EtlRouterClusterStatus { conditions, ..self.status.clone().unwrap_or_default() }
    }

    #[tracing::instrument(
        name = "reconcile_router_cluster",
        skip_all,
        fields(namespace = self.namespace().unwrap_or_default(), name = %self.name_any(), generation = self.metadata.generation, event, from, phase)
    )]
    async fn reconcile(&self, ctx: &Context) -> Result<Action, Error> {
        let uid = self.uid().unwrap_or_default();
        let paused = runtime::paused(self);
        let live = observe::live(self, ctx)?;
        let own_set = live.own_stateful_set(&uid);
        let mut validation = validate(&self.name_any(), &self.spec);
        if let Some(set) = own_set {
            validation.errors.extend(validate::against_deployed(&self.spec, set));
        }
        let applied = live.applied(&uid);
        // Whether this generation's spec is in place at the current size: until
        // it is, no pod can run its template, so the cluster is not Ready for it.
        let desired_now = match own_set {
            Some(set) if validation.is_valid() => Some(build::desired(self, replicas_of(set))?),
            _ => None,
        };
        let spec_applied = desired_now.as_ref().is_some_and(|desired| matches(desired, &applied));
        let pods: Vec<PodState> = live.pods.iter().filter_map(|pod| observe::pod_state(pod)).collect();
        let polled = observe::probe(&pods, self.spec.ports.grpc, ctx).await;
        let health_unread = !polled.probes.iter().any(|probe| probe.outcome.is_ok());
        let registry_check = if health_unread && !polled.without_admin.is_empty() {
            Some(observe::registry_check(self, ctx).await)
        } else {
            None
        };
        let observation = Observation {
            cluster_name: self.name_any(),
            generation: self.metadata.generation.unwrap_or_default(),
            paused,
            target_replicas: self.spec.replicas,
            spec_errors: validation.errors.clone(),
            stateful_set: own_set.map(|set| observe::stateful_set_state(set, spec_applied)),
            pods,
            probes: polled.probes,
            without_admin: polled.without_admin,
            registry_check,
        };
        let mut assessment = assess(&observation);
        let current = self.status.as_ref().and_then(|status| status.phase).unwrap_or_default();
        let phase = next_phase(current, assessment.event);
        let span = tracing::Span::current();
        span.record("event", tracing::field::debug(assessment.event));
        span.record("from", tracing::field::debug(current));
        span.record("phase", tracing::field::debug(phase));
        if phase != current {
            tracing::info!(from = ?current, to = ?phase, event = ?assessment.event, "phase transition");
            ctx.metrics.transition("EtlRouterCluster", &format!("{current:?}"), &format!("{phase:?}"));
        }

        let outcome = if paused || !validation.is_valid() {
            Ok(None)
        } else {
            self.act(ctx, &assessment, &live, &applied, desired_now).await
        };
        if let Ok(Some(refusal)) = &outcome {
            assessment.message = format!("{}; {refusal}", assessment.message);
        }
        let status = next_status(self, phase, &assessment, &validation, paused, outcome.as_ref().map(|_| ()));
        let serving = clusters::serves(Some(phase), status.leader.is_some());
        write_on_change(self, ctx, status, assessment.event).await?;
        outcome.map_err(|error| Error::Reported(Box::new(error)))?;

        let settled = phase == ClusterPhase::Ready;
        // The pipeline list is read while the cluster serves pipelines (its
        // changes reach them); orphans are swept only when settled and not
        // paused. A router without RouterAdmin holds no pipelines, and is not asked for them.
        if serving && assessment.router_admin != Some(false) {
            runtime::orphans::poll(self, ctx, settled && !paused).await;
        }
        Ok(Action::requeue(if settled { ctx.timing.health_interval } else { ctx.timing.progress_interval }))
    }

    /// Runs before the cluster is deleted: owned objects go through owner
    /// references; data volumes only with `retentionPolicy: Delete`, and never
    /// while the cluster is paused. Pipelines and services still on its
    /// router are waited for (a namespace being deleted takes them all at
    /// once), so they leave the router while it runs.
    async fn cleanup(&self, ctx: &Context) -> Result<Action, Error> {
        if !self.needs_cleanup() || runtime::paused(self) {
            return Ok(Action::await_change());
        }
        let dependants = runtime::clusters::still_on_router(&ctx.cache, self);
        if !dependants.is_empty() {
            let error = Error::StillOnRouter { name: self.name_any(), dependants: dependants.join(", ") };
            runtime::reconciler::record_failure(self, &error, ctx).await?;
            return Err(Error::Reported(Box::new(error)));
        }
        let namespace =
            self.namespace().ok_or_else(|| Error::InvalidObject("no metadata.namespace".into()))?;
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
        let selector = format!("{}={}", build::CLUSTER_LABEL, self.name_any());
        for claim in claims.list(&ListParams::default().labels(&selector)).await? {
            claims.delete(&claim.name_any(), &DeleteParams::default()).await?;
        }
        Ok(Action::await_change())
    }
}

impl EtlRouterCluster {
    /// Applies this step's objects (all of them this cluster's, or none) and
    /// takes one roll step; returns the roll's refusal, if there was one.
    /// `desired_now` is what the current size builds, already computed; it is
    /// reused when this step keeps the size.
    async fn act(
        &self,
        ctx: &Context,
        assessment: &Assessment,
        live: &Live,
        applied: &AppliedHashes,
        desired_now: Option<Desired>,
    ) -> Result<Option<String>, Error> {
        let uid = self.uid().unwrap_or_default();
        let current = live.own_stateful_set(&uid).map(replicas_of);
        let desired = match desired_now {
            Some(desired) if current == Some(assessment.replicas_step) => desired,
            _ => build::desired(self, assessment.replicas_step)?,
        };
        act::check_ownership(self, &desired, live)?;
        act::check_ownership_on_server(self, ctx, &desired, live).await?;
        let shrinking = current.is_some_and(|replicas| replicas > assessment.replicas_step);
        act::apply_changed(self, ctx, &desired, applied, shrinking).await?;
        match &assessment.roll_next {
            Some(step) => act::roll(self, ctx, step, live).await,
            None => Ok(None),
        }
    }
}

fn replicas_of(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1)
}

/// Whether every object in `desired` is in place with exactly its content.
fn matches(desired: &Desired, applied: &AppliedHashes) -> bool {
    let hash = |meta: &kube::api::ObjectMeta| {
        meta.annotations.as_ref().and_then(|a| a.get(build::HASH_ANNOTATION)).cloned()
    };
    let pairs = [
        (Owned::ConfigMap, hash(&desired.config_map.metadata)),
        (Owned::RaftService, hash(&desired.raft_service.metadata)),
        (Owned::ClientService, hash(&desired.client_service.metadata)),
        (Owned::StatefulSet, hash(&desired.stateful_set.metadata)),
        (Owned::PodDisruptionBudget, desired.pdb.as_ref().and_then(|pdb| hash(&pdb.metadata))),
    ];
    pairs.into_iter().all(|(kind, wanted)| applied.get(&kind).cloned() == wanted)
}
