//! `EtlSource`, `EtlTransform` and `EtlSink`: gRPC services a pipeline's stages
//! run on, registered by the operator with the router cluster.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ClusterRef, Phase, conditions_schema};

/// Where the router reaches the service.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub struct GrpcSpec {
    /// gRPC address of the service as `host:port` (IPv6 hosts in brackets, e.g. `[fd00::1]:50051`).
    #[schemars(length(min = 1))]
    pub endpoint: String,
}

/// Observed state of an EtlSource, EtlTransform or EtlSink.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// Where the service's state machine stands: Pending, Provisioning, Ready or Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The router cluster the service is registered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Registration id the router returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<String>,
    /// The router's view of the service's health: Healthy, Degraded, Unhealthy or Unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// The partitions the router assigned to the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assigned_partitions: Vec<u32>,
    /// Conditions: Ready and Synced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

macro_rules! service_kind {
    ($spec:ident, $kind:literal, $short:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
        #[kube(
            group = "conveyor.etl",
            version = "v1",
            kind = $kind,
            namespaced,
            doc = $doc,
            status = "ServiceStatus",
            shortname = $short,
            category = "conveyor",
            printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".spec.grpc.endpoint"}"#,
            printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
            printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
            printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
        )]
        #[serde(rename_all = "camelCase")]
        pub struct $spec {
            /// How the router reaches this service over gRPC.
            pub grpc: GrpcSpec,
            /// The router cluster to register with. When omitted, the only EtlRouterCluster in the namespace.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub cluster_ref: Option<ClusterRef>,
        }
    };
}

service_kind!(
    EtlSourceSpec,
    "EtlSource",
    "etlsrc",
    "A source service: where a pipeline's records come from."
);
service_kind!(
    EtlTransformSpec,
    "EtlTransform",
    "etltf",
    "A transform service: one step a pipeline's records pass through."
);
service_kind!(EtlSinkSpec, "EtlSink", "etlsink", "A sink service: where a pipeline's records are written.");
