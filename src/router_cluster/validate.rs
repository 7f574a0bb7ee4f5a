//! Rules beyond the CRD's per-field schema. Pure; the reconciler reports the
//! result as conditions and deploys nothing while an error stands. Each
//! error is also a CEL rule of the CRD (`crd::rules`, same words), so the API
//! server refuses such objects at apply time; this check stays for objects
//! stored before those rules. Warnings are conditions only.

use k8s_openapi::api::apps::v1::StatefulSet;

use super::build::DATA_VOLUME;
use crate::crd::EtlRouterClusterSpec;

/// What is wrong with a spec, each naming the field a person has to change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validation {
    /// The cluster is not deployed (or not changed) while any of these stands.
    pub errors: Vec<String>,
    /// Allowed, but worth a condition.
    pub warnings: Vec<String>,
}

impl Validation {
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

pub use crate::crd::MAX_CLUSTER_NAME_LENGTH as MAX_NAME_LENGTH;

pub fn validate(name: &str, spec: &EtlRouterClusterSpec) -> Validation {
    let mut result = Validation::default();
    if name.len() > MAX_NAME_LENGTH {
        result.errors.push(format!(
            "metadata.name is {} characters; a router cluster's name may have at most {MAX_NAME_LENGTH} \
             so the names derived from it fit Kubernetes' limits",
            name.len()
        ));
    }
    let raft = &spec.raft;
    if raft.heartbeat_interval_ms >= raft.election_timeout_ms {
        result.errors.push(format!(
            "spec.raft.heartbeatIntervalMs ({}) must be below spec.raft.electionTimeoutMs ({})",
            raft.heartbeat_interval_ms, raft.election_timeout_ms
        ));
    } else if raft.election_timeout_ms < 2 * raft.heartbeat_interval_ms {
        result.warnings.push(format!(
            "spec.raft.electionTimeoutMs ({}) is less than twice spec.raft.heartbeatIntervalMs ({}): \
             one late heartbeat starts an election",
            raft.election_timeout_ms, raft.heartbeat_interval_ms
        ));
    }
    let ports = &spec.ports;
    for (a, a_port, b, b_port) in [
        ("grpc", ports.grpc, "raft", ports.raft),
        ("grpc", ports.grpc, "metrics", ports.metrics),
        ("raft", ports.raft, "metrics", ports.metrics),
    ] {
        if a_port == b_port {
            result.errors.push(format!("spec.ports.{a} and spec.ports.{b} must differ (both are {a_port})"));
        }
    }
    if let Some(storage) = &spec.storage {
        match parse_bytes(&storage.size.0) {
            Some(bytes) if bytes > 0 => {}
            _ => result.errors.push(format!(
                "spec.storage.size ({:?}) must be a positive quantity such as 10Gi",
                storage.size.0
            )),
        }
    }
    result.warnings.extend(super::build::overridden_by_operator(spec));
    if spec.replicas % 2 == 0 {
        result.warnings.push(format!(
            "spec.replicas is {}: an even-sized Raft cluster tolerates no more failures than {} members",
            spec.replicas,
            spec.replicas - 1
        ));
    }
    result
}

/// Changes a deployed StatefulSet cannot take: its volume claim templates
/// are immutable, so `spec.storage` is fixed once the cluster exists. Each
/// names the field, the value in place and how to get out.
pub fn against_deployed(spec: &EtlRouterClusterSpec, live: &StatefulSet) -> Vec<String> {
    let deployed = live
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .and_then(|claims| claims.iter().find(|c| c.metadata.name.as_deref() == Some(DATA_VOLUME)))
        .and_then(|claim| claim.spec.as_ref());
    let immutable = "a StatefulSet's volume claims cannot change after it is created";
    match (&spec.storage, deployed) {
        (None, None) => Vec::new(),
        (Some(_), None) => vec![format!(
            "spec.storage cannot be added to a cluster created without it ({immutable}); remove spec.storage, \
             or create a new cluster with it"
        )],
        (None, Some(_)) => vec![format!(
            "spec.storage cannot be removed from a cluster created with it ({immutable}); put spec.storage back"
        )],
        (Some(wanted), Some(claim)) => {
            let mut errors = Vec::new();
            let size =
                claim.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage"));
            if let Some(size) = size.filter(|size| size.0 != wanted.size.0) {
                errors.push(format!(
                    "spec.storage.size cannot change from {} to {} ({immutable}); set it back to {}, or create a \
                     new cluster and move the data",
                    size.0, wanted.size.0, size.0
                ));
            }
            if claim.storage_class_name != wanted.storage_class_name {
                let shown =
                    |class: &Option<String>| class.clone().unwrap_or_else(|| "the default class".into());
                errors.push(format!(
                    "spec.storage.storageClassName cannot change from {} to {} ({immutable}); set it back",
                    shown(&claim.storage_class_name),
                    shown(&wanted.storage_class_name)
                ));
            }
            errors
        }
    }
}

/// Parses the binary and decimal suffixes Kubernetes accepts for sizes.
fn parse_bytes(quantity: &str) -> Option<u128> {
    let split = quantity.find(|c: char| !c.is_ascii_digit()).unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let number: u128 = number.parse().ok()?;
    let multiplier: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{EtlRouterCluster, StorageSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn seed_spec() -> EtlRouterClusterSpec {
        let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/seed.yaml"))
            .unwrap();
        let first = yaml.split("\n---\n").next().unwrap();
        serde_norway::from_str::<EtlRouterCluster>(first).unwrap().spec
    }

    #[test]
    fn the_seed_cluster_is_valid_without_warnings() {
        assert_eq!(validate("my-cluster", &seed_spec()), Validation::default());
    }

    #[test]
    fn heartbeat_must_be_below_election_timeout() {
        let mut spec = seed_spec();
        spec.raft.heartbeat_interval_ms = 300;
        let result = validate("my-cluster", &spec);
        assert!(!result.is_valid());
        assert_eq!(
            result.errors,
            ["spec.raft.heartbeatIntervalMs (300) must be below spec.raft.electionTimeoutMs (300)"]
        );
    }

    #[test]
    fn a_tight_election_timeout_is_a_warning() {
        let mut spec = seed_spec();
        spec.raft.heartbeat_interval_ms = 200;
        let result = validate("my-cluster", &spec);
        assert!(result.is_valid());
        assert_eq!(result.warnings.len(), 1);
        assert!(result.warnings[0].contains("less than twice"));
    }

    #[test]
    fn ports_must_differ() {
        let mut spec = seed_spec();
        spec.ports.raft = spec.ports.grpc;
        assert_eq!(
            validate("my-cluster", &spec).errors,
            ["spec.ports.grpc and spec.ports.raft must differ (both are 50051)"]
        );
        let mut spec = seed_spec();
        spec.ports.metrics = spec.ports.raft;
        assert_eq!(
            validate("my-cluster", &spec).errors,
            ["spec.ports.raft and spec.ports.metrics must differ (both are 50052)"]
        );
    }

    #[test]
    fn storage_size_must_be_a_positive_size() {
        let mut spec = seed_spec();
        for (size, valid) in [("10Gi", true), ("500M", true), ("0", false), ("ten", false), ("10Zi", false)] {
            spec.storage = Some(StorageSpec {
                size: Quantity(size.to_string()),
                storage_class_name: None,
                retention_policy: Default::default(),
            });
            assert_eq!(validate("my-cluster", &spec).is_valid(), valid, "size {size}");
        }
    }

    #[test]
    fn long_names_are_refused() {
        let spec = seed_spec();
        assert!(validate(&"a".repeat(MAX_NAME_LENGTH), &spec).is_valid());
        let result = validate(&"a".repeat(MAX_NAME_LENGTH + 1), &spec);
        assert_eq!(result.errors.len(), 1);
        assert!(result.errors[0].starts_with("metadata.name is 53 characters"), "{:?}", result.errors);
    }

    #[test]
    fn even_replicas_are_allowed_with_a_warning() {
        let mut spec = seed_spec();
        spec.replicas = 4;
        let result = validate("my-cluster", &spec);
        assert!(result.is_valid());
        assert_eq!(
            result.warnings,
            ["spec.replicas is 4: an even-sized Raft cluster tolerates no more failures than 3 members"]
        );
    }

    #[test]
    fn storage_is_fixed_once_deployed_and_the_error_names_the_field() {
        let spec = seed_spec();
        let mut cluster: EtlRouterCluster = EtlRouterCluster::new("c", spec.clone());
        cluster.metadata.namespace = Some("ns".into());
        cluster.metadata.uid = Some("uid".into());
        let deployed = crate::router_cluster::build::desired(&cluster, 3).unwrap().stateful_set;
        assert!(against_deployed(&spec, &deployed).is_empty());

        let mut bigger = spec.clone();
        bigger.storage.as_mut().unwrap().size = Quantity("20Gi".into());
        let errors = against_deployed(&bigger, &deployed);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("spec.storage.size cannot change from 10Gi to 20Gi"), "{errors:?}");
        assert!(errors[0].contains("set it back to 10Gi"), "{errors:?}");

        let mut other_class = spec.clone();
        other_class.storage.as_mut().unwrap().storage_class_name = Some("fast".into());
        assert!(against_deployed(&other_class, &deployed)[0].contains("storageClassName"));

        let mut none = spec.clone();
        none.storage = None;
        assert!(against_deployed(&none, &deployed)[0].contains("cannot be removed"));
    }
}
