//! The PodDisruptionBudget `<n>` (`policy/v1`).

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Ctx, max_unavailable};

/// `maxUnavailable` follows the step's replica count, so it stays right while scaling.
pub(super) fn pdb(ctx: &Ctx<'_>, replicas: i32) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ctx.meta(&ctx.names.pdb),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable(replicas))),
            selector: Some(LabelSelector { match_labels: Some(ctx.selector()), ..LabelSelector::default() }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}
