//! The `EtlRouterCluster` kind: everything the operator does for a Raft cluster
//! of Conveyor ETL router nodes. [`build`] computes, purely from the resource,
//! the desired Kubernetes objects (ConfigMap, headless and client Services,
//! StatefulSet, PodDisruptionBudget) that the reconciler server-side-applies;
//! the state machine and the reconciler that drive it will live next to it.

pub mod build;
