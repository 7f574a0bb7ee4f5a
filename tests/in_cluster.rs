//! The in-cluster configuration, for real: the operator binary runs as it
//! does in its pod, with no kubeconfig, `KUBERNETES_SERVICE_HOST` and
//! `KUBERNETES_SERVICE_PORT` set, and the service account's mount at the
//! standard path `/var/run/secrets/kubernetes.io/serviceaccount` (`token`,
//! `ca.crt`, `namespace`). The mount is made the way a kubelet would, in a
//! private mount namespace of the operator's process only (`unshare
//! --mount`, then a bind mount of a temporary folder holding a token the
//! TokenRequest API issued for the service account `kubectl apply -k
//! deploy/operator/` creates, the control plane's CA and the namespace).
//! Needs root (or CAP_SYS_ADMIN), as mount namespaces do; the test fails
//! saying so otherwise.
//!
//! kube's in-cluster configuration (`Config::incluster`, which
//! `Client::try_default` falls back to) connects to the host and port in
//! those variables, as client-go does; the test control plane's serving
//! certificate names `127.0.0.1`, where the apiserver listens.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::PostParams;

use support::kubelet::FakeKubelet;
use support::objects::{api_in, example_set, kind_of, wait_all_ready};
use support::operator_process::OperatorProcess;
use support::tools::{kubectl_new_ok, tool};
use support::{ControlPlane, eventually, repo_path, shared_with_crds, test_namespace};

/// Where deploy/operator puts the operator, and its service account.
const NAMESPACE: &str = "conveyor-system";
const ACCOUNT: &str = "conveyor-etl-operator";
const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Mounts a tmpfs where the service account folder goes (over
/// /var/run/secrets, or over /var/run when there is no such folder: only
/// this process sees it), binds `$1` there read-only and runs the rest.
const MOUNT_SCRIPT: &str = r#"set -e
if [ -d /var/run/secrets ]; then base=/var/run/secrets; else base=/var/run; fi
mount -t tmpfs -o mode=0755 conveyor-test "$base"
mkdir -p /var/run/secrets/kubernetes.io/serviceaccount
mount --bind "$1" /var/run/secrets/kubernetes.io/serviceaccount
mount -o remount,bind,ro /var/run/secrets/kubernetes.io/serviceaccount
shift
exec "$@"
"#;

/// deploy/operator applied with kubectl, once per test binary.
fn kustomized() -> &'static ControlPlane {
    static APPLIED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let plane = shared_with_crds();
    APPLIED.get_or_init(|| {
        let path = repo_path("deploy/operator");
        kubectl_new_ok(plane, &["apply", "-k", path.to_str().unwrap()]);
    });
    plane
}

/// The service account's files as the kubelet projects them: a token from
/// the TokenRequest API, the cluster's CA and the namespace.
struct ServiceAccountFiles {
    dir: tempfile::TempDir,
    /// An empty home, so no ~/.kube/config is found.
    home: tempfile::TempDir,
}

impl ServiceAccountFiles {
    async fn issue(plane: &ControlPlane) -> ServiceAccountFiles {
        let token = support::service_account_token(plane, NAMESPACE, ACCOUNT).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), token).unwrap();
        std::fs::copy(plane.dir().join("ca.crt"), dir.path().join("ca.crt")).unwrap();
        std::fs::write(dir.path().join("namespace"), NAMESPACE).unwrap();
        ServiceAccountFiles { dir, home: tempfile::tempdir().unwrap() }
    }

    /// `program` in a mount namespace of its own where these files are the
    /// standard mount, with the in-cluster environment and no kubeconfig.
    fn command(&self, plane: &ControlPlane, program: &Path) -> Command {
        mounted(self.dir.path(), self.home.path(), plane, program)
    }
}

/// `program` in a mount namespace of its own where `dir` is the standard
/// service account mount, with what a pod's container sees: the API
/// service's host and port, and no kubeconfig (no KUBECONFIG, `home` empty).
fn mounted(dir: &Path, home: &Path, plane: &ControlPlane, program: &Path) -> Command {
    let port = plane.server.rsplit(':').next().unwrap();
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--", "sh", "-c", MOUNT_SCRIPT, "sh"])
        .arg(dir)
        .arg(program)
        .env_remove("KUBECONFIG")
        .env("HOME", home)
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", port);
    command
}

/// The args and environment of deploy/operator's Deployment as the kubelet
/// gives them to the container (the downward API filled in for `pod`).
async fn deployment_container(plane: &ControlPlane, pod: &str) -> (Vec<String>, Vec<(String, String)>) {
    let deployments: Api<Deployment> = Api::namespaced(plane.client().await, NAMESPACE);
    let deployment = deployments.get(ACCOUNT).await.unwrap();
    let pod_spec = deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod_spec.service_account_name.as_deref(), Some(ACCOUNT));
    let container = pod_spec.containers.into_iter().next().unwrap();
    let env = container
        .env
        .unwrap_or_default()
        .into_iter()
        .map(|var| {
            let value = match (var.value, var.value_from) {
                (Some(value), _) => value,
                (None, Some(from)) => match from.field_ref.map(|field| field.field_path).as_deref() {
                    Some("metadata.name") => pod.to_owned(),
                    Some("metadata.namespace") => NAMESPACE.to_owned(),
                    other => panic!("{}: a source this test does not fill in: {other:?}", var.name),
                },
                (None, None) => String::new(),
            };
            (var.name, value)
        })
        .collect();
    (container.args.unwrap_or_default(), env)
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_runs_in_cluster_with_its_service_account_mount() {
    let plane = kustomized();
    let admin = plane.client().await;
    let namespace = test_namespace(&admin, "in-cluster").await;
    let user = format!("system:serviceaccount:{NAMESPACE}:{ACCOUNT}");
    let files = ServiceAccountFiles::issue(plane).await;
    let binary = Path::new(env!("CARGO_BIN_EXE_conveyor-etl-operator"));

    // The mount itself, seen from inside: the files where a pod has them.
    let inside = files.command(plane, Path::new("ls")).arg(MOUNT).output().unwrap();
    assert!(
        inside.status.success(),
        "cannot make the mount (this test needs root for `unshare --mount`): {}",
        text(&inside)
    );
    assert_eq!(
        String::from_utf8_lossy(&inside.stdout).split_whitespace().collect::<Vec<_>>(),
        ["ca.crt", "namespace", "token"]
    );

    // With the mount empty, the same environment has no configuration: the
    // operator says which file is missing and exits.
    let empty = tempfile::tempdir().unwrap();
    let without = mounted(empty.path(), files.home.path(), plane, binary)
        .args(["run"])
        .env("CONVEYOR_HTTP_ADDRESS", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!without.status.success(), "ran without any configuration: {}", text(&without));
    assert!(
        text(&without).contains("in-cluster: (failed to read the default namespace"),
        "{}",
        text(&without)
    );

    // The identity the mount gives, through kubectl's in-cluster
    // configuration: a request outside the ClusterRole (Secrets) is refused
    // to the service account by name.
    let mut kubectl = files.command(plane, &tool("kubectl"));
    let refused = kubectl.args(["get", "secrets", "-n", &namespace]).output().unwrap();
    assert!(!refused.status.success(), "the service account read Secrets: {}", text(&refused));
    assert!(
        text(&refused).contains(&format!("User \"{user}\" cannot list resource \"secrets\"")),
        "{}",
        text(&refused)
    );

    // The operator as deploy/operator's Deployment runs it (leader election
    // on, its Lease in conveyor-system), watching this test's namespace.
    let (args, env) = deployment_container(plane, "conveyor-etl-operator-in-cluster").await;
    let mut env: Vec<(String, String)> =
        env.into_iter().filter(|(name, _)| name != "CONVEYOR_HTTP_ADDRESS").collect();
    env.push(("CONVEYOR_WATCH_NAMESPACE".to_owned(), namespace.clone()));
    assert!(env.contains(&("CONVEYOR_LEADER_ELECTION".to_owned(), "true".to_owned())), "{env:?}");
    let mut command = files.command(plane, binary);
    command.args(&args).envs(env);
    let mut operator = OperatorProcess::spawn(command);
    // It takes the Lease (deploy/operator's Role lets the service account)
    // and is ready once its caches are filled: /readyz answers 200 leading.
    eventually(support::scenario::FORM_TIMEOUT, "the operator's /readyz 200 leading", || {
        let answer = operator.get("/readyz").filter(|(code, body)| *code == 200 && body.contains("leading"));
        std::future::ready(answer)
    })
    .await;
    eventually(support::scenario::FORM_TIMEOUT, "the operator's 'acquired the lease' line", || {
        std::future::ready(
            operator.lines().iter().any(|line| line.contains("acquired the lease")).then_some(()),
        )
    })
    .await;

    // It reconciles: the example set goes Ready.
    let kubelet = FakeKubelet::start(admin.clone(), &namespace, "my-cluster", 50051).await;
    for object in example_set() {
        api_in(&admin, &namespace, &kind_of(&object)).create(&PostParams::default(), &object).await.unwrap();
    }
    wait_all_ready(&admin, &namespace).await;

    // Every status it wrote, and its Lease, the apiserver saw from the
    // service account; none was refused.
    let writes = plane.writes_by(&user);
    let written = |part: &str| writes.iter().any(|w| w.request_uri.contains(part));
    assert!(written(&format!("/namespaces/{NAMESPACE}/leases")), "no Lease write by {user}: {writes:#?}");
    for status in
        ["etlrouterclusters/my-cluster/status", "etlpipelines/user-analytics/status", "statefulsets"]
    {
        assert!(written(status), "no {status} write by {user}");
    }
    let refused: Vec<_> = writes
        .iter()
        .filter(|w| w.response_status.as_ref().and_then(|s| s["code"].as_u64()) == Some(403))
        .collect();
    assert!(refused.is_empty(), "writes refused to {user}: {refused:#?}");
    assert!(operator.exited_within(std::time::Duration::ZERO).is_none(), "{:#?}", operator.lines());
    kubelet.stop().await;
}
