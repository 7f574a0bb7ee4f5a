//! The one router write a reconcile may make, made exactly once. The
//! router's current copy is looked up first, so a stale shared list, an
//! operator restarted between a write and its status, or a lost reply never
//! leads to a second write; and the result is read back before the status
//! may call it applied. Writes are rare, so these reads are not a poll.
//!
//! A create needs no look-up: the router refuses a create of an id it holds,
//! and the client takes "already exists" for success only when the stored
//! copy is this very submission (a lost reply). So when the shared list
//! says the pipeline is absent, the create is tried at once, and only its
//! refusal leads to the look-up.

use super::assess::{Submit, submission};
use super::observation::RouterCopy;
use super::observe::read_copy as read;
use crate::router::mapping::PipelineRead;
use crate::router::{PipelineConfig, RouterError};
use crate::runtime::Context;

/// The router's copy after a submission.
#[derive(Clone, Debug, PartialEq)]
pub struct Submitted {
    /// The call made; `None` when the fresh look found nothing to do.
    pub call: Option<Submit>,
    /// The router's copy, read back.
    pub copy: RouterCopy,
    /// The router's version of it, when it holds it.
    pub version: Option<u64>,
    /// What is kept of the router's answer to the last read.
    pub response: Option<PipelineRead>,
}

/// Brings the router's copy of `desired` to `generation` (enabled or not);
/// `seen` is the copy the reconcile observed (the shared list, or a newer read).
pub async fn submit(
    ctx: &Context,
    members: &[String],
    desired: &PipelineConfig,
    generation: i64,
    seen: Option<&RouterCopy>,
) -> Result<Submitted, RouterError> {
    let id = desired.id.as_str();
    if seen == Some(&RouterCopy::Absent) {
        match ctx.router.create_pipeline(members, desired.clone()).await {
            Ok(_) => return read_back(ctx, members, desired, Submit::Create).await,
            // Someone's copy is there after all: decide from a fresh look.
            Err(RouterError::AlreadyExists { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    let before = ctx.router.get_pipeline(members, id).await?.as_ref().map(PipelineRead::of);
    let (copy, version) = read(before.as_ref(), desired);
    let Some(call) = submission(&copy, generation, desired.enabled) else {
        return Ok(Submitted { call: None, copy, version, response: before });
    };
    match call {
        Submit::Create => ctx.router.create_pipeline(members, desired.clone()).await.map(drop)?,
        Submit::Update => ctx.router.update_pipeline(members, desired.clone()).await.map(drop)?,
        Submit::Enable => ctx.router.set_pipeline_enabled(members, id, true).await?,
        Submit::Disable => ctx.router.set_pipeline_enabled(members, id, false).await?,
    }
    read_back(ctx, members, desired, call).await
}

async fn read_back(
    ctx: &Context,
    members: &[String],
    desired: &PipelineConfig,
    call: Submit,
) -> Result<Submitted, RouterError> {
    let after = ctx.router.get_pipeline(members, &desired.id).await?.as_ref().map(PipelineRead::of);
    let (copy, version) = read(after.as_ref(), desired);
    Ok(Submitted { call: Some(call), copy, version, response: after })
}
