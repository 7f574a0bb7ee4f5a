use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Affinity, Container, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
    Probe, ServicePort, Toleration,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ApiResource, DynamicObject};
use serde_json::json;

use super::*;
use crate::crd::{EtlRouterClusterSpec, EtlRouterClusterStatus, ImagePullPolicy, StorageSpec};
use crate::router::config::RouterConfig;

const UID: &str = "6f1c2a5e-0d3b-4c47-9a51-2b8e7d1f0c93";
const NS: &str = "conveyor";

/// The seed's `my-cluster` (deploy/examples/seed.yaml), as the API server stores it.
const SEED_SPEC: &str = r#"
replicas: 3
image: conveyor-etl-router:latest
raft:
  electionTimeoutMs: 300
  heartbeatIntervalMs: 100
resources:
  requests:
    memory: "256Mi"
    cpu: "100m"
  limits:
    memory: "512Mi"
    cpu: "500m"
storage:
  size: 10Gi
  storageClassName: standard
"#;

pub(super) fn seed() -> EtlRouterCluster {
    let spec: EtlRouterClusterSpec = serde_norway::from_str(SEED_SPEC).unwrap();
    let mut cluster = EtlRouterCluster::new("my-cluster", spec);
    cluster.metadata.namespace = Some(NS.to_owned());
    cluster.metadata.uid = Some(UID.to_owned());
    cluster.metadata.resource_version = Some("1234".to_owned());
    cluster.metadata.generation = Some(1);
    cluster
}

pub(super) fn build(cluster: &EtlRouterCluster, replicas: i32) -> Desired {
    desired(cluster, replicas).expect("a stored cluster builds")
}

pub(super) fn seed_desired() -> Desired {
    build(&seed(), 3)
}

fn hash_of(meta: &ObjectMeta) -> String {
    meta.annotations.as_ref().and_then(|a| a.get(HASH_ANNOTATION)).cloned().expect("hash annotation")
}

/// Every hash of a Desired, by object.
fn hashes(d: &Desired) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::from([
        ("config_map", hash_of(&d.config_map.metadata)),
        ("raft_service", hash_of(&d.raft_service.metadata)),
        ("client_service", hash_of(&d.client_service.metadata)),
        ("stateful_set", hash_of(&d.stateful_set.metadata)),
    ]);
    if let Some(pdb) = &d.pdb {
        out.insert("pdb", hash_of(&pdb.metadata));
    }
    out
}

fn pod_spec(sts: &StatefulSet) -> &PodSpec {
    sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

pub(super) fn router(sts: &StatefulSet) -> &Container {
    let containers = &pod_spec(sts).containers;
    assert_eq!(containers.len(), 1);
    &containers[0]
}

fn config_hash_annotation(sts: &StatefulSet) -> String {
    let template = sts.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
    template.annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION].clone()
}

pub(super) fn router_config_of(d: &Desired) -> RouterConfig {
    crate::router::config::parse_strict(&d.config_map.data.as_ref().unwrap()[CONFIG_FILE]).unwrap()
}

pub(super) fn peers_of(d: &Desired) -> Vec<String> {
    d.config_map.data.as_ref().unwrap()[PEERS_FILE].lines().map(str::to_owned).collect()
}

fn pdb_json(pdb: &PodDisruptionBudget) -> serde_json::Value {
    serde_json::to_value(pdb).unwrap()
}

pub(super) fn s(value: &str) -> String {
    value.to_owned()
}

// ---- names and helpers ----

#[test]
fn names_of_a_cluster() {
    assert_eq!(
        Names::of("my-cluster"),
        Names {
            config_map: s("my-cluster-config"),
            raft_service: s("my-cluster-raft"),
            client_service: s("my-cluster"),
            stateful_set: s("my-cluster"),
            pdb: s("my-cluster"),
        }
    );
}

#[test]
fn pod_names_ordinals_and_node_ids() {
    assert_eq!(pod_name("my-cluster", 0), "my-cluster-0");
    assert_eq!(pod_name("my-cluster", 12), "my-cluster-12");
    for ordinal in [0, 1, 2, 9, 10, 98, u32::MAX] {
        assert_eq!(ordinal_of(&pod_name("my-cluster", ordinal)), Some(ordinal));
    }
    assert_eq!(node_id(0), 1);
    assert_eq!(node_id(2), 3);
    assert_eq!(node_id(u32::MAX), u64::from(u32::MAX) + 1);
    for bad in [
        "my-cluster",
        "my-cluster-",
        "-3",
        "3",
        "my-cluster-01",
        "my-cluster-+1",
        "my-cluster-x",
        "a-4294967296",
    ] {
        assert_eq!(ordinal_of(bad), None, "{bad}");
    }
}

#[test]
fn selector_and_object_labels() {
    let selector = selector_labels("my-cluster");
    assert_eq!(
        selector,
        BTreeMap::from([
            (s("app.kubernetes.io/instance"), s("my-cluster")),
            (s("app.kubernetes.io/name"), s("conveyor-etl-router")),
            (s(CLUSTER_LABEL), s("my-cluster")),
        ])
    );
    let mut expected = selector;
    expected.insert(s("app.kubernetes.io/managed-by"), s("conveyor-etl-operator"));
    assert_eq!(object_labels("my-cluster"), expected);
}

#[test]
fn max_unavailable_table() {
    for (replicas, expected) in
        [(-1, 0), (0, 0), (1, 0), (2, 0), (3, 1), (4, 1), (5, 2), (6, 2), (7, 3), (99, 49)]
    {
        assert_eq!(max_unavailable(replicas), expected, "replicas {replicas}");
    }
}

#[test]
fn object_hash_is_canonical_sha256_prefix() {
    // sha256 of `{"a":1,"b":[true,null,"x"]}`, first 16 hex digits.
    assert_eq!(object_hash(&json!({"b": [true, null, "x"], "a": 1})), "eca8cfb31ab74533");
    #[derive(Serialize)]
    struct BA {
        b: Vec<serde_json::Value>,
        a: i32,
    }
    assert_eq!(object_hash(&BA { b: vec![json!(true), json!(null), json!("x")], a: 1 }), "eca8cfb31ab74533");
    assert_ne!(object_hash(&json!({"a": 2})), object_hash(&json!({"a": 1})));
    assert_ne!(object_hash(&json!([1, 2])), object_hash(&json!([2, 1])));
}

// ---- the seed cluster ----

#[test]
fn seed_statefulset_spec() {
    let d = seed_desired();
    let sts = &d.stateful_set;
    assert_eq!(sts.metadata.name.as_deref(), Some("my-cluster"));
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("my-cluster-raft"));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let strategy = spec.update_strategy.as_ref().unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("OnDelete"));
    assert_eq!(strategy.rolling_update, None);
    assert_eq!(spec.selector.match_labels, Some(selector_labels("my-cluster")));
    assert_eq!(spec.selector.match_expressions, None);
    let template_meta = spec.template.metadata.as_ref().unwrap();
    assert_eq!(template_meta.labels, Some(selector_labels("my-cluster")));
    assert_eq!(config_hash_annotation(sts), config_hash(&seed()));
    // The claims' fate is the cleanup finalizer's, which reads the cluster's spec
    // at deletion and does nothing while paused: the StatefulSet's own policy
    // stays unset (Retain), so garbage collection never takes a claim along.
    assert_eq!(spec.persistent_volume_claim_retention_policy, None);
    // Fields left to the server's defaults stay unset.
    assert_eq!(spec.ordinals, None);
    assert_eq!(spec.min_ready_seconds, None);
}

#[test]
fn seed_router_container() {
    let d = seed_desired();
    let c = router(&d.stateful_set);
    assert_eq!(c.name, "router");
    assert_eq!(c.image.as_deref(), Some("conveyor-etl-router:latest"));
    assert_eq!(c.image_pull_policy, None, "unset in the seed: Kubernetes' default applies");
    // The command line itself is checked in `launch_tests`.
    assert_eq!(c.command.as_ref().unwrap()[..2], [s("sh"), s("-c")]);
    assert!(c.args.is_some());
    let ports = serde_json::to_value(c.ports.as_ref().unwrap()).unwrap();
    assert_eq!(
        ports,
        json!([
            {"name": "grpc", "containerPort": 50051, "protocol": "TCP"},
            {"name": "raft", "containerPort": 50052, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
        ])
    );
    let resources = c.resources.as_ref().unwrap();
    let q = |v: &str| Quantity(s(v));
    assert_eq!(resources.requests, Some(BTreeMap::from([(s("cpu"), q("100m")), (s("memory"), q("256Mi"))])));
    assert_eq!(resources.limits, Some(BTreeMap::from([(s("cpu"), q("500m")), (s("memory"), q("512Mi"))])));
    let mounts = serde_json::to_value(c.volume_mounts.as_ref().unwrap()).unwrap();
    assert_eq!(
        mounts,
        json!([
            {"name": "config", "mountPath": "/etc/conveyor", "readOnly": true},
            {"name": "data", "mountPath": "/var/lib/conveyor"},
            {"name": "tmp", "mountPath": "/tmp"},
        ])
    );
}

#[test]
fn seed_probes_are_tcp_on_the_grpc_port() {
    let d = seed_desired();
    let c = router(&d.stateful_set);
    let check = |probe: &Probe| {
        let tcp = probe.tcp_socket.as_ref().expect("tcpSocket probe");
        assert_eq!(tcp.port, IntOrString::String(s("grpc")));
        assert_eq!(probe.grpc, None);
        assert_eq!(probe.exec, None);
        assert_eq!(probe.http_get, None);
        assert!(probe.period_seconds.unwrap() > 0);
    };
    check(c.readiness_probe.as_ref().expect("readiness probe"));
    check(c.liveness_probe.as_ref().expect("liveness probe"));
    // Liveness waits longer than readiness before the first check.
    assert!(
        c.liveness_probe.as_ref().unwrap().initial_delay_seconds
            > c.readiness_probe.as_ref().unwrap().initial_delay_seconds
    );
}

#[test]
fn seed_security_context_is_restricted() {
    let d = seed_desired();
    let pod = pod_spec(&d.stateful_set);
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(65532));
    assert_eq!(psc.fs_group, Some(65532));
    assert_eq!(psc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    let csc = router(&d.stateful_set).security_context.as_ref().unwrap();
    assert_eq!(csc.allow_privilege_escalation, Some(false));
    assert_eq!(csc.read_only_root_filesystem, Some(true));
    assert_eq!(csc.privileged, None);
    let caps = csc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop, Some(vec![s("ALL")]));
    assert_eq!(caps.add, None);
}

#[test]
fn seed_has_soft_anti_affinity_across_nodes() {
    let d = seed_desired();
    let pod = pod_spec(&d.stateful_set);
    let affinity = serde_json::to_value(pod.affinity.as_ref().unwrap()).unwrap();
    assert_eq!(
        affinity,
        json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {
                "labelSelector": {"matchLabels": {
                    "app.kubernetes.io/instance": "my-cluster",
                    "app.kubernetes.io/name": "conveyor-etl-router",
                    "conveyor.etl/cluster": "my-cluster",
                }},
                "topologyKey": "kubernetes.io/hostname",
            },
        }]}})
    );
    assert_eq!(pod.node_selector, None);
    assert_eq!(pod.tolerations, None);
}

#[test]
fn seed_volumes_and_claim_template() {
    let d = seed_desired();
    let spec = d.stateful_set.spec.as_ref().unwrap();
    let claims = spec.volume_claim_templates.as_ref().unwrap();
    assert_eq!(claims.len(), 1);
    let claim = &claims[0];
    assert_eq!(claim.metadata.name.as_deref(), Some("data"));
    assert_eq!(claim.metadata.labels, Some(selector_labels("my-cluster")));
    let claim_spec = claim.spec.as_ref().unwrap();
    assert_eq!(claim_spec.access_modes, Some(vec![s("ReadWriteOnce")]));
    assert_eq!(
        claim_spec.resources.as_ref().unwrap().requests,
        Some(BTreeMap::from([(s("storage"), Quantity(s("10Gi")))]))
    );
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("standard"));
    // With a claim template the pod has no `data` volume of its own.
    let volumes = serde_json::to_value(pod_spec(&d.stateful_set).volumes.as_ref().unwrap()).unwrap();
    assert_eq!(
        volumes,
        json!([
            {"name": "config", "configMap": {"name": "my-cluster-config"}},
            {"name": "tmp", "emptyDir": {}},
        ])
    );
}

#[test]
fn seed_services() {
    let d = seed_desired();
    let raft = &d.raft_service;
    assert_eq!(raft.metadata.name.as_deref(), Some("my-cluster-raft"));
    let raft_spec = raft.spec.as_ref().unwrap();
    assert_eq!(raft_spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(raft_spec.publish_not_ready_addresses, Some(true));
    assert_eq!(raft_spec.selector, Some(selector_labels("my-cluster")));
    let port = |name: &str, port: i32| ServicePort {
        name: Some(s(name)),
        port,
        protocol: Some(s("TCP")),
        target_port: Some(IntOrString::String(s(name))),
        ..ServicePort::default()
    };
    assert_eq!(raft_spec.ports, Some(vec![port("raft", 50052), port("grpc", 50051)]));

    let client = &d.client_service;
    assert_eq!(client.metadata.name.as_deref(), Some("my-cluster"));
    let client_spec = client.spec.as_ref().unwrap();
    assert_eq!(client_spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(client_spec.cluster_ip, None);
    assert_eq!(client_spec.publish_not_ready_addresses, None);
    assert_eq!(client_spec.selector, Some(selector_labels("my-cluster")));
    assert_eq!(client_spec.ports, Some(vec![port("grpc", 50051)]));
}

#[test]
fn seed_config_map_holds_the_router_config_and_three_peers_by_dns_name() {
    let d = seed_desired();
    assert_eq!(d.config_map.metadata.name.as_deref(), Some("my-cluster-config"));
    let data = d.config_map.data.as_ref().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), vec!["peers", "router.yaml"]);
    assert_eq!(router_config_of(&d), router_config(&seed()));
    assert_eq!(
        data["peers"],
        "1:my-cluster-0.my-cluster-raft.conveyor.svc:50052\n\
         2:my-cluster-1.my-cluster-raft.conveyor.svc:50052\n\
         3:my-cluster-2.my-cluster-raft.conveyor.svc:50052\n"
    );
}

#[test]
fn seed_pdb() {
    let d = seed_desired();
    let pdb = d.pdb.as_ref().expect("PDB enabled by default");
    let value = pdb_json(pdb);
    assert_eq!(value["apiVersion"], "policy/v1");
    assert_eq!(value["kind"], "PodDisruptionBudget");
    assert_eq!(value["metadata"]["name"], "my-cluster");
    assert_eq!(value["metadata"]["namespace"], NS);
    assert_eq!(
        value["spec"],
        json!({
            "maxUnavailable": 1,
            "selector": {"matchLabels": {
                "app.kubernetes.io/instance": "my-cluster",
                "app.kubernetes.io/name": "conveyor-etl-router",
                "conveyor.etl/cluster": "my-cluster",
            }},
        })
    );
    assert!(value.get("status").is_none(), "{value}");
    // Exactly the dynamic policy/v1 object earlier versions applied, so its
    // hash is unchanged and an upgrade re-applies no budget.
    let mut earlier = DynamicObject::new("my-cluster", &ApiResource::erase::<PodDisruptionBudget>(&()))
        .data(json!({"spec": value["spec"].clone()}));
    earlier.metadata = pdb.metadata.clone();
    assert_eq!(serde_json::to_value(&earlier).unwrap(), value);
}

#[test]
fn pdb_disabled_builds_none() {
    let mut cluster = seed();
    cluster.spec.pod_disruption_budget.enabled = false;
    let d = build(&cluster, 3);
    assert_eq!(d.pdb, None);
    // The rest is unaffected.
    assert_eq!(d.stateful_set, seed_desired().stateful_set);
}

// ---- metadata of every object ----

#[test]
fn every_object_has_identity_labels_owner_and_content_hash() {
    let d = seed_desired();
    let pdb = d.pdb.clone().unwrap();
    let objects: Vec<(&str, serde_json::Value)> = vec![
        ("my-cluster-config", serde_json::to_value(&d.config_map).unwrap()),
        ("my-cluster-raft", serde_json::to_value(&d.raft_service).unwrap()),
        ("my-cluster", serde_json::to_value(&d.client_service).unwrap()),
        ("my-cluster", serde_json::to_value(&d.stateful_set).unwrap()),
        ("my-cluster", serde_json::to_value(&pdb).unwrap()),
    ];
    let expected_kinds = ["ConfigMap", "Service", "Service", "StatefulSet", "PodDisruptionBudget"];
    for ((name, value), kind) in objects.into_iter().zip(expected_kinds) {
        assert_eq!(value["kind"], kind);
        let meta = &value["metadata"];
        assert_eq!(meta["name"], name, "{kind}");
        assert_eq!(meta["namespace"], NS, "{kind}");
        assert_eq!(meta["labels"], json!(object_labels("my-cluster")), "{kind}");
        assert_eq!(
            meta["ownerReferences"],
            json!([{
                "apiVersion": "conveyor.etl/v1",
                "kind": "EtlRouterCluster",
                "name": "my-cluster",
                "uid": UID,
                "controller": true,
            }]),
            "{kind}"
        );
        // Only the hash annotation, and it is the hash of the object without it.
        let annotations = meta["annotations"].as_object().unwrap();
        assert_eq!(annotations.len(), 1, "{kind}");
        let hash = annotations[HASH_ANNOTATION].as_str().unwrap().to_owned();
        assert_eq!(hash.len(), 16);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let mut without = value.clone();
        without["metadata"].as_object_mut().unwrap().remove("annotations");
        assert_eq!(object_hash(&without), hash, "{kind}");
    }
    // Distinct objects, distinct hashes.
    let all = hashes(&d);
    let distinct: std::collections::BTreeSet<_> = all.values().collect();
    assert_eq!(distinct.len(), all.len());
}

#[test]
fn owner_reference_is_the_controller_reference_to_the_cluster_uid() {
    let cluster = seed();
    let d = seed_desired();
    let owners = d.stateful_set.metadata.owner_references.as_ref().unwrap();
    assert_eq!(owners.len(), 1);
    let owner = &owners[0];
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.uid, UID);
    assert_eq!(owner.name, "my-cluster");
    assert_eq!(owner.kind, "EtlRouterCluster");
    assert_eq!(owner.api_version, "conveyor.etl/v1");
    assert_eq!(Some(owner), cluster.controller_owner_ref(&()).as_ref());
}

#[test]
fn missing_identity_is_a_build_error() {
    let mut no_uid = seed();
    no_uid.metadata.uid = None;
    assert_eq!(desired(&no_uid, 3), Err(BuildError::MissingUid { namespace: s(NS), name: s("my-cluster") }));
    no_uid.metadata.uid = Some(String::new());
    assert!(matches!(desired(&no_uid, 3), Err(BuildError::MissingUid { .. })));

    let mut no_namespace = seed();
    no_namespace.metadata.namespace = None;
    assert_eq!(desired(&no_namespace, 3), Err(BuildError::MissingNamespace { name: s("my-cluster") }));

    let mut no_name = seed();
    no_name.metadata.name = None;
    assert_eq!(desired(&no_name, 3), Err(BuildError::MissingName));
    assert!(BuildError::MissingUid { namespace: s(NS), name: s("c") }.to_string().contains("conveyor/c"));
}

// ---- variations of the spec ----

#[test]
fn without_storage_data_is_an_empty_dir() {
    let mut cluster = seed();
    cluster.spec.storage = None;
    let d = build(&cluster, 3);
    let spec = d.stateful_set.spec.as_ref().unwrap();
    assert_eq!(spec.volume_claim_templates, None);
    let volumes = serde_json::to_value(pod_spec(&d.stateful_set).volumes.as_ref().unwrap()).unwrap();
    assert_eq!(
        volumes,
        json!([
            {"name": "config", "configMap": {"name": "my-cluster-config"}},
            {"name": "data", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ])
    );
    // Still mounted at the same place.
    let mounts = router(&d.stateful_set).volume_mounts.as_ref().unwrap();
    assert!(mounts.iter().any(|m| m.name == "data" && m.mount_path == "/var/lib/conveyor"));
}

#[test]
fn storage_without_class_uses_the_default_class() {
    let mut cluster = seed();
    cluster.spec.storage = Some(StorageSpec {
        size: Quantity(s("1Gi")),
        storage_class_name: None,
        retention_policy: Default::default(),
    });
    let d = build(&cluster, 3);
    let claim = &d.stateful_set.spec.as_ref().unwrap().volume_claim_templates.as_ref().unwrap()[0];
    let claim_spec = claim.spec.as_ref().unwrap();
    assert_eq!(claim_spec.storage_class_name, None);
    assert_eq!(
        claim_spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"],
        Quantity(s("1Gi"))
    );
}

#[test]
fn custom_affinity_replaces_the_default() {
    let mut cluster = seed();
    let custom = Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: s("disktype"),
                        operator: s("In"),
                        values: Some(vec![s("ssd")]),
                    }]),
                    ..NodeSelectorTerm::default()
                }],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    };
    cluster.spec.placement.affinity = Some(custom.clone());
    let d = build(&cluster, 3);
    let affinity = pod_spec(&d.stateful_set).affinity.as_ref().unwrap();
    assert_eq!(affinity, &custom);
    assert_eq!(affinity.pod_anti_affinity, None, "no default anti-affinity added");
}

#[test]
fn node_selector_and_tolerations_from_placement() {
    let mut cluster = seed();
    cluster.spec.placement.node_selector = BTreeMap::from([(s("pool"), s("etl"))]);
    let toleration = Toleration {
        key: Some(s("dedicated")),
        operator: Some(s("Equal")),
        value: Some(s("etl")),
        effect: Some(s("NoSchedule")),
        ..Toleration::default()
    };
    cluster.spec.placement.tolerations = vec![toleration.clone()];
    let d = build(&cluster, 3);
    let pod = pod_spec(&d.stateful_set);
    assert_eq!(pod.node_selector, Some(BTreeMap::from([(s("pool"), s("etl"))])));
    assert_eq!(pod.tolerations, Some(vec![toleration]));
    assert!(pod.affinity.as_ref().unwrap().pod_anti_affinity.is_some(), "default anti-affinity kept");
}

#[test]
fn image_pull_policy_and_ports_when_set() {
    let mut cluster = seed();
    cluster.spec.image_pull_policy = Some(ImagePullPolicy::IfNotPresent);
    cluster.spec.ports.grpc = 7000;
    cluster.spec.ports.raft = 7001;
    cluster.spec.resources = None;
    let d = build(&cluster, 3);
    let c = router(&d.stateful_set);
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(c.resources, None);
    let ports: Vec<_> =
        c.ports.as_ref().unwrap().iter().map(|p| (p.name.clone(), p.container_port)).collect();
    assert_eq!(ports, vec![(Some(s("grpc")), 7000), (Some(s("raft")), 7001), (Some(s("metrics")), 9090)]);
    let raft_ports: Vec<_> =
        d.raft_service.spec.as_ref().unwrap().ports.as_ref().unwrap().iter().map(|p| p.port).collect();
    assert_eq!(raft_ports, vec![7001, 7000]);
    assert_eq!(d.client_service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port, 7000);
    assert!(peers_of(&d).iter().all(|p| p.ends_with(".svc:7001")), "{:?}", peers_of(&d));
    assert!(router(&d.stateful_set).args.as_ref().unwrap().contains(&s("0.0.0.0:7000")));
    for (policy, expected) in [(ImagePullPolicy::Always, "Always"), (ImagePullPolicy::Never, "Never")] {
        cluster.spec.image_pull_policy = Some(policy);
        assert_eq!(router(&build(&cluster, 3).stateful_set).image_pull_policy.as_deref(), Some(expected));
    }
}

// ---- hashes ----

#[test]
fn building_twice_gives_byte_identical_objects() {
    let a = seed_desired();
    let b = seed_desired();
    assert_eq!(a, b);
    assert_eq!(
        serde_json::to_string(&a.stateful_set).unwrap(),
        serde_json::to_string(&b.stateful_set).unwrap()
    );
    assert_eq!(serde_json::to_string(&a.config_map).unwrap(), serde_json::to_string(&b.config_map).unwrap());
    assert_eq!(serde_json::to_string(&a.pdb).unwrap(), serde_json::to_string(&b.pdb).unwrap());
    assert_eq!(hashes(&a), hashes(&b));
}

#[test]
fn image_change_changes_the_statefulset_hash_only() {
    let before = seed_desired();
    let mut cluster = seed();
    cluster.spec.image = s("conveyor-etl-router:1.2.0");
    let after = build(&cluster, 3);
    assert_eq!(router(&after.stateful_set).image.as_deref(), Some("conveyor-etl-router:1.2.0"));
    let (h0, h1) = (hashes(&before), hashes(&after));
    assert_ne!(h0["stateful_set"], h1["stateful_set"]);
    for object in ["config_map", "raft_service", "client_service", "pdb"] {
        assert_eq!(h0[object], h1[object], "{object}");
    }
    assert_eq!(config_hash_annotation(&before.stateful_set), config_hash_annotation(&after.stateful_set));
}

#[test]
fn raft_timing_change_rolls_the_pods() {
    let before = seed_desired();
    let mut cluster = seed();
    cluster.spec.raft.election_timeout_ms = 500;
    let after = build(&cluster, 3);
    assert_ne!(config_hash_annotation(&before.stateful_set), config_hash_annotation(&after.stateful_set));
    assert_eq!(config_hash_annotation(&after.stateful_set), config_hash(&cluster));
    let (h0, h1) = (hashes(&before), hashes(&after));
    assert_ne!(h0["config_map"], h1["config_map"]);
    assert_ne!(h0["stateful_set"], h1["stateful_set"]);
    assert_eq!(router_config_of(&after).cluster.election_timeout_min_ms, 500);
    assert_eq!(router_config_of(&after).cluster.election_timeout_max_ms, 1000);

    let mut heartbeat = seed();
    heartbeat.spec.raft.heartbeat_interval_ms = 50;
    let hb = build(&heartbeat, 3);
    assert_ne!(config_hash_annotation(&before.stateful_set), config_hash_annotation(&hb.stateful_set));
    assert_ne!(config_hash_annotation(&after.stateful_set), config_hash_annotation(&hb.stateful_set));
}

#[test]
fn scale_step_changes_peers_and_replicas_but_not_the_config_hash() {
    let three = seed_desired();
    let four = build(&seed(), 4);
    assert_eq!(four.stateful_set.spec.as_ref().unwrap().replicas, Some(4));
    let peers = peers_of(&four);
    assert_eq!(peers.len(), 4);
    assert_eq!(peers[3], "4:my-cluster-3.my-cluster-raft.conveyor.svc:50052");
    assert_eq!(peers[..3], peers_of(&three)[..]);
    assert_eq!(router_config_of(&four), router_config_of(&three), "only the peers change");
    let (h3, h4) = (hashes(&three), hashes(&four));
    assert_ne!(h3["config_map"], h4["config_map"]);
    assert_ne!(h3["stateful_set"], h4["stateful_set"]);
    assert_eq!(h3["raft_service"], h4["raft_service"]);
    assert_eq!(h3["client_service"], h4["client_service"]);
    // The pod template does not change, so no pod rolls.
    assert_eq!(config_hash_annotation(&three.stateful_set), config_hash_annotation(&four.stateful_set));
    assert_eq!(
        three.stateful_set.spec.as_ref().unwrap().template,
        four.stateful_set.spec.as_ref().unwrap().template
    );
    // The PDB follows the step: 4 → 1 (unchanged), 5 → 2.
    assert_eq!(pdb_json(four.pdb.as_ref().unwrap())["spec"]["maxUnavailable"], 1);
    let five = build(&seed(), 5);
    assert_eq!(pdb_json(five.pdb.as_ref().unwrap())["spec"]["maxUnavailable"], 2);
    assert_ne!(hashes(&five)["pdb"], h3["pdb"]);
    let one = build(&seed(), 1);
    assert_eq!(pdb_json(one.pdb.as_ref().unwrap())["spec"]["maxUnavailable"], 0);
    assert_eq!(peers_of(&one), ["1:my-cluster-0.my-cluster-raft.conveyor.svc:50052"]);
}

#[test]
fn status_and_unrelated_metadata_change_no_hash() {
    let before = seed_desired();
    let mut cluster = seed();
    cluster.status = Some(EtlRouterClusterStatus {
        phase: Some(crate::crd::ClusterPhase::Ready),
        observed_generation: Some(1),
        ready_replicas: Some(3),
        leader: Some(s("my-cluster-0")),
        leader_id: Some(1),
        ..EtlRouterClusterStatus::default()
    });
    cluster.metadata.labels = Some(BTreeMap::from([(s("team"), s("data"))]));
    cluster.metadata.annotations = Some(BTreeMap::from([(s("note"), s("hello"))]));
    cluster.metadata.resource_version = Some(s("99999"));
    cluster.metadata.generation = Some(7);
    cluster.metadata.managed_fields = None;
    let after = build(&cluster, 3);
    assert_eq!(hashes(&before), hashes(&after));
    assert_eq!(before, after);
}

#[test]
fn seed_spec_is_the_example_in_deploy() {
    let text = include_str!("../../../deploy/examples/seed.yaml");
    let first = text.split("\n---").next().unwrap();
    let value: serde_json::Value = serde_norway::from_str(first).unwrap();
    assert_eq!(value["kind"], "EtlRouterCluster");
    assert_eq!(value["metadata"]["name"], "my-cluster");
    let spec: EtlRouterClusterSpec = serde_json::from_value(value["spec"].clone()).unwrap();
    assert_eq!(spec, seed().spec);
}
