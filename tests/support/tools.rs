//! helm and the current kubectl that `tests/harness/install-tools.sh` puts
//! in its cache (`.ci/run` calls it). The older tests use the `kubectl` on the
//! PATH; the install tests use these, the versions the README's commands name.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::ControlPlane;

/// `CONVEYOR_TOOLS_DIR`, or the cache folder the install script defaults to.
pub fn tools_dir() -> PathBuf {
    conveyor_testbed::cache_folder("CONVEYOR_TOOLS_DIR", "tools")
}

/// The path of `helm` or `kubectl` in the tools folder; panics with what to run when it is missing.
pub fn tool(name: &str) -> PathBuf {
    let path = tools_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `bash tests/harness/install-tools.sh` (it installs helm and kubectl; \
         set CONVEYOR_TOOLS_DIR to use another folder)",
        path.display()
    );
    path
}

/// helm, bound to `plane` as admin when one is given.
pub fn helm_command(plane: Option<&ControlPlane>) -> Command {
    let mut command = Command::new(tool("helm"));
    if let Some(plane) = plane {
        command.arg("--kubeconfig").arg(&plane.kubeconfig);
    }
    command
}

/// Runs helm and returns its output, whatever the exit status.
pub fn helm(plane: Option<&ControlPlane>, args: &[&str]) -> Output {
    helm_command(plane).args(args).output().expect("helm runs")
}

/// Runs helm and panics with its stderr unless it succeeds; returns stdout.
pub fn helm_ok(plane: Option<&ControlPlane>, args: &[&str]) -> String {
    let output = helm(plane, args);
    assert!(
        output.status.success(),
        "helm {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// The current kubectl from the tools folder, bound to `plane` as admin.
pub fn kubectl_new(plane: &ControlPlane, args: &[&str]) -> Output {
    Command::new(tool("kubectl"))
        .arg("--kubeconfig")
        .arg(&plane.kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs")
}

/// As `kubectl_new`, panicking with stderr unless it succeeds; returns stdout.
pub fn kubectl_new_ok(plane: &ControlPlane, args: &[&str]) -> String {
    let output = kubectl_new(plane, args);
    assert!(
        output.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// The documents of a multi-document YAML stream, as JSON values (empty ones dropped).
pub fn yaml_documents(text: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(text)
        .map(|document| serde_json::Value::deserialize(document).expect("valid YAML"))
        .filter(|value| !value.is_null())
        .collect()
}

/// Holds a Deployment (as JSON) to the restricted Pod Security settings, the
/// probes on the HTTP port and the downward-API env the manifests promise.
pub fn assert_restricted_operator_deployment(deployment: &serde_json::Value, http_port: u64) {
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{pod:#}");
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{pod:#}");
    assert_eq!(pod["automountServiceAccountToken"], serde_json::Value::Null, "the operator needs its token");
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "{pod:#}");
    let container = &containers[0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false, "{security:#}");
    assert_eq!(security["readOnlyRootFilesystem"], true, "{security:#}");
    assert_eq!(security["runAsNonRoot"], true, "{security:#}");
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]), "{security:#}");
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault", "{security:#}");
    assert!(security["privileged"] != true, "{security:#}");

    let port = &container["ports"][0];
    assert_eq!((port["name"].as_str(), port["containerPort"].as_u64()), (Some("http"), Some(http_port)));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}: {get:#}");
        assert!(get["port"] == "http" || get["port"] == http_port, "{probe}: {get:#}");
    }
    let limits = &container["resources"]["limits"];
    assert!(!limits["cpu"].is_null() && !limits["memory"].is_null(), "no limits: {container:#}");
    assert!(!container["resources"]["requests"]["memory"].is_null(), "no requests: {container:#}");

    let env = container["env"].as_array().expect("env");
    let field_ref = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .map(|e| e["valueFrom"]["fieldRef"]["fieldPath"].clone())
            .unwrap_or_else(|| panic!("no env {name}: {env:?}"))
    };
    assert_eq!(field_ref("POD_NAME"), "metadata.name");
    assert_eq!(field_ref("POD_NAMESPACE"), "metadata.namespace");
    let http = env.iter().find(|e| e["name"] == "CONVEYOR_HTTP_ADDRESS").expect("CONVEYOR_HTTP_ADDRESS");
    assert_eq!(http["value"], format!("0.0.0.0:{http_port}"));
}

/// The RBAC rules of a role as (apiGroups, resources, verbs), sorted, to compare two roles.
pub fn rules(role: &serde_json::Value) -> Vec<(Vec<String>, Vec<String>, Vec<String>)> {
    let strings = |value: &serde_json::Value| -> Vec<String> {
        let mut list: Vec<String> = value
            .as_array()
            .map(|items| items.iter().map(|item| item.as_str().expect("string").to_owned()).collect())
            .unwrap_or_default();
        list.sort();
        list
    };
    let mut rules: Vec<_> = role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|rule| (strings(&rule["apiGroups"]), strings(&rule["resources"]), strings(&rule["verbs"])))
        .collect();
    rules.sort();
    rules
}

/// No wildcard and nothing about Secrets in a role's rules.
pub fn assert_least_privilege(role: &serde_json::Value) {
    for (groups, resources, verbs) in rules(role) {
        for item in groups.iter().chain(&resources).chain(&verbs) {
            assert!(!item.contains('*'), "wildcard in {groups:?} {resources:?} {verbs:?}");
        }
        assert!(!resources.iter().any(|r| r.starts_with("secrets")), "Secrets in {resources:?}");
    }
}
