//! The ConfigMap `<n>-config`: the router's `raft.yaml`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde::{Deserialize, Serialize};

use super::{Ctx, object_hash, pod_name};
use crate::crd::EtlRouterCluster;

/// Directory the ConfigMap is mounted at in the router container.
pub const CONFIG_DIR: &str = "/etc/conveyor";
/// Key of the ConfigMap, and file name under [`CONFIG_DIR`].
pub const CONFIG_FILE: &str = "raft.yaml";
/// Path of the router's configuration file in the container.
pub const CONFIG_PATH: &str = "/etc/conveyor/raft.yaml";

/// Content of `raft.yaml`, the router's configuration.
///
/// ```yaml
/// electionTimeoutMs: 300
/// heartbeatIntervalMs: 100
/// grpcPort: 50051
/// raftPort: 50052
/// peers:
/// - id: 1
///   address: my-cluster-0.my-cluster-raft.default.svc:50052
/// ```
///
/// A node learns its own id from `CONVEYOR_NODE_ID` (see
/// [`NODE_COMMAND`](super::NODE_COMMAND)), and finds itself in `peers` by it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouterConfig {
    pub election_timeout_ms: u32,
    pub heartbeat_interval_ms: u32,
    pub grpc_port: i32,
    pub raft_port: i32,
    /// Every member of this step, by node id (ordinal + 1) and stable DNS name.
    pub peers: Vec<Peer>,
}

/// One Raft member in [`RouterConfig::peers`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Raft node id: pod ordinal + 1.
    pub id: u64,
    /// `<n>-<ordinal>.<n>-raft.<namespace>.svc:<raftPort>`: the pod's stable name
    /// through the headless Service, resolvable before the pod is Ready.
    pub address: String,
}

/// The router configuration of `cluster` (in `namespace`) with `replicas` members.
pub fn router_config(cluster: &EtlRouterCluster, namespace: &str, replicas: i32) -> RouterConfig {
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let raft_service = super::Names::of(name).raft_service;
    let spec = &cluster.spec;
    let members = u32::try_from(replicas).unwrap_or(0);
    RouterConfig {
        election_timeout_ms: spec.raft.election_timeout_ms,
        heartbeat_interval_ms: spec.raft.heartbeat_interval_ms,
        grpc_port: spec.ports.grpc,
        raft_port: spec.ports.raft,
        peers: (0..members)
            .map(|ordinal| Peer {
                id: super::node_id(ordinal),
                address: format!(
                    "{}.{raft_service}.{namespace}.svc:{}",
                    pod_name(name, ordinal),
                    spec.ports.raft
                ),
            })
            .collect(),
    }
}

/// Hash of the settings in `raft.yaml` other than the peer list (Raft timing
/// and ports): the pod template's [`CONFIG_HASH_ANNOTATION`](super::CONFIG_HASH_ANNOTATION).
/// A change of it rolls the pods; a scale step, which changes only the peers,
/// does not.
pub fn config_hash(cluster: &EtlRouterCluster) -> String {
    let settings = RouterConfig { peers: Vec::new(), ..router_config(cluster, "", 0) };
    object_hash(&settings)
}

pub(super) fn config_map(ctx: &Ctx<'_>, replicas: i32) -> ConfigMap {
    let config = router_config(ctx.cluster, ctx.namespace, replicas);
    let yaml = serde_norway::to_string(&config).expect("RouterConfig serialises to YAML");
    ConfigMap {
        metadata: ctx.meta(&ctx.names.config_map),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_owned(), yaml)])),
        ..ConfigMap::default()
    }
}
