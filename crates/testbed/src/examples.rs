//! The example set in `deploy/examples/`, as the demo applies it and the
//! tests start from it.

use conveyor_etl_operator::crd::EtlRouterCluster;

/// `deploy/examples/seed.yaml`: the seed's cluster, source and pipeline.
pub const SEED: &str = include_str!("../../../deploy/examples/seed.yaml");
/// `deploy/examples/services.yaml`: the transforms and sink the seed's pipeline names.
pub const SERVICES: &str = include_str!("../../../deploy/examples/services.yaml");

/// The seed's router cluster (the first object of `seed.yaml`), named `name`.
pub fn seed_cluster(name: &str) -> EtlRouterCluster {
    let first = SEED.split("\n---\n").next().expect("seed.yaml has a first document");
    let mut cluster: EtlRouterCluster = serde_norway::from_str(first).expect("seed.yaml's cluster parses");
    cluster.metadata.name = Some(name.to_string());
    cluster
}
