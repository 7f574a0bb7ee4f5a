//! One reconcile of an EtlPipeline, and its cleanup: observe (caches, the
//! cluster's shared pipeline list) → assess → machine → submit when the
//! router's copy is out of sync (looked up first, read back after) → assess
//! again on what was read back → status, written only when it changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::assess::{Assessment, Submit, assess};
use super::conditions;
use super::machine::{Event, next_phase};
use super::observation::{Leaving, RouterCopy};
use super::observe::{Observed, namespace_of, observe, pipeline_id};
use super::remove::{Removal, remove};
use super::stages::{Reads, stages};
use super::submit::submit;
use crate::crd::{EtlPipeline, EtlPipelineStatus, Phase, PipelineStage};
use crate::router::ErrorClass;
use crate::router::mapping::PipelineRead;
use crate::runtime::clusters::{self, Resolution};
use crate::runtime::conditions::Wanted;
use crate::runtime::status::{self, synced};
use crate::runtime::{self, Context, Error, Reconciler, events};

/// Condition naming the source, steps and sink that are missing or not Ready.
pub const REFERENCES_RESOLVED: &str = "ReferencesResolved";

impl Reconciler for EtlPipeline {
    type Status = EtlPipelineStatus;

    /// The router may hold the pipeline from its first submission on, and a
    /// pipeline deleted right after it must still leave the router.
    fn needs_cleanup(&self) -> bool {
        true
    }

    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map(|status| status.conditions.as_slice()).unwrap_or_default()
    }

    fn status_with(&self, conditions: Vec<Condition>) -> EtlPipelineStatus {
        EtlPipelineStatus { conditions, ..self.status.clone().unwrap_or_default() }
    }

    #[tracing::instrument(
        name = "reconcile_pipeline",
        skip_all,
        fields(namespace = self.namespace().unwrap_or_default(), name = %self.name_any(), generation = self.metadata.generation, event, from, phase)
    )]
    async fn reconcile(&self, ctx: &Context) -> Result<Action, Error> {
        reconcile(self, ctx).await
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Action, Error> {
        cleanup(self, ctx).await
    }
}

fn step(ctx: &Context, from: Phase, assessment: &Assessment) -> Phase {
    let to = next_phase(from, assessment.event);
    if to != from {
        tracing::info!(?from, ?to, event = ?assessment.event, "phase transition");
        ctx.metrics.transition("EtlPipeline", &format!("{from:?}"), &format!("{to:?}"));
    }
    to
}

fn references_resolved(assessment: &Assessment) -> Wanted {
    let (resolved, message) = &assessment.references_resolved;
    let reason = if *resolved { "ReferencesReady" } else { "ReferencesNotReady" };
    Wanted::new(REFERENCES_RESOLVED, *resolved, reason, message.clone())
}

async fn reconcile(pipeline: &EtlPipeline, ctx: &Context) -> Result<Action, Error> {
    let generation = pipeline.metadata.generation.unwrap_or_default();
    let Observed { mut observation, cluster, members, desired, leaving_members, grace_left } =
        observe(pipeline, ctx).await?;
    let mut assessment = assess(&observation);
    let previous = pipeline.status.clone().unwrap_or_default();
    let current = previous.phase.unwrap_or_default();
    tracing::debug!(status = ?previous.phase, event = ?assessment.event, "observed");
    let mut phase = step(ctx, current, &assessment);
    let span = tracing::Span::current();
    span.record("event", tracing::field::debug(assessment.event));
    span.record("from", tracing::field::debug(current));

    let mut version = previous.router_version;
    let mut outcome: Result<Option<Submit>, Error> = Ok(None);
    let paused = runtime::paused(pipeline);
    // Left this reconcile: the cluster left, for the Events and the status.
    let mut moved_from = None;
    if let Some(leaving) = observation.leaving.clone()
        && (leaving.gone || (assessment.event == Event::Moving && !paused))
    {
        match leave(ctx, pipeline, &leaving, &leaving_members, cluster.as_deref()).await {
            Ok(()) => {
                observation.leaving = None;
                moved_from = Some(leaving.from);
                assessment = assess(&observation);
                phase = step(ctx, phase, &assessment);
            }
            Err(error) => outcome = Err(error),
        }
    }
    if let (Some(_), Some(_), false) = (assessment.submit, &cluster, paused) {
        match submit(ctx, &members, &desired, generation, observation.router.as_ref()).await {
            Ok(submitted) => {
                ctx.pipeline_reads.put(&desired.id, &members, submitted.response.clone());
                version = submitted.version.or(version);
                observation.router = Some(submitted.copy);
                assessment = assess(&observation);
                phase = step(ctx, phase, &assessment);
                outcome = Ok(submitted.call);
            }
            Err(error) => outcome = Err(error.into()),
        }
    }
    span.record("phase", tracing::field::debug(phase));

    let applied_generation = match &observation.router {
        Some(RouterCopy::Present { generation, .. }) => *generation,
        Some(RouterCopy::Absent | RouterCopy::Foreign) => None,
        // What the cluster left held is no longer applied anywhere.
        _ if moved_from.is_some() => None,
        _ => previous.applied_generation,
    };
    // The stats read, at most once per stats interval. It serves only the
    // stages' `errorsRising`: a new read is compared with the one before it.
    let reads = match &observation.router {
        Some(RouterCopy::Present { .. }) => {
            let stats = ctx.timing.stats_interval;
            let before = ctx.pipeline_reads.latest(&desired.id, &members);
            let (read, at) = ctx
                .pipeline_reads
                .get_timed(&desired.id, &members, stats, || async {
                    Ok(ctx.router.get_pipeline(&members, &desired.id).await?.as_ref().map(PipelineRead::of))
                })
                .await;
            let before = before.filter(|(before_at, _)| *before_at < at).map(|(_, before)| before);
            read.ok().map(|now| (before, now))
        }
        _ => None,
    };
    // Shown once the router holds the pipeline: while it waits, stages would
    // only churn the status as its services register one by one.
    let stages = match &observation.router {
        Some(RouterCopy::Present { .. }) => {
            let reads = reads.as_ref().and_then(|(before, now)| {
                Some(Reads {
                    before: before.as_deref().and_then(Option::as_ref),
                    now: now.as_ref().as_ref()?,
                })
            });
            stages(&desired, &observation.references, reads, &previous.stages)
        }
        _ => previous.stages.clone(),
    };
    let [ready, progressing, degraded] = conditions::conditions(phase, assessment.event, &assessment.message);
    let wanted = [
        ready,
        progressing,
        degraded,
        references_resolved(&assessment),
        synced(outcome.as_ref().map(|_| ())),
    ];
    let next = EtlPipelineStatus {
        phase: Some(phase),
        observed_generation: pipeline.metadata.generation,
        // Where it is submitted: the cluster it is leaving until it has left.
        cluster: match observation.leaving {
            Some(_) => previous.cluster.clone(),
            None => cluster.or(previous.cluster.clone()),
        },
        applied_generation,
        router_version: if applied_generation.is_some() { version } else { None },
        stages,
        conditions: runtime::conditions::merge(
            &previous.conditions,
            &wanted,
            pipeline.metadata.generation,
            &status::now(),
        ),
    };
    let transition = next.phase != previous.phase || ready_reason(&next) != ready_reason(&previous);
    let warning = conditions::event_type(phase, assessment.event) == "Warning";
    let quiet_wait = phase == Phase::Pending && assessment.event.is_wait();
    // A pipeline starts Pending, written or not (its first wait may be held back below).
    let story = status::Story::new(Some(current), phase, &previous.conditions, &next.conditions, warning)
        .quiet_when(quiet_wait);
    // A pipeline applied with what it names (one `kubectl apply`, a Helm
    // release) would write a Pending status that the next moment supersedes
    // when the cluster and services come: its first status waits for that
    // moment, or for the end of the reference grace (the requeue below).
    let first_wait_held = pipeline.status.is_none() && quiet_wait && grace_left.is_some() && outcome.is_ok();
    if !first_wait_held {
        status::write_changed(ctx, pipeline, &previous, &next, story).await?;
    }
    announce_stage_errors(ctx, pipeline, &previous.stages, &next.stages).await;
    // A repair of drift is always told; other writes only when no transition Event tells them.
    let drifted = previous.applied_generation == Some(generation) && moved_from.is_none();
    if let Ok(Some(call)) = &outcome
        && (drifted || !transition || moved_from.is_some())
    {
        let moved = moved_from.as_deref().zip(next.cluster.as_deref());
        announce_write(ctx, pipeline, *call, drifted, generation, moved).await?;
    }
    outcome.map_err(|error| Error::Reported(Box::new(error)))?;
    // A settled pipeline learns of its cluster, its services and its router
    // copy by their changes (the cluster's list read, see
    // `runtime::router_pipelines`); it is read again only for its stage figures.
    let interval = match phase {
        Phase::Provisioning => ctx.timing.progress_interval,
        Phase::Ready | Phase::Disabled => ctx.timing.stats_interval,
        _ => ctx.timing.health_interval,
    };
    // A reference still absent is reported as soon as the grace is over;
    // a pipeline not waiting has nothing to report then.
    let grace_left = grace_left.filter(|_| assessment.event.is_wait());
    Ok(Action::requeue(grace_left.map_or(interval, |left| interval.min(left))))
}

/// An Event for each stage whose errors started rising (a Warning) or stopped.
async fn announce_stage_errors(
    ctx: &Context,
    pipeline: &EtlPipeline,
    previous: &[PipelineStage],
    next: &[PipelineStage],
) {
    for stage in next {
        let was = previous.iter().find(|p| p.id == stage.id).is_some_and(|p| p.errors_rising);
        let (reason, note) = match (was, stage.errors_rising) {
            (false, true) => (
                "StageErrorsRising",
                format!(
                    "the router reports errors rising on stage {} ({}); its metrics and logs tell which records fail",
                    stage.id, stage.service
                ),
            ),
            (true, false) => {
                ("StageErrorsStopped", format!("the router reports no new errors on stage {}", stage.id))
            }
            _ => continue,
        };
        events::publish(ctx, pipeline, stage.errors_rising, reason, note).await;
    }
}

fn ready_reason(status: &EtlPipelineStatus) -> Option<&str> {
    runtime::conditions::find(&status.conditions, runtime::conditions::READY).map(|c| c.reason.as_str())
}

/// An Event for a router write that no phase change already tells: a spec
/// edit taken, or a copy the router lost or changed behind the operator's
/// back put back (a Warning: someone or something else wrote to the router).
async fn announce_write(
    ctx: &Context,
    pipeline: &EtlPipeline,
    call: Submit,
    drifted: bool,
    generation: i64,
    moved: Option<(&str, &str)>,
) -> Result<(), Error> {
    let id = pipeline_id(pipeline)?;
    let (reason, note) = match (call, moved) {
        (Submit::Create, Some((from, to))) => (
            "Moved",
            format!("created {id} on EtlRouterCluster {to} at generation {generation}, moved from {from}"),
        ),
        (call, _) => written(call, &id, drifted, generation),
    };
    events::publish(ctx, pipeline, drifted, reason, note).await;
    Ok(())
}

fn written(call: Submit, id: &str, drifted: bool, generation: i64) -> (&'static str, String) {
    match call {
        _ if drifted => (
            "DriftCorrected",
            format!(
                "the router's copy of {id} was {} behind the operator's back; put back generation {generation}",
                if call == Submit::Create { "deleted" } else { "changed" }
            ),
        ),
        Submit::Create => ("Created", format!("created {id} at generation {generation}")),
        Submit::Update => ("Updated", format!("updated {id} to generation {generation}")),
        Submit::Enable => ("Enabled", format!("enabled {id}")),
        Submit::Disable => ("Disabled", format!("disabled {id}")),
    }
}

/// Removes the pipeline from the cluster it is leaving (`gone`: nothing
/// left to remove), with an Event telling which.
async fn leave(
    ctx: &Context,
    pipeline: &EtlPipeline,
    leaving: &Leaving,
    members: &[String],
    target: Option<&str>,
) -> Result<(), Error> {
    let id = pipeline_id(pipeline)?;
    let (from, to) = (&leaving.from, target.unwrap_or_default());
    let (reason, note) = if leaving.gone {
        (
            "RouterClusterGone",
            format!("EtlRouterCluster {from} is gone: nothing to remove {id} from; moving to {to}"),
        )
    } else {
        match remove(ctx, members, &id).await {
            Ok(Removal::Deleted) => {
                ("RemovedFromCluster", format!("deleted {id} from EtlRouterCluster {from}; moving to {to}"))
            }
            Ok(Removal::Absent) => {
                ("RemovedFromCluster", format!("EtlRouterCluster {from} does not hold {id}; moving to {to}"))
            }
            Ok(Removal::Foreign) => (
                "RemovedFromCluster",
                format!(
                    "EtlRouterCluster {from} holds a pipeline {id} this operator did not submit: left alone; \
                     moving to {to}"
                ),
            ),
            // Such a router holds no pipelines.
            Err(error) if error.class() == ErrorClass::Unimplemented => (
                "RemovedFromCluster",
                format!("EtlRouterCluster {from} serves no RouterAdmin, so holds no {id}; moving to {to}"),
            ),
            Err(error) => return Err(error.into()),
        }
    };
    events::publish(ctx, pipeline, false, reason, note).await;
    Ok(())
}

/// Deletes the pipeline from its cluster. A cluster that is gone holds
/// nothing to delete, and one being deleted whose router cannot be reached
/// is going with its data: the pipeline is let go, with an Event saying so.
async fn cleanup(pipeline: &EtlPipeline, ctx: &Context) -> Result<Action, Error> {
    let namespace = namespace_of(pipeline)?;
    let status = pipeline.status.clone().unwrap_or_default();
    let reference = status.cluster.clone().map(|name| crate::crd::ClusterRef { name });
    let reference = reference.as_ref().or(pipeline.spec.cluster_ref.as_ref());
    let resolution = clusters::resolve(&ctx.cache.router_clusters.state(), &namespace, reference);
    let cluster = match resolution {
        Resolution::Found(cluster) => cluster,
        _ => {
            let note = match status.cluster {
                Some(name) => {
                    format!("EtlRouterCluster {name} is gone: nothing to delete the pipeline from; released")
                }
                None => "no router cluster holds the pipeline: nothing to delete; released".to_owned(),
            };
            events::publish(ctx, pipeline, false, "RouterClusterGone", note).await;
            return Ok(Action::await_change());
        }
    };
    let members = clusters::members(&ctx.cache, &cluster);
    let id = pipeline_id(pipeline)?;
    let name = cluster.name_any();
    let (foreign, note) = match remove(ctx, &members, &id).await {
        Err(error) if error.class() == ErrorClass::Unimplemented => {
            let note =
                format!("the router cannot delete pipelines ({error}); released without deleting {id}");
            events::publish(ctx, pipeline, true, "RouterAdminUnimplemented", note).await;
            return Ok(Action::await_change());
        }
        Err(error) if cluster.metadata.deletion_timestamp.is_some() => {
            let note = format!(
                "EtlRouterCluster {} is being deleted and its router cannot be reached ({error}): released without deleting {id}",
                cluster.name_any()
            );
            events::publish(ctx, pipeline, false, "RouterClusterGone", note).await;
            return Ok(Action::await_change());
        }
        Err(error) => return Err(error.into()),
        Ok(Removal::Foreign) => (
            true,
            format!(
                "EtlRouterCluster {name} holds a pipeline {id} this operator did not submit: left alone; released"
            ),
        ),
        Ok(Removal::Deleted | Removal::Absent) => {
            (false, format!("deleted {id} from EtlRouterCluster {name}"))
        }
    };
    let reason = if foreign { "PipelineConflict" } else { "Deleted" };
    events::publish(ctx, pipeline, foreign, reason, note).await;
    Ok(Action::await_change())
}
