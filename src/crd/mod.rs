//! The five custom resources of group `conveyor.etl/v1`.
//!
//! The Rust types are the source of truth: `conveyor-etl-operator crds` prints
//! the CRDs generated from them, and `deploy/crds/crds.yaml` is that output.

mod common;
mod pipeline;
mod router_cluster;
mod rules;
mod service;

pub use common::{ClusterRef, Phase, conditions_schema};
pub use pipeline::{DlqSpec, EtlPipeline, EtlPipelineSpec, EtlPipelineStatus, PipelineStage};
pub use router_cluster::{
    ClusterPhase, EtlRouterCluster, EtlRouterClusterSpec, EtlRouterClusterStatus, ImagePullPolicy,
    LaunchSpec, MAX_CLUSTER_NAME_LENGTH, MemberStatus, PdbSpec, PlacementSpec, PortsSpec, RaftSpec,
    RouterPodTemplate, RouterSettingsSpec, StorageRetention, StorageSpec,
};
pub use service::{
    EtlSink, EtlSinkSpec, EtlSource, EtlSourceSpec, EtlTransform, EtlTransformSpec, GrpcSpec, ServiceStatus,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every Conveyor ETL resource.
pub const GROUP: &str = "conveyor.etl";

/// Every CRD the operator serves, in the order `crds` prints them.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![EtlRouterCluster::crd(), EtlPipeline::crd(), EtlSource::crd(), EtlTransform::crd(), EtlSink::crd()]
}

/// The CRDs as multi-document YAML, exactly as `deploy/crds/crds.yaml` holds them.
pub fn to_yaml() -> String {
    all()
        .iter()
        .map(|crd| serde_norway::to_string(crd).expect("a CRD always serialises to YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}
