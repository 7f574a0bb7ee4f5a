//! A simulator of a Conveyor ETL router cluster, for tests, benchmarks and local
//! demos (`conveyor-router-sim`).
//!
//! Every simulated node serves the contract's `RouterAdmin` and `ServiceRegistry`
//! (Register, Deregister, ListServices) over real gRPC on its own address, so the
//! operator reaches nodes exactly as it reaches pods. The nodes share one
//! simulated Raft view ([`raft`]): one leader per term, elections after
//! [`SimOptions::election_delay`], commit/applied indices advancing on every
//! accepted write, followers refusing writes with the leader's address, and no
//! leader and no writes without a quorum of voters. Each node answers
//! `GetClusterStatus` from its own belief: members in contact with the majority
//! agree, a partitioned member keeps the term and leader it last knew (so two
//! members can disagree, as in a real election or partition), and learners
//! replicate without voting. [`SimCluster`] drives failures (stop, partition in
//! a [`Partition`] mode, slow, restart, membership changes and learners, a crash
//! after a committed write, a RouterAdmin that answers UNIMPLEMENTED) and
//! exposes the [`Mutation`] log. [`RegistryMode::Leased`] switches the
//! registry to the public router's: per node, in memory, leased.
//! [`launch`] runs one node the way the public router is launched, from its
//! command line and configuration file.

mod addresses;
mod admin;
mod catalog;
mod cluster;
mod conn;
mod flow;
pub mod launch;
mod leases;
mod log;
mod member;
mod node;
pub(crate) mod raft;
pub mod raft_node;
mod registry;
mod state;

use std::time::Duration;

pub use addresses::consecutive_nodes;
pub use cluster::SimCluster;
pub use flow::Rates;
pub use log::Mutation;
pub use member::Partition;

/// Timing and registry of a simulated cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimOptions {
    /// How long after losing its leader the cluster elects a new one (default 150 ms).
    pub election_delay: Duration,
    /// How the nodes keep registered services (default: replicated).
    pub registry: RegistryMode,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self { election_delay: Duration::from_millis(150), registry: RegistryMode::Replicated }
    }
}

/// How a simulated cluster's `ServiceRegistry` keeps registrations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RegistryMode {
    /// One registry replicated through the Raft view: writes go to the
    /// leader, every node lists the same services, nothing expires, and
    /// `Heartbeat` answers UNIMPLEMENTED.
    #[default]
    Replicated,
    /// As the public router: each node keeps its own registrations in
    /// memory, outside Raft (any node accepts a write, for itself only, and
    /// forgets them all when it stops); each registration holds a lease of
    /// `ttl` (the public router's is 30 s) renewed by `Heartbeat`; lookups
    /// skip lapsed registrations and a cleanup removes them.
    Leased { ttl: Duration },
}
