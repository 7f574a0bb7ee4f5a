//! Removes this operator's pipeline from a router cluster (on deletion, and
//! when the pipeline moves to another cluster), never one someone else made:
//! the router's copy is looked up first, and deleted only when it carries
//! this operator's marker.

use crate::router::RouterError;
use crate::router::mapping::submitted_by_operator;
use crate::runtime::Context;

/// What a removal found on the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// This operator's copy was there and is deleted.
    Deleted,
    /// Nothing with this id was there.
    Absent,
    /// A pipeline with this id that this operator did not submit: left alone.
    Foreign,
}

/// Deletes pipeline `id` from the cluster `members` serve, when it is this
/// operator's. Forced: records it still buffers go with it.
pub async fn remove(ctx: &Context, members: &[String], id: &str) -> Result<Removal, RouterError> {
    let held = ctx.router.get_pipeline(members, id).await?;
    let removal = match held.as_ref().and_then(|response| response.config.as_ref()) {
        None => Removal::Absent,
        Some(config) if !submitted_by_operator(config) => return Ok(Removal::Foreign),
        Some(_) => {
            ctx.router.delete_pipeline(members, id, true).await?;
            Removal::Deleted
        }
    };
    // Newer than the shared list: gone, for the sweep and a namesake created next.
    ctx.pipeline_reads.put(id, members, None);
    Ok(removal)
}
