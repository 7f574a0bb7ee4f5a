//! Desired objects of one `EtlRouterCluster`: pure functions from the resource
//! to the Kubernetes objects the reconciler server-side-applies.
//!
//! Every object carries the cluster's name and namespace, the labels of
//! [`object_labels`], a controller owner reference to the cluster, and
//! [`HASH_ANNOTATION`]: a hash of the object as built without that annotation,
//! so the reconciler can compare it with the live object's annotation and
//! apply only what changed. The output depends only on the cluster's name,
//! namespace, uid and spec, and on the step's replica count: the same inputs
//! give byte-identical objects, and changes to the cluster's status, labels,
//! annotations or resourceVersion change nothing, but for one annotation:
//! the restart request `conveyor.etl/restartedAt`, copied onto the pod
//! template so that a new value rolls the pods.
//!
//! List-map keys such as `protocol` of ports are always given explicitly
//! (server-side apply needs them to merge the list).

mod config;
mod launch;
#[cfg(test)]
mod launch_tests;
mod pdb;
mod pod_template;
#[cfg(test)]
mod pod_template_tests;
mod services;
mod statefulset;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::crd::EtlRouterCluster;

pub use config::{
    CONFIG_DIR, CONFIG_FILE, CONFIG_PATH, PEERS_FILE, PEERS_PATH, config_hash, peers, router_config,
};
pub use launch::{LAUNCH_SCRIPT, ROUTER_BINARY};
pub use pod_template::overridden as overridden_by_operator;
pub use services::{GRPC_PORT_NAME, METRICS_PORT_NAME, RAFT_PORT_NAME};
pub use statefulset::{DATA_DIR, DATA_VOLUME, ROUTER_CONTAINER};

pub use crate::runtime::FIELD_MANAGER;
/// On every built object: hash of the object's content, computed with this annotation absent.
pub const HASH_ANNOTATION: &str = "conveyor.etl/applied-hash";
/// On every object and pod: the name of the EtlRouterCluster it belongs to.
pub use crate::runtime::clusters::CLUSTER_LABEL;
/// On the pod template: hash of the Raft settings (not of the peer list), so a
/// change of the settings rolls the pods while a scale step does not.
pub const CONFIG_HASH_ANNOTATION: &str = "conveyor.etl/config-hash";

/// `app.kubernetes.io/name` of every router object.
pub const APP_NAME: &str = "conveyor-etl-router";
const NAME_LABEL: &str = "app.kubernetes.io/name";
const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Why the objects of a cluster cannot be built.
///
/// [`desired`] needs the cluster as the API server stored it: with a name, a
/// namespace and a uid (the owner references point at the uid).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("the EtlRouterCluster has no metadata.name")]
    MissingName,
    #[error("the EtlRouterCluster {name} has no metadata.namespace")]
    MissingNamespace { name: String },
    #[error(
        "the EtlRouterCluster {namespace}/{name} has no metadata.uid (it must be read from the API server)"
    )]
    MissingUid { namespace: String, name: String },
}

impl From<BuildError> for crate::runtime::Error {
    fn from(error: BuildError) -> Self {
        crate::runtime::Error::InvalidObject(error.to_string())
    }
}

/// Names of the objects of one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// ConfigMap with `router.yaml` and `peers`: `<n>-config`.
    pub config_map: String,
    /// Headless Service the Raft peers find each other through: `<n>-raft`.
    pub raft_service: String,
    /// ClusterIP Service for gRPC clients: `<n>`.
    pub client_service: String,
    /// StatefulSet of the router pods: `<n>`.
    pub stateful_set: String,
    /// PodDisruptionBudget: `<n>`.
    pub pdb: String,
}

impl Names {
    pub fn of(cluster_name: &str) -> Names {
        Names {
            config_map: format!("{cluster_name}-config"),
            raft_service: format!("{cluster_name}-raft"),
            client_service: cluster_name.to_owned(),
            stateful_set: cluster_name.to_owned(),
            pdb: cluster_name.to_owned(),
        }
    }
}

/// Name of the StatefulSet pod with the given ordinal: `<n>-<ordinal>`.
pub fn pod_name(cluster_name: &str, ordinal: u32) -> String {
    format!("{cluster_name}-{ordinal}")
}

/// Raft node id of the pod with the given ordinal: ordinal + 1, because 0 means
/// "no leader" in the router's contract.
pub fn node_id(ordinal: u32) -> u64 {
    u64::from(ordinal) + 1
}

/// Ordinal of a StatefulSet pod from its name (the digits after the last `-`),
/// or `None` when the name does not end in a canonical ordinal (no sign, no
/// leading zero), so that `ordinal_of(&pod_name(n, i)) == Some(i)` and nothing
/// else parses.
pub fn ordinal_of(pod_name: &str) -> Option<u32> {
    let (prefix, digits) = pod_name.rsplit_once('-')?;
    if prefix.is_empty()
        || digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// Labels that select the pods of a cluster (StatefulSet, Services, PDB, anti-affinity).
pub fn selector_labels(cluster_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_owned(), APP_NAME.to_owned()),
        (INSTANCE_LABEL.to_owned(), cluster_name.to_owned()),
        (CLUSTER_LABEL.to_owned(), cluster_name.to_owned()),
    ])
}

/// Labels of every built object: the selector labels and `app.kubernetes.io/managed-by`.
pub fn object_labels(cluster_name: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cluster_name);
    labels.insert(MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned());
    labels
}

/// `maxUnavailable` of the PodDisruptionBudget: ⌊(n−1)/2⌋, the members a
/// cluster of `n` can lose and keep quorum; 0 for n ≤ 2.
pub fn max_unavailable(replicas: i32) -> i32 {
    (replicas.max(1) - 1) / 2
}

/// Stable hash of an object: SHA-256 over its canonical JSON (object keys
/// sorted at every level, whatever serde_json's `preserve_order` feature says),
/// as the first 16 hex digits.
///
/// # Panics
/// When `T`'s `Serialize` fails, which the Kubernetes object types and the
/// types of this module never do (their maps have string keys).
pub fn object_hash<T: Serialize>(object: &T) -> String {
    let value = serde_json::to_value(object).expect("object serialises to JSON");
    let mut canonical = String::new();
    write_canonical(&value, &mut canonical);
    let digest = Sha256::digest(canonical.as_bytes());
    let mut hex = String::with_capacity(16);
    for byte in &digest[..8] {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The objects the operator applies for one cluster at one step.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub config_map: ConfigMap,
    pub raft_service: Service,
    pub client_service: Service,
    pub stateful_set: StatefulSet,
    /// `None` when `spec.podDisruptionBudget.enabled` is false.
    pub pdb: Option<PodDisruptionBudget>,
}

/// The desired objects of `cluster` with a StatefulSet of `replicas` pods.
///
/// `replicas` is the StatefulSet size for this step: the reconciler scales one
/// member at a time, so it may differ from `spec.replicas`. It also sizes the
/// ConfigMap's peer list and the PDB's `maxUnavailable`.
///
/// Precondition: `cluster` was read from the API server, so it has a name, a
/// namespace and a uid; otherwise a [`BuildError`] says which is missing.
pub fn desired(cluster: &EtlRouterCluster, replicas: i32) -> Result<Desired, BuildError> {
    let ctx = Ctx::new(cluster)?;
    Ok(Desired {
        config_map: with_hash(config::config_map(&ctx, replicas), |o| &mut o.metadata),
        raft_service: with_hash(services::raft_service(&ctx), |o| &mut o.metadata),
        client_service: with_hash(services::client_service(&ctx), |o| &mut o.metadata),
        stateful_set: with_hash(statefulset::stateful_set(&ctx, replicas), |o| &mut o.metadata),
        pdb: cluster
            .spec
            .pod_disruption_budget
            .enabled
            .then(|| with_hash(pdb::pdb(&ctx, replicas), |o| &mut o.metadata)),
    })
}

/// What every builder needs: the validated identity of the cluster and its spec.
struct Ctx<'a> {
    cluster: &'a EtlRouterCluster,
    name: &'a str,
    namespace: &'a str,
    names: Names,
    owner: OwnerReference,
}

impl<'a> Ctx<'a> {
    fn new(cluster: &'a EtlRouterCluster) -> Result<Self, BuildError> {
        let name = cluster.metadata.name.as_deref().ok_or(BuildError::MissingName)?;
        let namespace = cluster
            .metadata
            .namespace
            .as_deref()
            .ok_or_else(|| BuildError::MissingNamespace { name: name.to_owned() })?;
        let missing_uid =
            || BuildError::MissingUid { namespace: namespace.to_owned(), name: name.to_owned() };
        if cluster.metadata.uid.as_deref().is_none_or(str::is_empty) {
            return Err(missing_uid());
        }
        let owner = cluster.controller_owner_ref(&()).ok_or_else(missing_uid)?;
        Ok(Ctx { cluster, name, namespace, names: Names::of(name), owner })
    }

    /// Metadata of a built object named `name`: namespace, labels, owner reference.
    fn meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.to_owned()),
            labels: Some(object_labels(self.name)),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    fn selector(&self) -> BTreeMap<String, String> {
        selector_labels(self.name)
    }
}

/// Sets [`HASH_ANNOTATION`] to the hash of `object` without it.
fn with_hash<T: Serialize>(mut object: T, meta: impl Fn(&mut T) -> &mut ObjectMeta) -> T {
    if let Some(annotations) = meta(&mut object).annotations.as_mut() {
        annotations.remove(HASH_ANNOTATION);
        if annotations.is_empty() {
            meta(&mut object).annotations = None;
        }
    }
    let hash = object_hash(&object);
    meta(&mut object).annotations.get_or_insert_with(BTreeMap::new).insert(HASH_ANNOTATION.to_owned(), hash);
    object
}
