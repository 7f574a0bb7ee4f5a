//! `spec.podTemplate` merged over the generated router pod. The operator's
//! selector labels, its config-hash annotation and its `CONVEYOR_*`
//! variables win on conflict: the StatefulSet, Services, budget and the
//! operator's own pod lookups depend on them. [`overridden`] names each
//! conflict so validation can show it as a SpecWarning.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::EnvVar;

use super::{CONFIG_HASH_ANNOTATION, Ctx, config_hash, launch, selector_labels};
use crate::crd::EtlRouterClusterSpec;
use crate::runtime::RESTARTED_AT_ANNOTATION;

/// The pod's labels: the template's, with the selector labels over them.
pub(super) fn labels(ctx: &Ctx<'_>) -> BTreeMap<String, String> {
    let mut labels = template_of(&ctx.cluster.spec).map(|t| t.labels.clone()).unwrap_or_default();
    labels.extend(ctx.selector());
    labels
}

/// The pod's annotations: the template's, with the config hash over them,
/// and the cluster's restart request (`conveyor.etl/restartedAt`) when it
/// carries one: a new value changes the template, so the pods roll.
pub(super) fn annotations(ctx: &Ctx<'_>) -> BTreeMap<String, String> {
    let mut annotations = template_of(&ctx.cluster.spec).map(|t| t.annotations.clone()).unwrap_or_default();
    annotations.insert(CONFIG_HASH_ANNOTATION.to_owned(), config_hash(ctx.cluster));
    if let Some(requested) =
        ctx.cluster.metadata.annotations.as_ref().and_then(|a| a.get(RESTARTED_AT_ANNOTATION))
    {
        annotations.insert(RESTARTED_AT_ANNOTATION.to_owned(), requested.clone());
    }
    annotations
}

/// The container's environment: the operator's variables first (so the
/// template's may reference them as `$(NAME)`), then the template's, less
/// any that would redefine one of the operator's.
pub(super) fn env(ctx: &Ctx<'_>) -> Vec<EnvVar> {
    let mut env = launch::env(ctx.cluster);
    let extra = template_of(&ctx.cluster.spec).map(|t| t.env.as_slice()).unwrap_or_default();
    env.extend(extra.iter().filter(|var| !launch::ENV_NAMES.contains(&var.name.as_str())).cloned());
    env
}

fn template_of(spec: &EtlRouterClusterSpec) -> Option<&crate::crd::RouterPodTemplate> {
    spec.pod_template.as_ref()
}

/// One sentence per field of `spec.podTemplate` that sets something the
/// operator keeps for itself, naming the keys.
pub fn overridden(spec: &EtlRouterClusterSpec) -> Vec<String> {
    let Some(template) = template_of(spec) else { return Vec::new() };
    let selector = selector_labels("");
    let mut warnings = Vec::new();
    let mut warn = |field: &str, keys: Vec<&str>, why: &str| {
        if !keys.is_empty() {
            warnings.push(format!(
                "spec.podTemplate.{field} sets {}, which {why}: the operator's value is kept; remove {}",
                keys.join(", "),
                if keys.len() == 1 { "it" } else { "them" }
            ));
        }
    };
    let labels =
        template.labels.keys().filter(|key| selector.contains_key(*key)).map(String::as_str).collect();
    warn("labels", labels, "the operator selects the router pods by");
    let annotations = template
        .annotations
        .keys()
        .filter(|key| *key == CONFIG_HASH_ANNOTATION)
        .map(String::as_str)
        .collect();
    warn("annotations", annotations, "the operator rolls the pods by");
    let env = template
        .env
        .iter()
        .map(|var| var.name.as_str())
        .filter(|name| launch::ENV_NAMES.contains(name))
        .collect();
    warn("env", env, "the router's launch reads");
    warnings
}
