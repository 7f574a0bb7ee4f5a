//! The plain manifests in deploy/ and the Dockerfile: `kubectl apply -k
//! deploy/operator/` against the real apiserver, a server-side dry run of
//! everything in deploy/, and the Dockerfile's build command held equal to
//! the script that builds and checks the router image's static simulator
//! (tests/operator_image.rs holds the operator image to the Dockerfile).

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Api;

use support::tools::{
    assert_least_privilege, assert_restricted_operator_deployment, helm_ok, kubectl_new, kubectl_new_ok,
    rules, yaml_documents,
};
use support::{repo_path, shared_with_crds, test_namespace};

const NAMESPACE: &str = "conveyor-system";

/// Applies deploy/operator/namespace.yaml once per test binary, so the tests
/// that need the namespace never race to create it.
fn operator_namespace(plane: &support::ControlPlane) {
    static APPLIED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    APPLIED.get_or_init(|| {
        kubectl_new_ok(plane, &["apply", "-f", &path("deploy/operator/namespace.yaml")]);
    });
}

fn path(relative: &str) -> String {
    repo_path(relative).to_str().expect("utf-8 path").to_owned()
}

#[tokio::test]
async fn kustomization_applies_and_creates_the_operator_with_least_privilege() {
    let plane = shared_with_crds();
    operator_namespace(plane);
    let applied = kubectl_new_ok(plane, &["apply", "-k", &path("deploy/operator")]);
    for object in [
        "namespace/conveyor-system",
        "serviceaccount/conveyor-etl-operator",
        "clusterrole.rbac.authorization.k8s.io/conveyor-etl-operator",
        "clusterrolebinding.rbac.authorization.k8s.io/conveyor-etl-operator",
        "role.rbac.authorization.k8s.io/conveyor-etl-operator-leader-election",
        "rolebinding.rbac.authorization.k8s.io/conveyor-etl-operator-leader-election",
        "deployment.apps/conveyor-etl-operator",
    ] {
        assert!(applied.contains(object), "{object} not applied:\n{applied}");
    }

    let client = plane.client().await;
    let namespace = Api::<Namespace>::all(client.clone()).get(NAMESPACE).await.unwrap();
    assert_eq!(namespace.metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"], "restricted");
    Api::<ServiceAccount>::namespaced(client.clone(), NAMESPACE).get("conveyor-etl-operator").await.unwrap();

    // The ClusterRole is deploy/rbac's, bound to the service account.
    let role = Api::<ClusterRole>::all(client.clone()).get("conveyor-etl-operator").await.unwrap();
    let role = serde_json::to_value(role).unwrap();
    let file = yaml_documents(&std::fs::read_to_string(repo_path("deploy/rbac/cluster-role.yaml")).unwrap());
    assert_eq!(rules(&role), rules(&file[0]));
    assert_least_privilege(&role);
    let binding = Api::<ClusterRoleBinding>::all(client.clone()).get("conveyor-etl-operator").await.unwrap();
    assert_eq!(binding.role_ref.name, "conveyor-etl-operator");
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str(), subject.namespace.as_deref()),
        ("ServiceAccount", "conveyor-etl-operator", Some(NAMESPACE))
    );

    // Leases in its own namespace only, for leader election.
    let leases = Api::<Role>::namespaced(client.clone(), NAMESPACE)
        .get("conveyor-etl-operator-leader-election")
        .await
        .unwrap();
    let leases = serde_json::to_value(leases).unwrap();
    assert_least_privilege(&leases);
    assert_eq!(rules(&leases)[0].0, ["coordination.k8s.io"]);
    assert_eq!(rules(&leases)[0].1, ["leases"]);
    let lease_binding = Api::<RoleBinding>::namespaced(client.clone(), NAMESPACE)
        .get("conveyor-etl-operator-leader-election")
        .await
        .unwrap();
    assert_eq!(lease_binding.subjects.unwrap()[0].name, "conveyor-etl-operator");

    let deployment =
        Api::<Deployment>::namespaced(client.clone(), NAMESPACE).get("conveyor-etl-operator").await.unwrap();
    let spec = deployment.spec.as_ref().unwrap();
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("conveyor-etl-operator"));
    assert_restricted_operator_deployment(&serde_json::to_value(&deployment).unwrap(), 8080);

    // Applying again changes nothing.
    let again = kubectl_new_ok(plane, &["apply", "-k", &path("deploy/operator")]);
    assert!(again.lines().all(|line| line.ends_with("unchanged")), "{again}");
}

#[tokio::test]
async fn everything_in_deploy_passes_a_server_side_dry_run() {
    let plane = shared_with_crds();
    let client = plane.client().await;
    // Namespaced objects need their namespace to exist for a dry run.
    operator_namespace(plane);
    let examples_namespace = test_namespace(&client, "dry-run").await;
    let chart_namespace = test_namespace(&client, "dry-run-chart").await;
    let chart = helm_ok(
        None,
        &[
            "template",
            "conveyor-etl-operator",
            &path("deploy/helm/conveyor-etl-operator"),
            "-n",
            &chart_namespace,
        ],
    );
    let chart_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(chart_file.path(), &chart).unwrap();
    let chart_path = chart_file.path().to_str().unwrap().to_owned();

    // Every entry of deploy/ must be listed here: a new one fails the test
    // until it is dry-run too.
    let mut entries: Vec<String> = std::fs::read_dir(repo_path("deploy"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        ["crds", "examples", "helm", "krew", "observability", "operator", "rbac"],
        "a new entry in deploy/"
    );
    // deploy/krew holds the plugin's krew manifest (checked by
    // crates/kubectl-conveyor's tests). deploy/observability holds no
    // Kubernetes objects: a Grafana dashboard (its queries are held to the
    // exported metrics by a unit test) and an OpenTelemetry Collector
    // config. Both must at least parse.
    let dashboard =
        std::fs::read_to_string(repo_path("deploy/observability/grafana-dashboard.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    let collector = std::fs::read_to_string(repo_path("deploy/observability/otel-collector.yaml")).unwrap();
    let collector: serde_json::Value =
        serde_norway::from_str(&collector).expect("the collector config is YAML");
    assert!(collector["receivers"]["otlp"].is_object(), "the collector receives OTLP");
    let (crds, rbac, operator, examples) = (
        path("deploy/crds/crds.yaml"),
        path("deploy/rbac"),
        path("deploy/operator"),
        path("deploy/examples"),
    );
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("crds", vec!["-f", &crds]),
        ("rbac", vec!["-k", &rbac]),
        ("operator", vec!["-k", &operator]),
        ("examples", vec!["-n", &examples_namespace, "-f", &examples]),
        ("helm", vec!["-n", &chart_namespace, "-f", &chart_path]),
    ];
    for (what, args) in runs {
        let mut command = vec!["apply", "--dry-run=server"];
        command.extend(args);
        let output = kubectl_new(plane, &command);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "deploy/{what} fails a server dry run: {}{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!stdout.trim().is_empty(), "deploy/{what}: nothing applied");
        assert!(stdout.lines().all(|line| line.ends_with("(server dry run)")), "{what}: {stdout}");
    }
    // A dry run writes nothing: the examples' namespace stays empty.
    let listed = support::kubectl_ok(plane, &["get", "conveyor", "-n", &examples_namespace, "-o", "name"]);
    assert!(listed.trim().is_empty(), "dry run created {listed}");
}

/// The `cargo build` line of a Dockerfile or shell script, without `RUN `,
/// a leading `&& ` or a continuation (`\\`).
fn build_command(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(|line| {
            line.trim().trim_start_matches("RUN ").trim_start_matches("&& ").trim_end_matches('\\').trim()
        })
        .filter(|line| line.contains("cargo build"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one `cargo build` line, found {lines:?}");
    lines[0].to_owned()
}

#[test]
fn dockerfile_builds_static_binaries_with_the_checked_command_on_a_non_root_empty_base() {
    let dockerfile = std::fs::read_to_string(repo_path("Dockerfile")).unwrap();
    let script = std::fs::read_to_string(repo_path("tests/harness/build-static.sh")).unwrap();
    let command = build_command(&dockerfile);
    // The image ships the `dist` profile, the one the benchmark measures; the
    // simulator's static build may stay with `release` (nothing measures it).
    assert!(command.contains("--profile dist"), "the image is not built with the dist profile: {command}");
    assert_eq!(
        command.replace("--profile dist", "--release"),
        build_command(&script),
        "the Dockerfile and tests/harness/build-static.sh (the router image's simulator) must build with the same command, profile aside"
    );
    assert!(command.contains("+crt-static") && command.contains("--locked"));
    let target = command.split("--target ").nth(1).unwrap().split_whitespace().next().unwrap();

    // Multi-stage; the last stage is empty but for the binaries, non-root, no shell.
    let stages: Vec<&str> = dockerfile.lines().filter(|line| line.starts_with("FROM ")).collect();
    assert!(stages.len() >= 2, "{stages:?}");
    assert_eq!(*stages.last().unwrap(), "FROM scratch");
    let last_stage = dockerfile.rsplit("FROM scratch").next().unwrap();
    let user = last_stage.lines().find_map(|line| line.strip_prefix("USER ")).expect("a USER");
    let uid: u32 = user.split(':').next().unwrap().parse().expect("a numeric user, for runAsNonRoot");
    assert_ne!(uid, 0);
    assert!(!last_stage.contains("RUN "), "the runtime stage runs nothing (it has no shell)");
    assert!(last_stage.contains("ENTRYPOINT [\"/usr/local/bin/conveyor-etl-operator\"]"));
    // It holds what that command built: the build stage takes the binary out
    // of its cache-mounted target folder, the last stage copies it.
    assert!(
        dockerfile.contains(&format!(
            "install -D -m 0755 target/{target}/dist/conveyor-etl-operator /out/conveyor-etl-operator"
        )),
        "the build stage does not keep the binary its cargo command built"
    );
    assert!(
        last_stage
            .contains("COPY --from=build /out/conveyor-etl-operator /usr/local/bin/conveyor-etl-operator")
    );

    // The build stage's Rust is this machine's (tests/harness/base-images.sh
    // makes that image from it): a normal public image name.
    let rustc = std::process::Command::new("rustc").arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&rustc.stdout).split_whitespace().nth(1).unwrap().to_owned();
    let minor = version.rsplit_once('.').unwrap().0;
    assert_eq!(stages[0], format!("FROM rust:{minor}-bookworm AS build"), "the build stage's FROM");
    // The manifests run the image as that user.
    let deployment = std::fs::read_to_string(repo_path("deploy/operator/deployment.yaml")).unwrap();
    assert!(deployment.contains(&format!("runAsUser: {uid}")));

    let ignore = std::fs::read_to_string(repo_path(".dockerignore")).unwrap();
    for excluded in ["target/", ".git/"] {
        assert!(ignore.lines().any(|line| line == excluded), ".dockerignore lacks {excluded}");
    }
    // Whatever the build stage copies is not ignored.
    for line in dockerfile.lines().filter(|line| line.starts_with("COPY ") && !line.contains("--from")) {
        let sources: Vec<&str> = line.split_whitespace().skip(1).collect();
        for source in &sources[..sources.len() - 1] {
            assert!(repo_path(source).exists(), "the Dockerfile copies {source}, which does not exist");
            let ignored = ignore.lines().any(|rule| rule.trim_end_matches('/') == *source);
            assert!(!ignored, ".dockerignore drops {source}, which the build copies");
        }
    }
}
