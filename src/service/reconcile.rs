//! One reconcile of a service, and its cleanup: observe (caches, the
//! cluster's shared registry snapshot) → assess → machine → register if
//! needed → status, written only when it changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::assess::{self, Assessment};
use super::conditions;
use super::leases::Leases;
use super::machine::{Event, next_phase};
use crate::crd::{ClusterPhase, EtlRouterCluster, Phase, ServiceStatus};
use crate::router::RegisterRequest;
use crate::router::mapping::{self, register_request};
use crate::router::proto::common::ServiceType;
use crate::runtime::arrival;
use crate::runtime::clusters::{self, Resolution};
use crate::runtime::references::{ServiceResource, pipelines_naming};
use crate::runtime::status::{self, synced};
use crate::runtime::{self, Context, Error, Reconciler, events, reconciler};

fn namespace_of<K: ServiceResource>(service: &K) -> Result<String, Error> {
    service.namespace().ok_or_else(|| Error::InvalidObject("no metadata.namespace".into()))
}

/// Held while the router may hold the registration: once registered, and
/// from the start whenever the endpoint is valid (so that a service deleted
/// right after its first registration is still deregistered).
pub fn needs_cleanup<K: ServiceResource>(service: &K) -> bool {
    let registered = service.service_status().is_some_and(|s| s.registration_id.is_some());
    registered || mapping::parse_endpoint(&service.grpc().endpoint).is_ok()
}

/// How long a reconcile after an operator restart waits for the first
/// heartbeats of a leased registration it resumes (a member that does not
/// answer by then shows in the next reconciles).
const RESUME_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// What the reconcile found, and where it would register.
struct Observed {
    assessment: Assessment,
    cluster: Option<String>,
    members: Vec<String>,
    /// The cluster the status records, when the spec now resolves to another.
    leaving: Option<Leaving>,
    /// The cluster's registry is per member and leased: the registration to keep there.
    leased: Option<RegisterRequest>,
}

/// What is left of the service's reference grace (see [`arrival`]).
fn grace_left<K: ServiceResource>(service: &K) -> Option<std::time::Duration> {
    arrival::grace_left_now(service.meta().creation_timestamp.as_ref())
}

/// A cluster the service is moving away from.
#[derive(Clone)]
struct Leaving {
    from: String,
    /// Its members; `None` when it is gone (or being deleted): nothing to deregister from.
    members: Option<Vec<String>>,
}

/// `recorded` is the cluster the service is registered with (its status),
/// `registration_id` the registration recorded there.
async fn observe<K: ServiceResource>(
    service: &K,
    ctx: &Context,
    namespace: &str,
    recorded: Option<&str>,
    registration_id: Option<&str>,
) -> Observed {
    let desired = register_request(K::KIND, namespace, &service.name_any(), service.grpc());
    let resolution = clusters::resolve(&ctx.cache.router_clusters.state(), namespace, service.cluster_ref());
    let (cluster, members) = match &resolution {
        Resolution::Found(cluster) => (Some(cluster.name_any()), clusters::members(&ctx.cache, cluster)),
        _ => (None, Vec::new()),
    };
    let leaving = leaving(ctx, namespace, recorded, cluster.as_deref());
    if let (Ok(_), Some(to), Some(Leaving { from, members: Some(_) })) = (&desired, &cluster, &leaving) {
        let assessment = assess::moving(from, to);
        return Observed { assessment, cluster, members, leaving, leased: None };
    }
    let arriving = grace_left(service).is_some();
    if let Some(assessment) = assess::blocker(&desired, &resolution, &members, namespace, arriving) {
        return Observed { assessment, cluster, members, leaving, leased: None };
    }
    let (Ok(desired), Some(name)) = (desired, cluster.as_deref()) else {
        unreachable!("no blocker means a valid endpoint and a cluster")
    };
    let key = clusters::snapshot_key(namespace, name);
    let leases = ctx.state::<Leases>();
    match leases.serves_heartbeat(&members).await {
        Ok(true) => {
            // The keeper lives in memory: like the machine, it is rebuilt from
            // the status, which records what was registered where; the first
            // round on each member then says which leases are alive.
            let status = service.service_status();
            let recorded =
                status.is_some_and(|s| s.registration_id.is_some() && s.cluster.as_deref() == Some(name));
            if recorded && !runtime::paused(service) && !leases.keeps(&key, &desired) {
                leases.keep(&key, &members, &desired);
                leases.settle(&key, &desired, RESUME_DEADLINE).await;
            }
            let assessment = assess::against_leases(&leases.view(&key, &desired), name);
            return Observed { assessment, cluster, members, leaving, leased: Some(desired) };
        }
        Ok(false) => {}
        Err(error) => {
            let message =
                format!("could not ask EtlRouterCluster {name} whether its registry is leased: {error}");
            let assessment = Assessment { event: Event::RouterUnreachable, message, view: None };
            return Observed { assessment, cluster, members, leaving, leased: None };
        }
    }
    let registry = ctx
        .registries
        .get(&clusters::snapshot_key(namespace, name), &members, ctx.timing.health_interval, || {
            ctx.router.list_services(&members, ServiceType::Unspecified)
        })
        .await;
    let assessment = assess::against_registry(&registry, &desired, registration_id, name);
    Observed { assessment, cluster, members, leaving, leased: None }
}

/// The cluster `recorded`, when `target` is another one.
fn leaving(ctx: &Context, namespace: &str, recorded: Option<&str>, target: Option<&str>) -> Option<Leaving> {
    let (from, target) = (recorded?, target?);
    if from == target {
        return None;
    }
    let reference = crate::crd::ClusterRef { name: from.to_owned() };
    let members = match clusters::resolve(&ctx.cache.router_clusters.state(), namespace, Some(&reference)) {
        Resolution::Found(old) if old.metadata.deletion_timestamp.is_none() => {
            Some(clusters::members(&ctx.cache, &old))
        }
        _ => None,
    };
    Some(Leaving { from: from.to_owned(), members })
}

fn step<K: ServiceResource>(ctx: &Context, service: &K, from: Phase, event: Event) -> Phase {
    let to = next_phase(from, event);
    if to != from {
        tracing::info!(kind = K::kind(&()).as_ref(), name = %service.name_any(), ?from, ?to, ?event, "phase transition");
        ctx.metrics.transition(&K::kind(&()), &format!("{from:?}"), &format!("{to:?}"));
    }
    to
}

#[tracing::instrument(name = "reconcile_service", skip_all, fields(event, from, phase))]
pub async fn reconcile<K: ServiceResource + Reconciler>(service: &K, ctx: &Context) -> Result<Action, Error> {
    let namespace = namespace_of(service)?;
    let previous = service.service_status().cloned().unwrap_or_default();
    let mut registration_id = previous.registration_id.clone();
    let Observed { mut assessment, mut cluster, mut members, mut leaving, mut leased } =
        observe(service, ctx, &namespace, previous.cluster.as_deref(), registration_id.as_deref()).await;
    let current = previous.phase.unwrap_or_default();
    let mut phase = step(ctx, service, current, assessment.event);
    let span = tracing::Span::current();
    span.record("event", tracing::field::debug(assessment.event));
    span.record("from", tracing::field::debug(current));

    let paused = runtime::paused(service);
    let mut outcome = Ok(());
    if let Some(left) = leaving.clone()
        && (left.members.is_none() || (assessment.event == Event::Moving && !paused))
    {
        match leave(service, ctx, &namespace, &left, cluster.as_deref()).await {
            Ok(()) => {
                // The registration recorded was the old cluster's.
                registration_id = None;
                let target = cluster.clone();
                let observed = observe(service, ctx, &namespace, target.as_deref(), None).await;
                (assessment, cluster, members, leaving, leased) = (
                    observed.assessment,
                    observed.cluster,
                    observed.members,
                    observed.leaving,
                    observed.leased,
                );
                phase = step(ctx, service, phase, assessment.event);
            }
            Err(error) => outcome = Err(error),
        }
    }
    span.record("phase", tracing::field::debug(phase));

    if outcome.is_ok() {
        outcome = match (assessment.event, cluster.as_deref(), leased) {
            // Kept (idempotent, no router call): the lease keeper registers on every member and renews.
            (_, Some(cluster), Some(request)) if !paused => {
                let leases = ctx.state::<Leases>();
                let key = clusters::snapshot_key(&namespace, cluster);
                leases.keep(&key, &members, &request);
                registration_id = leases.view(&key, &request).registration_id.or(registration_id);
                Ok(())
            }
            (Event::NotRegistered, Some(cluster), None) if !paused => {
                register(service, ctx, &namespace, cluster, &members)
                    .await
                    .map(|id| registration_id = Some(id))
            }
            _ => Ok(()),
        };
    }
    let view = assessment.view.as_ref();
    let wanted = [
        conditions::ready(phase, assessment.event, &assessment.message),
        synced(outcome.as_ref().map(|_| ())),
    ];
    let next = ServiceStatus {
        phase: Some(phase),
        observed_generation: service.meta().generation,
        // Where it is registered: the cluster it is leaving until it has left.
        cluster: match leaving {
            Some(_) => previous.cluster.clone(),
            None => cluster.or(previous.cluster.clone()),
        },
        registration_id,
        health: view.map(|v| assess::health_name(assess::health_of(v)).to_owned()),
        assigned_partitions: view.map(|v| v.assigned_partitions.clone()).unwrap_or_default(),
        conditions: runtime::conditions::merge(
            &previous.conditions,
            &wanted,
            service.meta().generation,
            &status::now(),
        ),
    };
    let warning = conditions::event_type(phase, assessment.event) == "Warning";
    let quiet_wait = phase == Phase::Pending && assessment.event == Event::ClusterNotReady;
    let story = status::Story::new(previous.phase, phase, &previous.conditions, &next.conditions, warning)
        .quiet_when(quiet_wait);
    // A service applied with its cluster (one `kubectl apply`, a Helm
    // release) would write a Pending status that the cluster's Ready
    // supersedes a moment later: its first status waits for that moment (the
    // cluster's change triggers it) or for the end of the reference grace
    // (the requeue below), as a new pipeline's does.
    let first_wait_held =
        service.service_status().is_none() && quiet_wait && grace_left(service).is_some() && outcome.is_ok();
    if !first_wait_held {
        status::write_changed(ctx, service, &previous, &next, story).await?;
    }
    outcome.map_err(|error| Error::Reported(Box::new(error)))?;
    let interval = match phase {
        Phase::Provisioning => ctx.timing.progress_interval,
        _ => ctx.timing.health_interval,
    };
    // A cluster still absent is reported as soon as the grace is over; a
    // service not waiting has nothing to report then.
    let grace = grace_left(service).filter(|_| quiet_wait);
    Ok(Action::requeue(grace.map_or(interval, |left| interval.min(left))))
}

async fn register<K: ServiceResource>(
    service: &K,
    ctx: &Context,
    namespace: &str,
    cluster: &str,
    members: &[String],
) -> Result<String, Error> {
    let request = register_request(K::KIND, namespace, &service.name_any(), service.grpc())
        .map_err(|error| Error::InvalidObject(error.to_string()))?;
    let response = ctx.router.register(members, request).await;
    // Whatever the answer, the cluster's snapshot may no longer say what the router holds.
    ctx.registries.invalidate(&clusters::snapshot_key(namespace, cluster));
    Ok(response?.registration_id)
}

/// Deregisters from the cluster the service is leaving (one that is gone
/// holds nothing), with an Event telling which.
async fn leave<K: ServiceResource>(
    service: &K,
    ctx: &Context,
    namespace: &str,
    leaving: &Leaving,
    target: Option<&str>,
) -> Result<(), Error> {
    let service_id = mapping::service_id(namespace, &service.name_any());
    let (from, to) = (&leaving.from, target.unwrap_or_default());
    let (reason, note) = match &leaving.members {
        None => (
            "RouterClusterGone",
            format!(
                "EtlRouterCluster {from} is gone: nothing to deregister {service_id} from; moving to {to}"
            ),
        ),
        Some(members) => {
            let key = clusters::snapshot_key(namespace, from);
            match ctx.state::<Leases>().serves_heartbeat(members).await {
                Ok(true) => ctx.state::<Leases>().release(&key, members, &service_id).await?,
                _ => ctx.router.deregister(members, &service_id).await?,
            }
            ctx.registries.invalidate(&key);
            (
                "Deregistered",
                format!("deregistered {service_id} from EtlRouterCluster {from}; moving to {to}"),
            )
        }
    };
    events::publish(ctx, service, false, reason, note).await;
    Ok(())
}

/// Deregisters from the cluster it registered with; a cluster that is gone
/// has nothing to deregister from, and one being deleted whose router cannot
/// be reached is going with its registry: the service is let go.
pub async fn cleanup<K: ServiceResource + Reconciler>(service: &K, ctx: &Context) -> Result<Action, Error> {
    let namespace = namespace_of(service)?;
    let holders = holders(service, ctx);
    if !holders.is_empty() {
        let error = Error::InUse {
            kind: K::kind(&()).into_owned(),
            name: service.name_any(),
            holders: holders.join(", "),
        };
        reconciler::record_failure(service, &error, ctx).await?;
        return Err(Error::Reported(Box::new(error)));
    }
    let status = service.service_status().cloned().unwrap_or_default();
    let resolution = match &status.cluster {
        Some(name) => clusters::resolve(
            &ctx.cache.router_clusters.state(),
            &namespace,
            Some(&crate::crd::ClusterRef { name: name.clone() }),
        ),
        None => clusters::resolve(&ctx.cache.router_clusters.state(), &namespace, service.cluster_ref()),
    };
    let cluster = match resolution {
        Resolution::Found(cluster) => cluster,
        _ => {
            let note = match status.cluster {
                Some(name) => {
                    format!("EtlRouterCluster {name} is gone: nothing to deregister from; released")
                }
                None => {
                    "no router cluster holds the registration: nothing to deregister; released".to_owned()
                }
            };
            events::publish(ctx, service, false, "RouterClusterGone", note).await;
            return Ok(Action::await_change());
        }
    };
    let recorded = status.registration_id.is_some() || status.phase == Some(Phase::Provisioning);
    let members = clusters::members(&ctx.cache, &cluster);
    let service_id = mapping::service_id(&namespace, &service.name_any());
    let key = clusters::snapshot_key(&namespace, &cluster.name_any());
    if let Ok(true) = ctx.state::<Leases>().serves_heartbeat(&members).await {
        ctx.state::<Leases>().release(&key, &members, &service_id).await?;
        let note =
            format!("deregistered {service_id} from every member of EtlRouterCluster {}", cluster.name_any());
        events::publish(ctx, service, false, "Deregistered", note).await;
        return Ok(Action::await_change());
    }
    // Deregistered even when the status records no registration: the
    // operator may have stopped between Register and its status write
    // (found by the chaos suite's kill -9). Deregistering an unknown service
    // succeeds; when the router cannot be asked, only a cluster that never
    // served is known to hold nothing.
    match ctx.router.deregister(&members, &service_id).await {
        Ok(()) => {}
        Err(error) if cluster.metadata.deletion_timestamp.is_some() => {
            let note = format!(
                "EtlRouterCluster {} is being deleted and its router cannot be reached ({error}): released without deregistering {service_id}",
                cluster.name_any()
            );
            events::publish(ctx, service, false, "RouterClusterGone", note).await;
            return Ok(Action::await_change());
        }
        Err(error) if recorded || has_served(&cluster) => return Err(error.into()),
        Err(error) => {
            tracing::debug!(%error, %service_id, "no registration recorded and the router never served; released");
            return Ok(Action::await_change());
        }
    }
    ctx.registries.invalidate(&clusters::snapshot_key(&namespace, &cluster.name_any()));
    let note = format!("deregistered {service_id} from EtlRouterCluster {}", cluster.name_any());
    events::publish(ctx, service, false, "Deregistered", note).await;
    Ok(Action::await_change())
}

/// Whether the cluster has served since its pods were made (Ready, Degraded
/// or Unavailable): a registration may then be held that the status does
/// not record, because the operator stopped between Register and its status
/// write. A cluster still forming has accepted none.
fn has_served(cluster: &EtlRouterCluster) -> bool {
    let phase = cluster.status.as_ref().and_then(|status| status.phase);
    matches!(phase, Some(ClusterPhase::Ready | ClusterPhase::Degraded | ClusterPhase::Unavailable))
}

/// The pipelines that still reference `service` ("EtlPipeline a, EtlPipeline
/// b"); one whose own cleanup is done (deleting, no finalizer left) no longer counts.
fn holders<K: ServiceResource>(service: &K, ctx: &Context) -> Vec<String> {
    let mut holders: Vec<String> = pipelines_naming(&ctx.cache.pipelines, service)
        .iter()
        .filter(|pipeline| {
            pipeline.metadata.deletion_timestamp.is_none() || !pipeline.finalizers().is_empty()
        })
        .map(|pipeline| format!("EtlPipeline {}", pipeline.name_any()))
        .collect();
    holders.sort();
    holders
}

/// The conditions of a service's status, empty without one.
pub fn conditions_of(status: Option<&ServiceStatus>) -> &[Condition] {
    status.map(|s| s.conditions.as_slice()).unwrap_or_default()
}
