//! The ConfigMap `<n>-config`: the router's configuration file `router.yaml`
//! in the public router's schema ([`crate::router::config`]), and `peers`,
//! the Raft members the launch passes as `--peers`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::{Ctx, object_hash, pod_name};
use crate::crd::EtlRouterCluster;
use crate::router::config::{
    self as schema, BufferSection, ClusterSection, GrpcSection, MetricsSection, RouterConfig,
};

/// Directory the ConfigMap is mounted at in the router container.
pub const CONFIG_DIR: &str = "/etc/conveyor";
/// Key of the configuration file in the ConfigMap, and its name under [`CONFIG_DIR`].
pub const CONFIG_FILE: &str = "router.yaml";
/// Path of the router's configuration file in the container (`--config`).
pub const CONFIG_PATH: &str = "/etc/conveyor/router.yaml";
/// Key of the peer list: one `<id>:<host>:<raft port>` per line.
pub const PEERS_FILE: &str = "peers";
/// Path of the peer list in the container.
pub const PEERS_PATH: &str = "/etc/conveyor/peers";

/// The router configuration file of `cluster`: `spec.raft` mapped onto
/// `cluster` (the election timeout T becomes the range [T, 2T] the router
/// draws each timeout from, as Raft prescribes randomised timeouts), the
/// other sections from `spec.router` or the router's defaults, metrics on
/// `0.0.0.0:<spec.ports.metrics>`.
pub fn router_config(cluster: &EtlRouterCluster) -> RouterConfig {
    let spec = &cluster.spec;
    let router = spec.router.clone().unwrap_or_default();
    let election_timeout = u64::from(spec.raft.election_timeout_ms);
    RouterConfig {
        cluster: ClusterSection {
            election_timeout_min_ms: election_timeout,
            election_timeout_max_ms: 2 * election_timeout,
            heartbeat_interval_ms: u64::from(spec.raft.heartbeat_interval_ms),
            snapshot_interval: spec.raft.snapshot_interval.unwrap_or(schema::DEFAULT_SNAPSHOT_INTERVAL),
            max_entries_per_append: spec
                .raft
                .max_entries_per_append
                .unwrap_or(schema::DEFAULT_MAX_ENTRIES_PER_APPEND),
        },
        buffer: BufferSection {
            max_total_records: router.max_buffered_records.unwrap_or(schema::DEFAULT_MAX_TOTAL_RECORDS),
            max_per_source: router.max_buffered_per_source.unwrap_or(schema::DEFAULT_MAX_PER_SOURCE),
            max_per_stage: router.max_buffered_per_stage.unwrap_or(schema::DEFAULT_MAX_PER_STAGE),
            backpressure_threshold: schema::DEFAULT_BACKPRESSURE_THRESHOLD,
            backpressure_resume_threshold: schema::DEFAULT_BACKPRESSURE_RESUME_THRESHOLD,
        },
        grpc: GrpcSection {
            max_message_size: router.max_message_size.unwrap_or(schema::DEFAULT_MAX_MESSAGE_SIZE),
            keepalive_interval_secs: schema::DEFAULT_KEEPALIVE_INTERVAL_SECS,
            keepalive_timeout_secs: schema::DEFAULT_KEEPALIVE_TIMEOUT_SECS,
        },
        metrics: MetricsSection { enabled: true, listen_addr: format!("0.0.0.0:{}", spec.ports.metrics) },
    }
}

/// The `--peers` values of `cluster` (in `namespace`) with `replicas` members:
/// `<node id>:<pod>.<n>-raft.<namespace>.svc:<raft port>`, the pod's stable
/// name through the headless Service, resolvable before the pod is Ready. The
/// router splits each at the first `:` into id and address and dials
/// `http://<address>` (alexchoi0/conveyor `crates/etl-grpc/src/server.rs`,
/// `crates/etl-raft/src/transport.rs`), so a DNS name is fine here, unlike in
/// `--raft-addr`.
pub fn peers(cluster: &EtlRouterCluster, namespace: &str, replicas: i32) -> Vec<String> {
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let raft_service = super::Names::of(name).raft_service;
    let members = u32::try_from(replicas).unwrap_or(0);
    (0..members)
        .map(|ordinal| {
            format!(
                "{}:{}.{raft_service}.{namespace}.svc:{}",
                super::node_id(ordinal),
                pod_name(name, ordinal),
                cluster.spec.ports.raft
            )
        })
        .collect()
}

/// Hash of `router.yaml`: the pod template's
/// [`CONFIG_HASH_ANNOTATION`](super::CONFIG_HASH_ANNOTATION). The router reads
/// the file only at start, so a change of it rolls the pods; a scale step,
/// which changes only `peers`, does not.
pub fn config_hash(cluster: &EtlRouterCluster) -> String {
    object_hash(&router_config(cluster))
}

pub(super) fn config_map(ctx: &Ctx<'_>, replicas: i32) -> ConfigMap {
    let mut peers = peers(ctx.cluster, ctx.namespace, replicas).join("\n");
    peers.push('\n');
    ConfigMap {
        metadata: ctx.meta(&ctx.names.config_map),
        data: Some(BTreeMap::from([
            (CONFIG_FILE.to_owned(), router_config(ctx.cluster).to_yaml()),
            (PEERS_FILE.to_owned(), peers),
        ])),
        ..ConfigMap::default()
    }
}
