//! The EtlPipeline controller: triggered by what users change on a pipeline,
//! by changes of the router clusters it may run on, and by changes of the
//! sources, transforms and sinks it references (a service turning Ready
//! moves its pipelines on at once, without polling), and by the router
//! copies each cluster's list read shows changed behind the operator's back
//! (`runtime::router_pipelines`). A cluster's or a service's change
//! triggers its pipelines only when what a pipeline reads of it changed
//! ([`dependants_view`], [`service_view`]).

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::Controller;
use kube::runtime::reflector::ObjectRef;

use super::observation::ServiceState;
use super::observe::{references, service_state};
use crate::crd::EtlPipeline;
use crate::runtime::cache::{Cache, Watches};
use crate::runtime::clusters::{self, Resolution, dependants, dependants_view, serves_dependants};
use crate::runtime::references::{ServiceResource, pipelines_naming};
use crate::runtime::triggers::on_change;
use crate::runtime::{Context, arrival, reconciler};

/// What a pipeline's reconcile reads of a service it names: whether it is
/// usable and where it is assigned (see `observe::reference`).
fn service_view<K: ServiceResource>(service: &K) -> impl Hash + use<K> {
    let status = service.service_status();
    let registered = status.and_then(|s| s.registration_id.as_ref()).is_some();
    (
        service.uid(),
        service.meta().deletion_timestamp.is_some(),
        service_state(status),
        registered.then(|| service.grpc().endpoint.clone()),
        status.filter(|_| registered).map(|s| s.assigned_partitions.clone()),
    )
}

/// The pipelines that name `service` and that its change may move on.
fn naming<K: ServiceResource>(cache: &Cache, service: &K) -> Vec<ObjectRef<EtlPipeline>> {
    pipelines_naming(&cache.pipelines, service)
        .iter()
        .filter(|pipeline| may_move(pipeline, cache))
        .map(|pipeline| ObjectRef::from_obj(pipeline.as_ref()))
        .collect()
}

/// How long a new pipeline is not reconciled at all: while it has no
/// status, is inside the reference grace and what it names is not usable
/// yet, a reconcile would only find it waiting (and hold back its status).
/// It is reconciled when what it names becomes usable (the triggers below)
/// or when the grace ends, whichever is first; so a pipeline applied with
/// its cluster is reconciled once, and one deleted before then never.
fn first_wait(pipeline: &EtlPipeline, cache: &Cache) -> Option<Duration> {
    if pipeline.status.is_some() || pipeline.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let left = arrival::grace_left_now(pipeline.metadata.creation_timestamp.as_ref())?;
    (!may_move(pipeline, cache)).then_some(left)
}

/// Whether a change of what `pipeline` names may change it. One with a
/// status shows what it waits for, so any change may. One without has its
/// first wait held back (see `reconcile`): a change moves it on only once
/// its cluster serves and everything it names is Ready; until then its
/// reconcile at the end of the reference grace reports the wait.
fn may_move(pipeline: &EtlPipeline, cache: &Cache) -> bool {
    if pipeline.status.is_some() {
        return true;
    }
    let namespace = pipeline.namespace().unwrap_or_default();
    let cluster =
        clusters::resolve(&cache.router_clusters.state(), &namespace, pipeline.spec.cluster_ref.as_ref());
    matches!(cluster, Resolution::Found(cluster) if serves_dependants(&cluster))
        && references(pipeline, cache, &namespace)
            .iter()
            .all(|reference| reference.state == ServiceState::Ready)
}

pub fn controller(watches: &Watches, ctx: &Arc<Context>) -> Controller<EtlPipeline> {
    let cache = &ctx.cache;
    let store = cache.pipelines.clone();
    let (by_cluster, by_source, by_step, by_sink) =
        (cache.clone(), cache.clone(), cache.clone(), cache.clone());
    let held = cache.clone();
    // At the end of the grace only a pipeline still waiting is due: one
    // moved on meanwhile was reconciled and requeues itself, and one whose
    // references became usable was triggered by that change (it may still
    // be queued behind others when the grace ends).
    let still_waiting = cache.clone();
    let due = move |pipeline: &EtlPipeline| pipeline.status.is_none() && !may_move(pipeline, &still_waiting);
    let hold = move |pipeline: &EtlPipeline| first_wait(pipeline, &held);
    // Taken by the one controller a process runs; a second one waits on nothing.
    let mut list_changes = ctx.list_changes.take_changes();
    let copies_changed = futures::stream::poll_fn(move |cx| match list_changes.as_mut() {
        Some(changes) => changes.poll_recv(cx),
        None => std::task::Poll::Pending,
    });
    reconciler::controller_holding(watches.pipelines.subscribe(), store, ctx.clone(), hold, due)
        .reconcile_on(copies_changed)
        .watches_shared_stream(
            on_change(watches.router_clusters.subscribe(), cache.router_clusters.clone(), dependants_view),
            move |cluster| {
                let mut pipelines = dependants(
                    &by_cluster.pipelines,
                    &cluster,
                    |pipeline: &EtlPipeline| pipeline.spec.cluster_ref.as_ref(),
                    |pipeline: &EtlPipeline| pipeline.status.as_ref()?.cluster.as_deref(),
                );
                pipelines.retain(|pipeline| {
                    by_cluster
                        .pipelines
                        .get(pipeline)
                        .is_some_and(|pipeline| may_move(&pipeline, &by_cluster))
                });
                pipelines
            },
        )
        .watches_shared_stream(
            on_change(watches.sources.subscribe(), cache.sources.clone(), service_view),
            move |source| naming(&by_source, source.as_ref()),
        )
        .watches_shared_stream(
            on_change(watches.transforms.subscribe(), cache.transforms.clone(), service_view),
            move |step| naming(&by_step, step.as_ref()),
        )
        .watches_shared_stream(
            on_change(watches.sinks.subscribe(), cache.sinks.clone(), service_view),
            move |sink| naming(&by_sink, sink.as_ref()),
        )
}
