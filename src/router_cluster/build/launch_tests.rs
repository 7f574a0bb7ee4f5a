//! The seed cluster's launch, checked against what the public
//! `conveyor-etl-router` takes: its command line flag by flag and its
//! configuration file field by field, with the names spelled out here rather
//! than taken from the operator's own types.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::{Value, json};

use super::tests::{build, peers_of, router, s, seed, seed_desired};
use super::*;
use crate::crd::{LaunchSpec, RouterSettingsSpec};

const SEED_PEERS: [&str; 3] = [
    "1:my-cluster-0.my-cluster-raft.conveyor.svc:50052",
    "2:my-cluster-1.my-cluster-raft.conveyor.svc:50052",
    "3:my-cluster-2.my-cluster-raft.conveyor.svc:50052",
];

/// Runs the seed's command, args and env as pod `pod` with IP `ip` would,
/// with a stand-in router on the `PATH` that prints its arguments, and
/// returns them.
fn launched_argv(pod: &str, ip: &str, peers_file_text: &str) -> Vec<String> {
    let d = seed_desired();
    let c = router(&d.stateful_set);
    let dir = tempfile::tempdir().unwrap();
    let stand_in = dir.path().join(ROUTER_BINARY);
    std::fs::write(&stand_in, "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n").unwrap();
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
    let peers = dir.path().join("peers");
    std::fs::write(&peers, peers_file_text).unwrap();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for var in c.env.as_ref().unwrap() {
        let value = match (&var.value, var.value_from.as_ref().and_then(|f| f.field_ref.as_ref())) {
            (Some(value), _) => value.clone(),
            (None, Some(field)) => match field.field_path.as_str() {
                "metadata.name" => pod.to_owned(),
                "metadata.namespace" => NS.to_owned(),
                "status.podIP" => ip.to_owned(),
                other => panic!("unexpected downward API field {other}"),
            },
            _ => panic!("env {} has no value", var.name),
        };
        env.insert(var.name.clone(), value);
    }
    // The kubelet mounts the ConfigMap; here its `peers` key is a temporary file.
    env.insert("CONVEYOR_PEERS_FILE".into(), peers.display().to_string());
    let mut argv = c.command.clone().unwrap();
    argv.extend(c.args.clone().unwrap());
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(&env)
        .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

const NS: &str = "conveyor";

/// The value of `--flag` in `argv`, once.
fn flag<'a>(argv: &'a [String], flag: &str) -> Vec<&'a str> {
    argv.windows(2).filter(|w| w[0] == flag).map(|w| w[1].as_str()).collect()
}

#[test]
fn seed_container_runs_the_wrapper_with_the_routers_static_arguments() {
    let d = seed_desired();
    let c = router(&d.stateful_set);
    assert_eq!(c.command, Some(vec![s("sh"), s("-c"), s(LAUNCH_SCRIPT), s("conveyor-etl-router")]));
    assert_eq!(
        c.args,
        Some(vec![
            s("--config"),
            s("/etc/conveyor/router.yaml"),
            s("--listen-addr"),
            s("0.0.0.0:50051"),
            s("--data-dir"),
            s("/var/lib/conveyor"),
        ])
    );
    assert_eq!(
        serde_json::to_value(c.env.as_ref().unwrap()).unwrap(),
        json!([
            {"name": "CONVEYOR_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "CONVEYOR_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "CONVEYOR_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "CONVEYOR_RAFT_PORT", "value": "50052"},
            {"name": "CONVEYOR_PEERS_FILE", "value": "/etc/conveyor/peers"},
        ])
    );
    assert_eq!(peers_of(&d), SEED_PEERS);
}

#[test]
fn seed_pod_2_launches_the_public_router_command_line() {
    let argv = launched_argv("my-cluster-2", "10.1.2.3", &(SEED_PEERS.join("\n") + "\n"));
    let mut expected: Vec<String> = [
        "--config",
        "/etc/conveyor/router.yaml",
        "--listen-addr",
        "0.0.0.0:50051",
        "--data-dir",
        "/var/lib/conveyor",
        "--node-id",
        "3",
        "--raft-addr",
        "10.1.2.3:50052",
    ]
    .map(s)
    .to_vec();
    for peer in SEED_PEERS {
        expected.extend([s("--peers"), s(peer)]);
    }
    assert_eq!(argv, expected);
    // Every flag is one the router takes, and each value parses as it does.
    let known = ["--config", "--node-id", "--listen-addr", "--raft-addr", "--peers", "--data-dir"];
    for pair in argv.chunks(2) {
        assert!(known.contains(&pair[0].as_str()), "{} is not a router flag", pair[0]);
    }
    assert_eq!(flag(&argv, "--node-id")[0].parse::<u64>(), Ok(3));
    flag(&argv, "--listen-addr")[0].parse::<SocketAddr>().expect("--listen-addr is ip:port");
    flag(&argv, "--raft-addr")[0].parse::<SocketAddr>().expect("--raft-addr is ip:port, not a DNS name");
    for peer in flag(&argv, "--peers") {
        // The router splits at the first ':' into id and address.
        let (id, address) = peer.split_once(':').unwrap();
        id.parse::<u64>().expect("peer id");
        let (host, port) = address.rsplit_once(':').unwrap();
        assert!(host.ends_with(".my-cluster-raft.conveyor.svc"), "{host}");
        assert_eq!(port, "50052");
    }
}

#[test]
fn the_node_id_is_the_ordinal_plus_one_and_an_ipv6_pod_ip_is_bracketed() {
    for (pod, id) in [("my-cluster-0", "1"), ("my-cluster-9", "10"), ("a-b-c-10", "11")] {
        let argv = launched_argv(pod, "10.0.0.1", SEED_PEERS[0]);
        assert_eq!(flag(&argv, "--node-id"), [id], "{pod}");
        // A last line without a newline is still a peer.
        assert_eq!(flag(&argv, "--peers"), [SEED_PEERS[0]]);
    }
    let argv = launched_argv("my-cluster-0", "fd00::7", "");
    assert_eq!(flag(&argv, "--raft-addr"), ["[fd00::7]:50052"]);
    flag(&argv, "--raft-addr")[0].parse::<SocketAddr>().unwrap();
    assert!(flag(&argv, "--peers").is_empty());
}

#[test]
fn kubernetes_variable_expansion_leaves_the_script_alone() {
    // Kubernetes rewrites `$(NAME)` of a defined variable and `$$` in a
    // command; the script must use neither.
    assert!(!LAUNCH_SCRIPT.contains("$$"));
    let d = seed_desired();
    for var in router(&d.stateful_set).env.as_ref().unwrap() {
        assert!(!LAUNCH_SCRIPT.contains(&format!("$({})", var.name)), "{}", var.name);
    }
}

#[test]
fn seed_config_file_has_every_field_of_the_routers_schema_with_spec_raft_applied() {
    let d = seed_desired();
    let yaml = &d.config_map.data.as_ref().unwrap()["router.yaml"];
    let value: Value = serde_norway::from_str(yaml).unwrap();
    let expected = json!({
        "cluster": {
            "election_timeout_min_ms": 300,
            "election_timeout_max_ms": 600,
            "heartbeat_interval_ms": 100,
            "snapshot_interval": 10000,
            "max_entries_per_append": 300,
        },
        "buffer": {
            "max_total_records": 100000,
            "max_per_source": 5000,
            "max_per_stage": 10000,
            "backpressure_threshold": 0.8,
            "backpressure_resume_threshold": 0.5,
        },
        "grpc": {
            "max_message_size": 16777216,
            "keepalive_interval_secs": 30,
            "keepalive_timeout_secs": 10,
        },
        "metrics": {
            "enabled": true,
            "listen_addr": "0.0.0.0:9090",
        },
    });
    // Section by section and field by field, so a failure names the field.
    let sections = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(sections(&value), sections(&expected));
    for (section, fields) in expected.as_object().unwrap() {
        assert_eq!(sections(&value[section]), sections(fields), "fields of {section}");
        for (field, wanted) in fields.as_object().unwrap() {
            assert_eq!(&value[section][field], wanted, "{section}.{field}");
        }
    }
    crate::router::config::parse_strict(yaml).expect("the strict reader takes it");
}

#[test]
fn optional_spec_fields_override_the_routers_defaults() {
    let mut cluster = seed();
    cluster.spec.raft.snapshot_interval = Some(500);
    cluster.spec.raft.max_entries_per_append = Some(64);
    cluster.spec.ports.metrics = 9464;
    cluster.spec.router = Some(RouterSettingsSpec {
        max_buffered_records: Some(1_000),
        max_buffered_per_source: Some(10),
        max_buffered_per_stage: Some(20),
        max_message_size: Some(4_194_304),
    });
    let config = router_config(&cluster);
    assert_eq!((config.cluster.snapshot_interval, config.cluster.max_entries_per_append), (500, 64));
    assert_eq!(
        (config.buffer.max_total_records, config.buffer.max_per_source, config.buffer.max_per_stage),
        (1_000, 10, 20)
    );
    assert_eq!(config.grpc.max_message_size, 4_194_304);
    assert_eq!(config.metrics.listen_addr, "0.0.0.0:9464");
    assert_ne!(config_hash(&cluster), config_hash(&seed()), "a settings change rolls the pods");
    let d = build(&cluster, 3);
    let ports = router(&d.stateful_set).ports.clone().unwrap();
    assert!(ports.iter().any(|p| p.name.as_deref() == Some("metrics") && p.container_port == 9464));
}

#[test]
fn spec_launch_replaces_the_command_and_the_arguments() {
    let mut cluster = seed();
    cluster.spec.launch = Some(LaunchSpec {
        command: vec![s("/router")],
        args: vec![s("--id-from"), s("$(CONVEYOR_POD_NAME)")],
    });
    let d = build(&cluster, 3);
    let c = router(&d.stateful_set);
    assert_eq!(c.command, Some(vec![s("/router")]));
    assert_eq!(c.args, Some(vec![s("--id-from"), s("$(CONVEYOR_POD_NAME)")]));
    cluster.spec.launch = Some(LaunchSpec { command: vec![], args: vec![s("--verbose")] });
    let c = build(&cluster, 3).stateful_set;
    let c = router(&c);
    assert_eq!(c.command.as_ref().unwrap()[2], LAUNCH_SCRIPT, "only the arguments replaced");
    assert_eq!(c.args, Some(vec![s("--verbose")]));
}
