//! Router pipelines left behind by an EtlPipeline deleted without its
//! finalizer (a forced deletion): ids of this operator's form in the
//! cluster's namespace, carrying the generation it writes into every
//! submission, with no EtlPipeline of that name. Swept from the cluster's
//! periodic reconcile, reading the same shared list the pipelines read
//! ([`super::router_pipelines`]); that read is also what tells a Ready
//! pipeline its copy changed, so it is made while the cluster serves its
//! pipelines even when nothing may be swept.

use kube::ResourceExt;
use kube::runtime::reflector::Store;

use super::cache::get;
use super::router_pipelines::{listed, newer_read};
use super::{Context, clusters, events};
use crate::crd::{EtlPipeline, EtlRouterCluster};
use crate::router::mapping::PipelineSummary;

/// The ids in `listed` whose EtlPipeline in `namespace` no longer exists.
pub fn orphans<'a>(
    listed: impl IntoIterator<Item = (&'a String, &'a PipelineSummary)>,
    namespace: &str,
    pipelines: &Store<EtlPipeline>,
) -> Vec<String> {
    let prefix = format!("{namespace}/");
    listed
        .into_iter()
        .filter(|(_, summary)| summary.generation.is_some())
        .filter(|(id, _)| {
            id.strip_prefix(&prefix).is_some_and(|name| get(pipelines, namespace, name).is_none())
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// Reads `cluster`'s pipeline list and, when `sweep`, deletes its orphans,
/// each with an Event on the cluster. Best effort: a router that cannot
/// list or delete is left for the next pass.
pub async fn poll(cluster: &EtlRouterCluster, ctx: &Context, sweep: bool) {
    let (Some(namespace), name) = (cluster.namespace(), cluster.name_any()) else { return };
    let members = clusters::members(&ctx.cache, cluster);
    if members.is_empty() {
        return;
    }
    let (list, listed_at) = match listed(ctx, &namespace, &name, &members).await {
        (Ok(list), at) => (list, at),
        (Err(error), _) => {
            tracing::debug!(%error, "cannot list the router's pipelines to sweep orphans");
            return;
        }
    };
    if !sweep {
        return;
    }
    for id in orphans(list.iter(), &namespace, &ctx.cache.pipelines) {
        // Deleted (by a pipeline's cleanup or an earlier sweep) since the list was read.
        if newer_read(ctx, &members, &id, listed_at).is_some_and(|read| read.is_none()) {
            continue;
        }
        if let Err(error) = ctx.router.delete_pipeline(&members, &id, true).await {
            tracing::warn!(%error, id, "could not delete an orphaned router pipeline");
            continue;
        }
        ctx.pipeline_reads.put(&id, &members, None);
        let note = format!("deleted router pipeline {id}: no EtlPipeline of that name exists any more");
        events::publish(ctx, cluster, false, "OrphanDeleted", note).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::EtlPipelineSpec;
    use crate::router::mapping::pipeline_config;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    #[test]
    fn only_this_operators_submissions_without_a_pipeline_are_orphans() {
        let spec = EtlPipelineSpec { source: "s".into(), sink: "k".into(), ..Default::default() };
        let (store, mut writer) = reflector::store::<EtlPipeline>();
        let mut live = EtlPipeline::new("live", spec.clone());
        live.metadata.namespace = Some("ns".into());
        writer.apply_watcher_event(&Event::Apply(live));
        let mut foreign = pipeline_config("ns", "hand-made", 1, &spec);
        foreign.metadata.clear();
        let listed = [
            pipeline_config("ns", "live", 1, &spec),
            pipeline_config("ns", "gone", 4, &spec),
            pipeline_config("other", "gone", 1, &spec),
            foreign,
        ];
        let summaries: Vec<(String, PipelineSummary)> =
            listed.iter().map(|config| (config.id.clone(), PipelineSummary::of(config))).collect();
        assert_eq!(orphans(summaries.iter().map(|(id, s)| (id, s)), "ns", &store), ["ns/gone"]);
    }
}
