//! The PodDisruptionBudget `<n>`, as a dynamic object in the version the server serves.

use kube::api::DynamicObject;
use serde_json::json;

use super::{Ctx, max_unavailable};
use crate::runtime::policy::{PdbApi, pdb_api_resource};

/// `maxUnavailable` follows the step's replica count, so it stays right while scaling.
pub(super) fn pdb(ctx: &Ctx<'_>, replicas: i32, api: PdbApi) -> DynamicObject {
    let mut object = DynamicObject::new(&ctx.names.pdb, &pdb_api_resource(api)).data(json!({
        "spec": {
            "maxUnavailable": max_unavailable(replicas),
            "selector": { "matchLabels": ctx.selector() },
        }
    }));
    object.metadata = ctx.meta(&ctx.names.pdb);
    object
}
