use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A reference to the `EtlRouterCluster` a resource belongs to, in the same namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub struct ClusterRef {
    /// Name of the EtlRouterCluster in this namespace.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Phase shown by `kubectl get` for pipelines and services: where the resource's
/// state machine stands. The router cluster has its own richer `ClusterPhase`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Accepted; waiting for its references and its router cluster.
    #[default]
    Pending,
    /// Being submitted to, or registered with, the router cluster.
    Provisioning,
    /// Applied by the router cluster and healthy.
    Ready,
    /// Applied, but the router reports a problem or cannot be reached.
    Degraded,
    /// Pipelines only: held by the router, paused because `spec.enabled` is false.
    Disabled,
}

/// Schema of `status.conditions`: the standard `metav1.Condition` list, keyed by
/// `type` so server-side apply merges conditions one by one.
pub fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let items = generator.subschema_for::<Condition>();
    json_schema!({
        "description": "Current state of the resource, one entry per condition type (Ready, Progressing, Degraded, ...).",
        "type": "array",
        "items": items,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    })
}
