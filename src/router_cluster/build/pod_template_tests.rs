//! `spec.podTemplate` on the built StatefulSet: what reaches the pod, what
//! the operator keeps for itself, and that a change rolls the pods.

use serde_json::json;

use super::tests::{build, router, seed, seed_desired};
use super::*;

fn with_template(template: serde_json::Value) -> EtlRouterCluster {
    let mut cluster = seed();
    cluster.spec.pod_template = Some(serde_json::from_value(template).unwrap());
    cluster
}

fn pod_meta(d: &Desired) -> &ObjectMeta {
    d.stateful_set.spec.as_ref().unwrap().template.metadata.as_ref().unwrap()
}

fn pod_json(d: &Desired) -> serde_json::Value {
    serde_json::to_value(&d.stateful_set.spec.as_ref().unwrap().template.spec).unwrap()
}

fn full_template() -> serde_json::Value {
    json!({
        "labels": {"team": "data"},
        "annotations": {"example.com/owner": "data-team"},
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccountName": "router",
        "priorityClassName": "etl-critical",
        "env": [{"name": "RUST_LOG", "value": "debug"}, {"name": "GREETING", "value": "$(CONVEYOR_POD_NAME)"}],
    })
}

#[test]
fn every_template_field_reaches_the_pod() {
    let mut cluster = with_template(full_template());
    cluster.spec.placement.topology_spread_constraints =
        vec![serde_json::from_value(json!({
        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
    }))
    .unwrap()];
    let built = build(&cluster, 3);
    let meta = pod_meta(&built);
    assert_eq!(meta.labels.as_ref().unwrap()["team"], "data");
    assert_eq!(meta.annotations.as_ref().unwrap()["example.com/owner"], "data-team");
    let pod = pod_json(&built);
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
    assert_eq!(pod["serviceAccountName"], "router");
    assert_eq!(pod["priorityClassName"], "etl-critical");
    assert_eq!(pod["topologySpreadConstraints"][0]["topologyKey"], "topology.kubernetes.io/zone");
    // The router needs no API access, whatever account it runs as.
    assert_eq!(pod["automountServiceAccountToken"], false);
    let names: Vec<&str> =
        router(&built.stateful_set).env.as_ref().unwrap().iter().map(|v| v.name.as_str()).collect();
    // The operator's variables first, so the template's can reference them.
    assert_eq!(&names[..5], launch::ENV_NAMES);
    assert_eq!(&names[5..], ["RUST_LOG", "GREETING"]);
}

#[test]
fn the_operators_labels_annotation_and_variables_win_and_are_named() {
    let cluster = with_template(json!({
        "labels": {"conveyor.etl/cluster": "other", "app.kubernetes.io/name": "mine", "team": "data"},
        "annotations": {"conveyor.etl/config-hash": "0"},
        "env": [{"name": "CONVEYOR_POD_NAME", "value": "x"}, {"name": "RUST_LOG", "value": "debug"}],
    }));
    let built = build(&cluster, 3);
    let meta = pod_meta(&built);
    let labels = meta.labels.as_ref().unwrap();
    for (key, value) in selector_labels("my-cluster") {
        assert_eq!(labels[&key], value, "{key}");
    }
    assert_eq!(labels["team"], "data");
    assert_eq!(
        meta.annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION],
        pod_meta(&seed_desired()).annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION]
    );
    let env = router(&built.stateful_set).env.clone().unwrap();
    let pod_names: Vec<_> = env.iter().filter(|v| v.name == "CONVEYOR_POD_NAME").collect();
    assert_eq!(pod_names.len(), 1);
    assert!(pod_names[0].value_from.is_some(), "the operator's downward-API variable is kept");
    assert!(env.iter().any(|v| v.name == "RUST_LOG"));

    let warnings = overridden_by_operator(&cluster.spec);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings[0].starts_with("spec.podTemplate.labels sets app.kubernetes.io/name, conveyor.etl/cluster")
    );
    assert!(warnings[1].starts_with("spec.podTemplate.annotations sets conveyor.etl/config-hash"));
    assert!(warnings[2].starts_with("spec.podTemplate.env sets CONVEYOR_POD_NAME"));
    assert!(overridden_by_operator(&with_template(full_template()).spec).is_empty());
}

#[test]
fn a_template_change_changes_the_pod_template_and_none_changes_nothing() {
    let seed_template = seed_desired().stateful_set.spec.unwrap().template;
    // An empty template builds the very pod the seed did: no roll on upgrade.
    let empty = build(&with_template(json!({})), 3).stateful_set.spec.unwrap().template;
    assert_eq!(empty, seed_template);
    let labelled = build(&with_template(json!({"labels": {"team": "data"}})), 3);
    let relabelled = build(&with_template(json!({"labels": {"team": "analytics"}})), 3);
    let secret = build(&with_template(json!({"imagePullSecrets": [{"name": "regcred"}]})), 3);
    let templates = [&labelled, &relabelled, &secret].map(|d| d.stateful_set.spec.clone().unwrap().template);
    for (i, template) in templates.iter().enumerate() {
        assert_ne!(*template, seed_template, "template {i}");
        for other in &templates[i + 1..] {
            assert_ne!(template, other);
        }
    }
    assert_ne!(hash_of_sts(&labelled), hash_of_sts(&relabelled), "the change is applied");
}

fn hash_of_sts(d: &Desired) -> String {
    d.stateful_set.metadata.annotations.as_ref().unwrap()[HASH_ANNOTATION].clone()
}

fn restarted_at(value: &str) -> EtlRouterCluster {
    let mut cluster = seed();
    cluster.metadata.annotations = Some(std::collections::BTreeMap::from([(
        crate::runtime::RESTARTED_AT_ANNOTATION.to_owned(),
        value.to_owned(),
    )]));
    cluster
}

#[test]
fn a_restart_request_reaches_the_template_and_each_new_one_rolls_the_pods() {
    let first = build(&restarted_at("2030-01-01T00:00:00Z"), 3);
    let again = build(&restarted_at("2030-01-01T00:00:00Z"), 3);
    let second = build(&restarted_at("2030-01-01T00:05:00Z"), 3);
    assert_eq!(
        pod_meta(&first).annotations.as_ref().unwrap()[crate::runtime::RESTARTED_AT_ANNOTATION],
        "2030-01-01T00:00:00Z"
    );
    // Nothing else changes: the same request builds the same objects.
    assert_eq!(first, again);
    assert_eq!(first.config_map, seed_desired().config_map);
    let template = |d: &Desired| d.stateful_set.spec.clone().unwrap().template;
    assert_ne!(template(&first), template(&seed_desired()), "a first request rolls the pods");
    assert_ne!(template(&first), template(&second), "a new request rolls them again");
    assert_ne!(hash_of_sts(&first), hash_of_sts(&second), "the change is applied");
    // The cluster's request wins over a template annotation of the same key.
    let mut both = restarted_at("2030-01-01T00:05:00Z");
    both.spec.pod_template =
        Some(serde_json::from_value(json!({"annotations": {"conveyor.etl/restartedAt": "mine"}})).unwrap());
    assert_eq!(
        pod_meta(&build(&both, 3)).annotations.as_ref().unwrap()[crate::runtime::RESTARTED_AT_ANNOTATION],
        "2030-01-01T00:05:00Z"
    );
}
