//! What the router holds of each cluster's pipelines, as the pipeline kind
//! and the orphan sweep read it: one `ListPipelines` per cluster per health
//! interval, shared by all of its pipelines and its sweep
//! ([`Context::pipeline_lists`]), and this operator's own reads of single
//! pipelines ([`Context::pipeline_reads`]), which may be newer than that list.
//!
//! Each new list is compared with the one before it ([`ListChanges`]): a
//! pipeline whose copy changed in a way this operator did not make itself
//! (drift, a router that lost its data, one that stopped answering) is
//! reconciled then, so a Ready pipeline needs no periodic pass of its own
//! to notice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::Context;
use super::clusters;
use super::snapshot::Read;
use crate::crd::EtlPipeline;
use crate::router::mapping::{PipelineRead, PipelineSummary};

/// A router cluster's pipelines by id, as one `ListPipelines` returned them,
/// each summarised: ten thousand whole configs would be most of the
/// operator's memory.
pub type PipelineIndex = HashMap<String, PipelineSummary>;

/// The cluster's pipelines by id, from the snapshot shared by all of its
/// pipelines, and when it was read. A new list passes the pipelines it
/// changed to the pipeline controller.
pub async fn listed(
    ctx: &Context,
    namespace: &str,
    cluster: &str,
    members: &[String],
) -> (Read<PipelineIndex>, Instant) {
    let key = clusters::snapshot_key(namespace, cluster);
    let (read, at) = ctx
        .pipeline_lists
        .get_timed(&key, members, ctx.timing.health_interval, || async {
            let list = ctx.router.list_pipelines(members).await?;
            Ok(list.into_iter().collect())
        })
        .await;
    ctx.list_changes.note(&key, &read, |id, now| {
        // A copy this operator itself read (or wrote and read back) as the list shows it.
        ctx.pipeline_reads
            .latest(id, members)
            .is_some_and(|(_, read)| read.as_ref().as_ref().and_then(|read| read.copy.as_ref()) == now)
    });
    let clusters = ctx.cache.router_clusters.state();
    ctx.list_changes.forget_all_but(|key| {
        clusters.iter().any(|cluster| {
            cluster.metadata.namespace.as_deref().is_some_and(|namespace| {
                key == clusters::snapshot_key(namespace, cluster.metadata.name.as_deref().unwrap_or_default())
            })
        })
    });
    (read, at)
}

/// This operator's own read of pipeline `id` made after the shared list was
/// (the read back of a submission, a deletion's `None`, or a stage-figures
/// read): newer than the list, it is what the router holds. Submissions and
/// deletions record such a read instead of dropping the shared list, so a
/// thousand of them do not each cost a read of every pipeline.
pub fn newer_read(
    ctx: &Context,
    members: &[String],
    id: &str,
    listed_at: Instant,
) -> Option<Arc<Option<PipelineRead>>> {
    ctx.pipeline_reads.latest(id, members).filter(|(at, _)| *at > listed_at).map(|(_, read)| read)
}

/// What was last seen of a cluster's list.
enum Seen {
    Listed(Arc<PipelineIndex>),
    Failed,
}

/// Each cluster's list as last seen, and the pipelines whose copy changed
/// since, for the pipeline controller ([`ListChanges::take_changes`]).
pub struct ListChanges {
    seen: Mutex<HashMap<String, Seen>>,
    sender: UnboundedSender<ObjectRef<EtlPipeline>>,
    receiver: Mutex<Option<UnboundedReceiver<ObjectRef<EtlPipeline>>>>,
}

impl Default for ListChanges {
    fn default() -> Self {
        let (sender, receiver) = unbounded_channel();
        ListChanges { seen: Mutex::default(), sender, receiver: Mutex::new(Some(receiver)) }
    }
}

impl ListChanges {
    /// The pipelines whose router copy changed, as lists are read; taken once,
    /// by the pipeline controller.
    pub fn take_changes(&self) -> Option<UnboundedReceiver<ObjectRef<EtlPipeline>>> {
        self.receiver.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }

    /// Drops the lists seen of clusters `live` no longer holds (deleted ones).
    fn forget_all_but(&self, live: impl Fn(&str) -> bool) {
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).retain(|key, _| live(key));
    }

    /// Records `read` as `key`'s list, and passes on the pipelines it changed
    /// that `known` (id, copy now) does not already account for.
    fn note(
        &self,
        key: &str,
        read: &Read<PipelineIndex>,
        known: impl Fn(&str, Option<&PipelineSummary>) -> bool,
    ) {
        let changed = {
            let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let before = seen.get(key);
            if let (Some(Seen::Listed(before)), Ok(now)) = (before, read)
                && Arc::ptr_eq(before, now)
            {
                return;
            }
            let changed = changed_ids(before, read, known);
            seen.insert(
                key.to_owned(),
                match read {
                    Ok(now) => Seen::Listed(now.clone()),
                    Err(_) => Seen::Failed,
                },
            );
            changed
        };
        if !changed.is_empty() {
            tracing::debug!(
                cluster = key,
                changed = changed.len(),
                "router copies changed behind the operator's back"
            );
        }
        // Until a controller takes them, nobody would: a process that runs no
        // pipeline controller (a tool, a test's context) keeps nothing.
        if self.receiver.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).is_some() {
            return;
        }
        for id in changed {
            if let Some((namespace, name)) = id.split_once('/') {
                let _ = self.sender.send(ObjectRef::new(name).within(namespace));
            }
        }
    }
}

/// The ids whose copy differs between the list seen `before` and the one
/// read `now`, but those `known` accounts for. The first list seen changes
/// nothing (every pipeline is reconciled when the operator starts); a list
/// that fails after one that did not, or answers again, changes every
/// pipeline it held.
fn changed_ids(
    before: Option<&Seen>,
    now: &Read<PipelineIndex>,
    known: impl Fn(&str, Option<&PipelineSummary>) -> bool,
) -> Vec<String> {
    match (before, now) {
        (None, _) | (Some(Seen::Failed), Err(_)) => Vec::new(),
        (Some(Seen::Listed(before)), Err(_)) => before.keys().cloned().collect(),
        (Some(Seen::Failed), Ok(now)) => now.keys().cloned().collect(),
        (Some(Seen::Listed(before)), Ok(now)) => {
            let gone = before.keys().filter(|id| !now.contains_key(*id)).map(|id| (id, None));
            let differ =
                now.iter().filter(|(id, copy)| before.get(*id) != Some(copy)).map(|(id, c)| (id, Some(c)));
            gone.chain(differ).filter(|(id, copy)| !known(id, *copy)).map(|(id, _)| id.clone()).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::RouterError;

    fn summary(generation: i64, enabled: bool) -> PipelineSummary {
        PipelineSummary { generation: Some(generation), enabled, shape: 7 }
    }

    fn index(entries: &[(&str, PipelineSummary)]) -> Read<PipelineIndex> {
        Ok(Arc::new(entries.iter().map(|(id, s)| (id.to_string(), *s)).collect()))
    }

    fn sorted(mut ids: Vec<String>) -> Vec<String> {
        ids.sort();
        ids
    }

    #[test]
    fn a_list_changes_the_pipelines_whose_copy_moved_unless_this_operator_made_the_move() {
        let unknown = |_: &str, _: Option<&PipelineSummary>| false;
        let before = index(&[
            ("ns/same", summary(1, true)),
            ("ns/lost", summary(1, true)),
            ("ns/edited", summary(1, true)),
        ]);
        let now = index(&[
            ("ns/same", summary(1, true)),
            ("ns/edited", summary(1, false)),
            ("ns/new", summary(1, true)),
        ]);
        let seen = Seen::Listed(before.clone().unwrap());
        assert!(changed_ids(None, &now, unknown).is_empty(), "the first list changes nothing");
        assert_eq!(sorted(changed_ids(Some(&seen), &now, unknown)), ["ns/edited", "ns/lost", "ns/new"]);
        // Its own submission read back, and its own deletion, are known.
        let own = |id: &str, copy: Option<&PipelineSummary>| match id {
            "ns/new" => copy == Some(&summary(1, true)),
            "ns/lost" => copy.is_none(),
            _ => false,
        };
        assert_eq!(changed_ids(Some(&seen), &now, own), ["ns/edited"]);
    }

    #[test]
    fn a_list_that_fails_or_answers_again_changes_every_pipeline_it_held() {
        let unknown = |_: &str, _: Option<&PipelineSummary>| false;
        let listed = index(&[("ns/a", summary(1, true)), ("ns/b", summary(2, true))]);
        let failed: Read<PipelineIndex> = Err(Arc::new(RouterError::NoMembers));
        let seen = Seen::Listed(listed.clone().unwrap());
        assert_eq!(sorted(changed_ids(Some(&seen), &failed, unknown)), ["ns/a", "ns/b"]);
        assert!(changed_ids(Some(&Seen::Failed), &failed, unknown).is_empty(), "still failing");
        assert_eq!(sorted(changed_ids(Some(&Seen::Failed), &listed, unknown)), ["ns/a", "ns/b"]);
    }

    #[test]
    fn the_same_list_is_not_compared_again_and_changes_reach_the_controller() {
        let changes = ListChanges::default();
        let mut receiver = changes.take_changes().expect("taken once");
        assert!(changes.take_changes().is_none());
        let first = index(&[("ns/a", summary(1, true))]);
        changes.note("ns/c", &first, |_, _| false);
        changes.note("ns/c", &first, |_, _| panic!("the same list is not compared"));
        changes.note("ns/c", &index(&[]), |_, _| false);
        assert_eq!(receiver.try_recv().unwrap(), ObjectRef::new("a").within("ns"));
        assert!(receiver.try_recv().is_err());
    }

    #[test]
    fn changes_are_kept_only_for_a_controller_that_took_them() {
        let changes = ListChanges::default();
        changes.note("ns/c", &index(&[("ns/a", summary(1, true))]), |_, _| false);
        changes.note("ns/c", &index(&[]), |_, _| false);
        let mut receiver = changes.take_changes().expect("taken once");
        assert!(receiver.try_recv().is_err(), "nothing queued before the controller took them");
    }

    #[test]
    fn a_deleted_clusters_list_is_forgotten() {
        let changes = ListChanges::default();
        let mut receiver = changes.take_changes().expect("taken once");
        changes.note("ns/kept", &index(&[("ns/a", summary(1, true))]), |_, _| false);
        changes.note("ns/gone", &index(&[("ns/b", summary(1, true))]), |_, _| false);
        changes.forget_all_but(|key| key == "ns/kept");
        assert_eq!(changes.seen.lock().unwrap().keys().collect::<Vec<_>>(), ["ns/kept"]);
        // A cluster of that name made again starts afresh: its first list changes nothing.
        changes.note("ns/gone", &index(&[]), |_, _| false);
        changes.note("ns/kept", &index(&[]), |_, _| false);
        assert_eq!(receiver.try_recv().unwrap(), ObjectRef::new("a").within("ns"));
        assert!(receiver.try_recv().is_err());
    }
}
