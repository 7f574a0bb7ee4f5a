//! What a kind implements to run on the runtime, and the generic entry point
//! around its reconcile: cache readiness, the cleanup finalizer (only while
//! the kind needs one), failure reporting and retry backoff.

use std::future::Future;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::conditions;
use super::status;
use super::{Context, Error, events};

/// The finalizer a kind holds while deleting it needs work beyond garbage collection.
pub const FINALIZER: &str = "conveyor.etl/cleanup";

/// A kind of resource the operator reconciles.
pub trait Reconciler:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    type Status: Serialize + Clone + Default + Send + Sync;

    /// Whether deleting the resource now needs [`Reconciler::cleanup`]; the
    /// finalizer is held only while this is true.
    fn needs_cleanup(&self) -> bool;

    /// The status's conditions, empty when there is no status yet.
    fn conditions(&self) -> &[Condition];

    /// The current status with `conditions` in place of its conditions.
    fn status_with(&self, conditions: Vec<Condition>) -> Self::Status;

    /// Observe, decide, act, write status: one pass.
    fn reconcile(&self, ctx: &Context) -> impl Future<Output = Result<Action, Error>> + Send;

    /// Work before the resource may go (called only while the finalizer is held).
    fn cleanup(&self, ctx: &Context) -> impl Future<Output = Result<Action, Error>> + Send;
}

/// The controller's reconcile function for any kind: one `reconcile` span
/// naming the object and, when the trace is sampled, its trace id, so every
/// log line inside carries both.
pub async fn run<K: Reconciler>(object: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = tracing::info_span!(
        "reconcile",
        kind = K::kind(&()).as_ref(),
        object = format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any()),
        generation = object.meta().generation,
        trace_id = tracing::field::Empty,
        result = tracing::field::Empty,
    );
    if let Some(trace_id) = crate::telemetry::trace_id(&span) {
        span.record("trace_id", trace_id);
    }
    async move {
        let object = ctx.written.fresher(object);
        reconcile_and_report(object, ctx).await
    }
    .instrument(span)
    .await
}

async fn reconcile_and_report<K: Reconciler>(object: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let wait = ctx.timing.cache_sync_timeout;
    let result = match tokio::time::timeout(wait, ctx.cache.ready()).await {
        Ok(()) => with_finalizer(&object, &ctx).await,
        Err(_) => Err(Error::CachesNotSynced(wait)),
    };
    let error = result.as_ref().err().map(|error| error.label());
    tracing::Span::current().record("result", error.unwrap_or("ok"));
    ctx.metrics.reconciled(&K::kind(&()), started.elapsed(), error);
    match &result {
        Ok(_) => ctx.forget_retries(&ObjectRef::from_obj(&*object)),
        Err(Error::Reported(_)) => {}
        Err(error) => {
            if let Err(report_error) = record_failure(&*object, error, &ctx).await {
                tracing::warn!(%report_error, "could not record the failure on the resource's status");
            }
        }
    }
    result
}

async fn with_finalizer<K: Reconciler>(object: &Arc<K>, ctx: &Context) -> Result<Action, Error> {
    let deleting = object.meta().deletion_timestamp.is_some();
    let uid = object.uid().unwrap_or_default();
    let held = object.finalizers().iter().any(|f| f == FINALIZER);
    let settled = held || deleting || !object.needs_cleanup();
    if ctx.finalizers.added(&uid, settled).await {
        // Our finalizer patch landed; this cached copy predates it.
        return object.reconcile(ctx).await;
    }
    if !held && !object.needs_cleanup() {
        return if deleting { Ok(Action::await_change()) } else { object.reconcile(ctx).await };
    }
    if held && !deleting && !object.needs_cleanup() {
        // No longer needed (e.g. the retention policy changed back): let go of it.
        release_finalizer(&**object, ctx).await?;
        return object.reconcile(ctx).await;
    }
    let namespace = object.namespace().ok_or_else(|| Error::InvalidObject("no metadata.namespace".into()))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let outcome = finalizer(&api, FINALIZER, object.clone(), |event| async {
        match event {
            Finalizer::Apply(object) => object.reconcile(ctx).await,
            Finalizer::Cleanup(object) => object.cleanup(ctx).await,
        }
    })
    .await;
    match outcome {
        Ok(action) if held || deleting => Ok(action),
        Ok(_) => {
            // The helper only added the finalizer, leaving the reconcile to the
            // patch's watch event; that event does not trigger (see
            // `triggers::user_changes`), so the reconcile runs now, on this copy.
            ctx.finalizers.mark_added(&uid);
            object.reconcile(ctx).await
        }
        Err(kube::runtime::finalizer::Error::ApplyFailed(error))
        | Err(kube::runtime::finalizer::Error::CleanupFailed(error)) => Err(error),
        Err(kube::runtime::finalizer::Error::AddFinalizer(error)) if is_stale_view(&error) => {
            // The patch tests the finalizer list this reconcile saw: a reconcile
            // of a cached copy older than our own finalizer patch fails that
            // test. Nothing is wrong; the watch event of the patch brings the
            // object again, and the requeue covers it should that be folded.
            tracing::debug!(%error, "finalizer list changed since the cached copy; looking again");
            Ok(Action::requeue(STALE_VIEW_RETRY))
        }
        Err(kube::runtime::finalizer::Error::RemoveFinalizer(kube::Error::Api(status)))
            if status.code == 404 =>
        {
            // Released by an earlier process (or reconcile) whose watch
            // event has not arrived yet: the object is gone, nothing is left.
            Ok(Action::await_change())
        }
        Err(other) => Err(Error::Finalizer(Box::new(other))),
    }
}

/// How soon a reconcile that saw a stale copy looks again.
const STALE_VIEW_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// What the API server says when a JSON patch cannot be applied to the
/// object as stored (a `test` that fails, a path that is gone); it names no
/// field, unlike a refusal of the object the patch makes.
const PATCH_NOT_APPLICABLE: &str = "the server rejected our request due to an error in our request";

/// A JSON patch whose `test` failed (422 naming no field) or a write that
/// lost a race (409). Any other 422 is the server refusing the object (a
/// schema or CEL rule, an admission policy): a failure to show, not a view to refresh.
pub fn is_stale_view(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) if status.code == 409 => true,
        kube::Error::Api(status) if status.code == 422 => {
            status.message == PATCH_NOT_APPLICABLE
                && status.details.as_ref().is_none_or(|details| details.causes.is_empty())
        }
        _ => false,
    }
}

/// Removes [`FINALIZER`], guarded by a test of the list it read, so a
/// finalizer another controller added meanwhile is never dropped.
async fn release_finalizer<K: Reconciler>(object: &K, ctx: &Context) -> Result<(), Error> {
    let namespace = object.namespace().ok_or_else(|| Error::InvalidObject("no metadata.namespace".into()))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let current = object.finalizers().to_vec();
    let kept: Vec<&String> = current.iter().filter(|f| *f != FINALIZER).collect();
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        { "op": "test", "path": "/metadata/finalizers", "value": current },
        { "op": "replace", "path": "/metadata/finalizers", "value": kept },
    ]))
    .map_err(|e| Error::InvalidObject(e.to_string()))?;
    api.patch::<K>(&object.name_any(), &PatchParams::default(), &Patch::Json(patch)).await?;
    Ok(())
}

/// Writes `error` as `Synced=False` with a Warning Event, once per distinct
/// failure (a kind that already wrote it with its status is skipped); a
/// cleanup that cannot finish says why as well.
pub async fn record_failure<K: Reconciler>(object: &K, error: &Error, ctx: &Context) -> Result<(), Error> {
    let existing = object.conditions();
    let merged =
        conditions::merge(existing, &[status::synced(Err(error))], object.meta().generation, &status::now());
    if status::new_failure(existing, &merged).is_none() {
        return Ok(());
    }
    status::apply(ctx, object, &object.status_with(merged)).await?;
    events::publish(ctx, object, true, error.reason(), error.to_string()).await;
    Ok(())
}

/// Requeue with jittered exponential backoff after a failure.
pub fn error_policy<K: Reconciler>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.next_retry_delay(&ObjectRef::from_obj(&*object));
    tracing::warn!(kind = K::kind(&()).as_ref(), name = %object.name_any(), %error, ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// A controller of `K` triggered by what users change on it (its own status
/// writes do not trigger it), reading from `store`.
pub fn controller<K: Reconciler>(
    trigger: impl Stream<Item = Arc<K>> + Send + 'static,
    store: Store<K>,
) -> Controller<K> {
    Controller::for_shared_stream(super::triggers::user_changes(trigger, store.clone()), store)
}

/// As [`controller`], with a user's change held back for as long as `hold`
/// says, then passed if `still_due` (see [`super::triggers::held`]). A
/// held object gets its cleanup finalizer while it waits.
pub fn controller_holding<K: Reconciler>(
    trigger: impl Stream<Item = Arc<K>> + Send + 'static,
    store: Store<K>,
    ctx: Arc<Context>,
    hold: impl Fn(&K) -> Option<std::time::Duration> + Send + 'static,
    still_due: impl Fn(&K) -> bool + Clone + Send + Sync + 'static,
) -> Controller<K> {
    let changes = super::triggers::user_changes(trigger, store.clone());
    let prepare = move |object: Arc<K>| {
        let ctx = ctx.clone();
        async move { super::finalizers::add_ahead(&ctx, object.as_ref()).await }
    };
    Controller::for_shared_stream(
        super::triggers::held(changes, store.clone(), hold, still_due, prepare),
        store,
    )
}

/// Runs `controller` until `shutdown` resolves, forgetting the retry history
/// of objects that are gone.
pub async fn drive<K: Reconciler>(
    controller: Controller<K>,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let kind = K::kind(&()).into_owned();
    let config =
        kube::runtime::controller::Config::default().concurrency(ctx.timing.max_concurrent_reconciles);
    controller
        .with_config(config)
        .graceful_shutdown_on(shutdown)
        .run(run::<K>, error_policy::<K>, ctx.clone())
        .for_each(|result| {
            if let Err(kube::runtime::controller::Error::ObjectNotFound(object)) = &result {
                ctx.forget_retries(object);
            } else if let Err(error) = &result {
                tracing::debug!(kind, %error, "reconcile error");
            }
            std::future::ready(())
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error as the client makes it of the API server's JSON answer.
    fn api_error(answer: serde_json::Value) -> kube::Error {
        kube::Error::Api(Box::new(serde_json::from_value(answer).unwrap()))
    }

    #[test]
    fn only_a_patch_that_no_longer_applies_or_a_lost_race_is_a_stale_view() {
        // The API server's answers (kube-apiserver 1.37) to the finalizer
        // helper's patch when its `test` fails, and when the object it makes is refused.
        let test_failed = api_error(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422, "reason": "Invalid",
            "message": "the server rejected our request due to an error in our request",
            "details": {},
        }));
        let refused = api_error(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422, "reason": "Invalid",
            "message": "EtlRouterCluster.conveyor.etl \"c\" is invalid: <root>: Invalid value: \"object\": \
                        metadata.name is 53 characters",
            "details": {"name": "c", "group": "conveyor.etl", "kind": "EtlRouterCluster", "causes": [
                {"reason": "FieldValueInvalid", "message": "Invalid value: \"object\": metadata.name is 53 characters",
                 "field": "<root>"},
            ]},
        }));
        let conflict = api_error(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409, "reason": "Conflict",
            "message": "Operation cannot be fulfilled: the object has been modified",
        }));
        let forbidden = api_error(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403, "reason": "Forbidden",
            "message": "etlrouterclusters.conveyor.etl \"c\" is forbidden",
        }));
        assert!(is_stale_view(&test_failed));
        assert!(is_stale_view(&conflict));
        assert!(!is_stale_view(&refused));
        assert!(!is_stale_view(&forbidden));
    }
}
