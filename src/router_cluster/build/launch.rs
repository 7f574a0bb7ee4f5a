//! The router container's command line: exactly what the public
//! `conveyor-etl-router` takes (its clap arguments in alexchoi0/conveyor
//! `crates/etl-router/src/main.rs`): `--config <file>`, `--node-id <u64>`
//! (required), `--listen-addr <ip:port>`, `--raft-addr <ip:port>` (parsed as a
//! socket address, so an IP: it is also the address the node advertises),
//! `--peers <id:addr>` (repeatable) and `--data-dir <dir>`.
//!
//! Three of them differ per pod, which a StatefulSet's one template cannot
//! say: the node id is the pod's ordinal + 1 (0 means "no leader" in the
//! router's contract), taken from its name (the `apps.kubernetes.io/pod-index`
//! label holds the same number and would not spare the wrapper, which also
//! adds 1; switching would roll every cluster on upgrade); the Raft address is its
//! IP; and the peers live in the ConfigMap so that a scale step does not
//! change the template and roll every pod. So the container runs a
//! five-line POSIX `sh` wrapper, [`LAUNCH_SCRIPT`], which adds those three
//! to the static arguments in `args` and `exec`s the router (which becomes
//! PID 1 and gets SIGTERM directly). The image needs `/bin/sh` and
//! `conveyor-etl-router` on its `PATH`; `spec.launch` replaces the command
//! and/or the arguments for any other image or router build.

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector};

use super::config::{CONFIG_PATH, PEERS_PATH};
use super::statefulset::DATA_DIR;
use crate::crd::EtlRouterCluster;

/// The router binary the wrapper runs, from the `PATH`.
pub const ROUTER_BINARY: &str = "conveyor-etl-router";

/// The wrapper `sh -c` runs, with the router's static arguments as `"$@"`.
///
/// Kubernetes expands `$(NAME)` in a command only for a defined variable
/// `NAME` and leaves everything else alone, so `$((...))` and `${...}` reach
/// the shell intact (and the script holds no `$$`, which it would turn into
/// `$`). An IPv6 pod IP is bracketed, as a socket address must be.
pub const LAUNCH_SCRIPT: &str = r#"set -eu
case "$CONVEYOR_POD_IP" in *:*) raft_host="[$CONVEYOR_POD_IP]" ;; *) raft_host="$CONVEYOR_POD_IP" ;; esac
set -- "$@" --node-id "$(( ${CONVEYOR_POD_NAME##*-} + 1 ))" --raft-addr "$raft_host:$CONVEYOR_RAFT_PORT"
while IFS= read -r peer || [ -n "$peer" ]; do [ -z "$peer" ] || set -- "$@" --peers "$peer"; done < "$CONVEYOR_PEERS_FILE"
exec conveyor-etl-router "$@""#;

/// The container's command: `spec.launch.command`, else `sh -c` [`LAUNCH_SCRIPT`]
/// (`$0` is the router's name, for the shell's error messages).
pub fn command(cluster: &EtlRouterCluster) -> Vec<String> {
    match cluster.spec.launch.as_ref().filter(|launch| !launch.command.is_empty()) {
        Some(launch) => launch.command.clone(),
        None => vec!["sh".into(), "-c".into(), LAUNCH_SCRIPT.into(), ROUTER_BINARY.into()],
    }
}

/// The container's arguments: `spec.launch.args`, else the router's static
/// ones: `--config`, `--listen-addr 0.0.0.0:<grpc>` (every interface, so the
/// operator, the Services and the probes reach it) and `--data-dir` on the
/// data volume.
pub fn args(cluster: &EtlRouterCluster) -> Vec<String> {
    match cluster.spec.launch.as_ref().filter(|launch| !launch.args.is_empty()) {
        Some(launch) => launch.args.clone(),
        None => vec![
            "--config".into(),
            CONFIG_PATH.into(),
            "--listen-addr".into(),
            format!("0.0.0.0:{}", cluster.spec.ports.grpc),
            "--data-dir".into(),
            DATA_DIR.into(),
        ],
    }
}

/// Names of the variables of [`env`], which `spec.podTemplate.env` cannot redefine.
pub const ENV_NAMES: [&str; 5] = [
    "CONVEYOR_POD_NAME",
    "CONVEYOR_NAMESPACE",
    "CONVEYOR_POD_IP",
    "CONVEYOR_RAFT_PORT",
    "CONVEYOR_PEERS_FILE",
];

/// The environment the wrapper (or an overriding command, through `$(NAME)`) reads.
pub fn env(cluster: &EtlRouterCluster) -> Vec<EnvVar> {
    let field = |name: &str, path: &str| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let value =
        |name: &str, value: String| EnvVar { name: name.to_owned(), value: Some(value), ..EnvVar::default() };
    vec![
        field("CONVEYOR_POD_NAME", "metadata.name"),
        field("CONVEYOR_NAMESPACE", "metadata.namespace"),
        field("CONVEYOR_POD_IP", "status.podIP"),
        value("CONVEYOR_RAFT_PORT", cluster.spec.ports.raft.to_string()),
        value("CONVEYOR_PEERS_FILE", PEERS_PATH.to_owned()),
    ]
}
