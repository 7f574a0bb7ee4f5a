use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ClusterRef, Phase, conditions_schema};

/// A data pipeline: records flow from `source` through each of `steps` in order
/// to `sink`; records that keep failing go to the dead-letter queue.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "conveyor.etl",
    version = "v1",
    kind = "EtlPipeline",
    namespaced,
    doc = "A Conveyor ETL data pipeline: source, transform steps, sink and dead-letter queue.",
    status = "EtlPipelineStatus",
    shortname = "etlp",
    category = "conveyor",
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.source"}"#,
    printcolumn = r#"{"name":"Sink","type":"string","jsonPath":".spec.sink"}"#,
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".status.cluster"}"#,
    printcolumn = r#"{"name":"Enabled","type":"boolean","jsonPath":".spec.enabled"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EtlPipelineSpec {
    /// Name of the EtlSource (same namespace) the pipeline reads from.
    #[schemars(length(min = 1))]
    pub source: String,
    /// Names of the EtlTransforms (same namespace) records pass through, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1)))]
    pub steps: Vec<String>,
    /// Name of the EtlSink (same namespace) the pipeline writes to.
    #[schemars(length(min = 1))]
    pub sink: String,
    /// Dead-letter queue for records that fail every retry.
    #[serde(default)]
    pub dlq: DlqSpec,
    /// The router cluster that runs the pipeline. When omitted, the only EtlRouterCluster in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ref: Option<ClusterRef>,
    /// Whether the pipeline processes records. A disabled pipeline stays submitted to the router but is paused.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_true() -> bool {
    true
}

/// Dead-letter queue settings.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct DlqSpec {
    /// Send records that exhaust their retries to the dead-letter queue instead of dropping them.
    #[serde(default)]
    pub enabled: bool,
    /// How many times a failing record is retried before it goes to the dead-letter queue.
    #[serde(default = "default_max_retries")]
    #[schemars(range(max = 100))]
    pub max_retries: u32,
}

fn default_max_retries() -> u32 {
    3
}

impl Default for DlqSpec {
    fn default() -> Self {
        Self { enabled: false, max_retries: default_max_retries() }
    }
}

/// Observed state of an EtlPipeline.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtlPipelineStatus {
    /// Where the pipeline's state machine stands: Pending, Provisioning, Ready, Degraded or Disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The router cluster the pipeline is submitted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The `metadata.generation` the router confirmed it applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_generation: Option<i64>,
    /// The pipeline version the router holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_version: Option<u64>,
    /// Per stage, in pipeline order, once the router holds the pipeline: the
    /// service it runs on, where that service is registered and its
    /// partitions (from the service's status), and whether the router's
    /// errors for the stage are rising (read at most once per stats interval).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<PipelineStage>,
    /// Conditions: Ready, Progressing, Degraded, ReferencesResolved, Synced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

// Its texts and partitions are shared with every other stage that repeats
// them: the operator's cache holds one copy (`crate::intern`).
/// One stage of a pipeline as the router runs it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStage {
    /// The router's stage id: `source`, `step-0`, `step-1`, ..., `sink`.
    pub id: Arc<str>,
    /// The EtlSource, EtlTransform or EtlSink it runs on.
    pub service: Arc<str>,
    /// `host:port` the router routes the stage's records to, once registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Arc<str>>,
    /// Partitions the router assigned to the service.
    #[serde(default, skip_serializing_if = "no_partitions")]
    pub assigned_partitions: Arc<[u32]>,
    /// True while the router's error count for the stage rises from one
    /// stats read to the next; false again once a read finds it unchanged.
    /// The counts themselves are the router's metrics, not status.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub errors_rising: bool,
}

fn no_partitions(partitions: &Arc<[u32]>) -> bool {
    partitions.is_empty()
}
