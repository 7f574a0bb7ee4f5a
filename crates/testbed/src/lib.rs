//! The operator's test bed, shared by the integration tests, the demo, the
//! benchmark and the chaos suite:
//!
//! - [`control_plane`]: etcd, kube-apiserver and kube-controller-manager on
//!   loopback, of the release [`kubernetes`] names (built and cached by
//!   `tests/harness/build-kubernetes.sh`).
//! - [`kubelet`]: a fake kubelet that plays the router pods with simulated
//!   router nodes (`conveyor-router-sim`).
//! - [`node`]: a real node (containerd, the kubelet, kube-scheduler) beside
//!   the control plane, for router pods that are containers.
//! - [`examples`]: the example set in `deploy/examples/`.
//! - [`binaries`]: the workspace's other binaries (the router simulator).
//! - [`images`]: the router and operator images packed for the real node.
//! - [`install`]: the operator's CRDs and ClusterRole on a test control plane.
//! - [`operator_process`], [`workload`] and [`machine`]: the operator binary
//!   as a child process, the benchmark's object set and a watch of its
//!   phases, and the machine a report came from (the benchmark and the chaos
//!   suite share them).
//! - [`demo`]: the one-command demo (`cargo demo`) on top of them.
//!
//! `process` (crate-private) starts the control plane's and the node's
//! children and waits on them.

pub mod binaries;
pub mod certs;
pub mod control_plane;
pub mod demo;
pub mod examples;
pub mod images;
pub mod install;
pub mod kubelet;
pub mod kubernetes;
pub mod machine;
pub mod node;
pub mod operator_process;
mod process;
pub mod workload;

/// The harness's cache folder `name`: the variable `override_var` when set,
/// else `conveyor-etl-operator/<name>` under `XDG_CACHE_HOME` (default
/// `~/.cache`), as the scripts in tests/harness/ choose it.
pub fn cache_folder(override_var: &str, name: &str) -> std::path::PathBuf {
    use std::path::PathBuf;
    std::env::var_os(override_var).map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
        cache.join("conveyor-etl-operator").join(name)
    })
}
