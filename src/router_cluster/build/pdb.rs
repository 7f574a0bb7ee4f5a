//! The PodDisruptionBudget `<n>`, as a dynamic object in the version the server serves.

use kube::api::{ApiResource, DynamicObject};
use serde_json::json;

use super::{Ctx, max_unavailable};

/// Which PodDisruptionBudget API the server serves: Kubernetes 1.20 serves only
/// `policy/v1beta1`, while the k8s-openapi `v1_32` types know only `policy/v1`
/// (served from 1.21). The fields the operator sets are the same in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PdbApi {
    /// `policy/v1`, Kubernetes 1.21 and later.
    V1,
    /// `policy/v1beta1`, Kubernetes 1.20 (removed in 1.25).
    V1Beta1,
}

impl PdbApi {
    /// The group version: `policy/v1` or `policy/v1beta1`.
    pub fn api_version(self) -> &'static str {
        match self {
            PdbApi::V1 => "policy/v1",
            PdbApi::V1Beta1 => "policy/v1beta1",
        }
    }
}

/// The `ApiResource` of PodDisruptionBudgets in the given version, for `Api::<DynamicObject>`.
pub fn pdb_api_resource(api: PdbApi) -> ApiResource {
    let version = match api {
        PdbApi::V1 => "v1",
        PdbApi::V1Beta1 => "v1beta1",
    };
    ApiResource {
        group: "policy".to_owned(),
        version: version.to_owned(),
        api_version: api.api_version().to_owned(),
        kind: "PodDisruptionBudget".to_owned(),
        plural: "poddisruptionbudgets".to_owned(),
    }
}

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
