//! Test support shared by the integration tests: a real control plane on
//! loopback (etcd + kube-apiserver + kube-controller-manager) and the fake
//! kubelet, both from the library's `demo` module (the demo uses them too),
//! and helpers to use them. Each test binary compiles this module on its own (`mod support;`),
//! so not every binary uses every helper.
#![allow(dead_code, unused_imports)]

pub mod kube_helpers;
pub mod objects;
pub mod operator;
pub mod operator_process;
pub mod otlp;
pub mod router_sim;
pub mod scenario;
pub mod tools;

pub use conveyor_testbed::{control_plane, kubelet};

pub use control_plane::ControlPlane;
pub use kube_helpers::*;
