//! What the router holds of each cluster's pipelines, as the pipeline kind
//! and the orphan sweep read it: one `ListPipelines` per cluster per health
//! interval, shared by all of its pipelines and its sweep
//! ([`Context::pipeline_lists`]), and this operator's own reads of single
//! pipelines ([`Context::pipeline_reads`]), which may be newer than that list.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::Context;
use super::clusters;
use super::snapshot::Read;
use crate::router::mapping::{PipelineRead, PipelineSummary};

/// A router cluster's pipelines by id, as one `ListPipelines` returned them,
/// each summarised: ten thousand whole configs would be most of the
/// operator's memory.
pub type PipelineIndex = HashMap<String, PipelineSummary>;

/// The cluster's pipelines by id, from the snapshot shared by all of its
/// pipelines, and when it was read.
pub async fn listed(
    ctx: &Context,
    namespace: &str,
    cluster: &str,
    members: &[String],
) -> (Read<PipelineIndex>, Instant) {
    ctx.pipeline_lists
        .get_timed(
            &clusters::snapshot_key(namespace, cluster),
            members,
            ctx.timing.health_interval,
            || async {
                let list = ctx.router.list_pipelines(members).await?;
                Ok(list.into_iter().collect())
            },
        )
        .await
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
