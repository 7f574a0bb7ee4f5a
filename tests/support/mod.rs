//! Test support shared by the integration tests: a real control plane on
//! loopback (etcd + kube-apiserver + kube-controller-manager) and helpers to
//! use it. Each test binary compiles this module on its own (`mod support;`),
//! so not every binary uses every helper.
#![allow(dead_code)]

pub mod certs;
pub mod control_plane;
pub mod kube_helpers;
pub mod kubelet;
pub mod objects;
pub mod operator;
pub mod operator_process;
pub mod otlp;
pub mod router_sim;
pub mod scenario;
pub mod tools;

pub use control_plane::ControlPlane;
pub use kube_helpers::*;
