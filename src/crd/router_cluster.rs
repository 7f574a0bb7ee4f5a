use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Condition};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::conditions_schema;
use super::rules;

/// The longest cluster name whose derived names all fit Kubernetes' limits:
/// the StatefulSet's `controller-revision-hash` label value is
/// `<name>-<10 characters>` and label values stop at 63.
pub const MAX_CLUSTER_NAME_LENGTH: usize = 52;

/// A Raft cluster of Conveyor ETL router nodes, run as a StatefulSet.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "conveyor.etl",
    version = "v1",
    kind = "EtlRouterCluster",
    namespaced,
    doc = "A Raft cluster of Conveyor ETL router nodes.",
    status = "EtlRouterClusterStatus",
    shortname = "etlrc",
    category = "conveyor",
    validation = rules::cluster_name(),
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Leader","type":"string","jsonPath":".status.leader"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EtlRouterClusterSpec {
    /// Number of router nodes (Raft members). Use an odd number: n nodes tolerate the loss of (n-1)/2.
    #[schemars(range(min = 1, max = 99))]
    pub replicas: i32,
    /// Container image of the router node.
    #[schemars(length(min = 1))]
    pub image: String,
    /// When the kubelet pulls the image: Always, IfNotPresent or Never. Defaults to Kubernetes' rule (Always for `:latest`, else IfNotPresent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "image_pull_policy_schema")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// Raft settings, written to the `cluster` section of the router's configuration file.
    #[serde(default)]
    pub raft: RaftSpec,
    /// Buffer and gRPC limits of the router, written to its configuration file. Unset fields take the public conveyor-etl-router's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<RouterSettingsSpec>,
    /// Replaces the router container's command and/or arguments, for router builds whose command line differs from the public conveyor-etl-router's. When omitted, the operator launches conveyor-etl-router as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<LaunchSpec>,
    /// CPU and memory requests and limits of each router container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Persistent storage for each node's Raft log. When omitted, nodes keep their log in an emptyDir and lose it with the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// Ports the router listens on.
    #[serde(default)]
    pub ports: PortsSpec,
    /// PodDisruptionBudget that keeps voluntary evictions from breaking quorum.
    #[serde(default)]
    pub pod_disruption_budget: PdbSpec,
    /// Where the router pods may run.
    #[serde(default)]
    pub placement: PlacementSpec,
    /// Additions to the router pods the operator generates. A change rolls the pods like any other spec change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<RouterPodTemplate>,
}

/// Additions merged over the generated router pod. The operator's own labels,
/// annotation and environment variables win over these on conflict (a
/// SpecWarning condition names each one overridden).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouterPodTemplate {
    /// Labels added to each router pod. The selector labels `app.kubernetes.io/name`, `app.kubernetes.io/instance` and `conveyor.etl/cluster` keep the operator's values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to each router pod. `conveyor.etl/config-hash` keeps the operator's value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Secrets (in this namespace) the kubelet uses to pull the router image from a private registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// ServiceAccount the router pods run as. Its token is not mounted: the router does not call the Kubernetes API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// PriorityClass of the router pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Environment variables added to the router container, after the operator's own `CONVEYOR_*` variables (which keep their values on conflict and may be referenced as `$(NAME)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

fn image_pull_policy_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    // Option<enum> would list `null` among the enum values; keep the field a plain string enum.
    schemars::json_schema!({
        "type": "string",
        "enum": ["Always", "IfNotPresent", "Never"],
        "description": "When the kubelet pulls the image: Always, IfNotPresent or Never. Defaults to Kubernetes' rule (Always for `:latest`, else IfNotPresent)."
    })
}

/// Image pull policy of the router container.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// Raft settings of the router nodes.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = rules::raft()))]
pub struct RaftSpec {
    /// Election timeout in milliseconds: how long a follower waits for the leader before starting an election. The router draws each timeout between this value and twice it (cluster.election_timeout_min_ms and election_timeout_max_ms). Must exceed heartbeatIntervalMs.
    #[serde(default = "default_election_timeout_ms")]
    #[schemars(range(min = 1))]
    pub election_timeout_ms: u32,
    /// Heartbeat interval of the leader in milliseconds. Must be below electionTimeoutMs.
    #[serde(default = "default_heartbeat_interval_ms")]
    #[schemars(range(min = 1))]
    pub heartbeat_interval_ms: u32,
    /// Log entries between snapshots (cluster.snapshot_interval). Default 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub snapshot_interval: Option<u64>,
    /// Most log entries the leader sends in one append (cluster.max_entries_per_append). Default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_entries_per_append: Option<u64>,
}

/// Buffer and gRPC limits of the router; each unset field takes the router's default.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct RouterSettingsSpec {
    /// Records the router buffers in all (buffer.max_total_records). Default 100000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_buffered_records: Option<u64>,
    /// Records the router buffers per source (buffer.max_per_source). Default 5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_buffered_per_source: Option<u64>,
    /// Records the router buffers per pipeline stage (buffer.max_per_stage). Default 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_buffered_per_stage: Option<u64>,
    /// Largest gRPC message the router accepts, in bytes (grpc.max_message_size). Default 16777216 (16 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_message_size: Option<u64>,
}

/// The router container's command line, for router builds other than the public conveyor-etl-router.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct LaunchSpec {
    /// Replaces the container's command (by default a POSIX sh wrapper that adds --node-id, --raft-addr and --peers and execs conveyor-etl-router). `$(CONVEYOR_POD_NAME)`, `$(CONVEYOR_POD_IP)`, `$(CONVEYOR_NAMESPACE)`, `$(CONVEYOR_RAFT_PORT)` and `$(CONVEYOR_PEERS_FILE)` are expanded by Kubernetes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Replaces the container's arguments (by default --config, --listen-addr and --data-dir for conveyor-etl-router). The same variables are expanded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

fn default_election_timeout_ms() -> u32 {
    300
}

fn default_heartbeat_interval_ms() -> u32 {
    100
}

impl Default for RaftSpec {
    fn default() -> Self {
        Self {
            election_timeout_ms: default_election_timeout_ms(),
            heartbeat_interval_ms: default_heartbeat_interval_ms(),
            snapshot_interval: None,
            max_entries_per_append: None,
        }
    }
}

/// Persistent volume of each router node.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = rules::storage()))]
pub struct StorageSpec {
    /// Size of each node's volume, e.g. `10Gi`.
    pub size: Quantity,
    /// StorageClass of the volumes. When omitted, the cluster's default StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// What happens to the volumes when the EtlRouterCluster is deleted: Retain (default) keeps them, Delete removes them.
    #[serde(default)]
    pub retention_policy: StorageRetention,
}

/// Fate of the data volumes when the cluster is deleted.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum StorageRetention {
    #[default]
    Retain,
    Delete,
}

/// Ports of the router container.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = rules::ports()))]
pub struct PortsSpec {
    /// gRPC port clients, services and the operator use.
    #[serde(default = "default_grpc_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub grpc: i32,
    /// Port the nodes use among themselves for Raft.
    #[serde(default = "default_raft_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub raft: i32,
    /// Port of the router's Prometheus metrics (metrics.listen_addr), exposed on the pods as `metrics` for scraping.
    #[serde(default = "default_metrics_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub metrics: i32,
}

fn default_grpc_port() -> i32 {
    50051
}

fn default_raft_port() -> i32 {
    50052
}

fn default_metrics_port() -> i32 {
    9090
}

impl Default for PortsSpec {
    fn default() -> Self {
        Self { grpc: default_grpc_port(), raft: default_raft_port(), metrics: default_metrics_port() }
    }
}

/// PodDisruptionBudget settings.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct PdbSpec {
    /// Create a PodDisruptionBudget allowing at most (replicas-1)/2 nodes to be evicted at once.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_true() -> bool {
    true
}

impl Default for PdbSpec {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Scheduling constraints of the router pods.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    /// Node labels a router pod's node must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the router pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity of the router pods. When omitted, the operator spreads pods across nodes with a soft anti-affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// How the router pods spread across zones, nodes or other topology domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
}

/// Phase of a router cluster's state machine (see states.md).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum ClusterPhase {
    /// Accepted; the spec is being validated, nothing is deployed while it is invalid.
    #[default]
    Pending,
    /// Objects applied; waiting for the router pods to be ready.
    Provisioning,
    /// Pods ready; waiting for a leader and for every member to join.
    RaftForming,
    /// Leader elected, every member healthy, spec fully rolled out.
    Ready,
    /// Serving with quorum, but a member is unhealthy or missing, or a change is rolling out.
    Degraded,
    /// Not serving: quorum lost, or the router cannot be reached.
    Unavailable,
}

/// Observed state of an EtlRouterCluster.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EtlRouterClusterStatus {
    /// Where the cluster's state machine stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ClusterPhase>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Router pods the StatefulSet runs now: while scaling one member at a
    /// time, the size reached so far (the scale subresource's replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Label selector of the router pods, as a string (the scale subresource's selector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Router pods that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Pod name of the Raft leader, when one is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Raft node id of the leader, when one is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_id: Option<u64>,
    /// Current Raft term. It changes only with elections; the commit index,
    /// which moves with every router write, is deliberately not in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    /// Each member as the router reports it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// Conditions: Ready, Progressing, Degraded, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// One Raft member as the router reports it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Raft node id (pod ordinal + 1).
    pub node_id: u64,
    /// Pod running the member.
    pub pod: String,
    /// Raft role: Leader, Follower, Candidate, Learner or Unknown.
    pub role: String,
    /// Whether the router reports the member healthy.
    pub healthy: bool,
}
