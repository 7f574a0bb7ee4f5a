//! Small helpers over a running control plane: kubectl, CRDs, namespaces, polling.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::ControlPlane;

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Runs `kubectl` against the control plane and returns its output, whatever the exit status.
pub fn kubectl(plane: &ControlPlane, args: &[&str]) -> Output {
    plane.kubectl().args(args).output().expect("kubectl runs")
}

/// Runs `kubectl` and panics with its stderr unless it succeeds; returns stdout.
pub fn kubectl_ok(plane: &ControlPlane, args: &[&str]) -> String {
    let output = kubectl(plane, args);
    assert!(
        output.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// Runs `kubectl` until it succeeds (e.g. `explain`, which works only once the
/// apiserver has published the CRD's OpenAPI schema, a while after Established).
pub fn kubectl_eventually(plane: &ControlPlane, args: &[&str], timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let output = kubectl(plane, args);
        if output.status.success() {
            return String::from_utf8(output.stdout).expect("utf-8 output");
        }
        assert!(
            Instant::now() < deadline,
            "kubectl {} kept failing for {timeout:?}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(200)); // poll interval
    }
}

/// Applies `deploy/crds/crds.yaml` with kubectl and waits until every CRD is Established.
pub fn install_crds(plane: &ControlPlane) {
    let crds = repo_path("deploy/crds/crds.yaml");
    kubectl_ok(plane, &["apply", "-f", crds.to_str().expect("utf-8 path")]);
    kubectl_ok(
        plane,
        &["wait", "--for=condition=Established", "--timeout=60s", "-f", crds.to_str().expect("utf-8 path")],
    );
}

/// The test binary's shared control plane with the CRDs installed.
pub fn shared_with_crds() -> &'static ControlPlane {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let plane = ControlPlane::shared();
    INSTALLED.get_or_init(|| install_crds(plane));
    plane
}

/// Creates a fresh namespace named after the test, so tests sharing a control plane never collide.
/// Like every namespace the tests use, it enforces the `restricted` Pod Security Standard.
pub async fn test_namespace(client: &Client, prefix: &str) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    let suffix = Alphanumeric.sample_string(&mut rand::rng(), 5).to_lowercase();
    let name = format!("{prefix}-{suffix}");
    create_restricted_namespace(client, &name).await;
    name
}

/// The label Pod Security admission reads: pods that do not meet the
/// `restricted` standard are refused in a namespace carrying it.
pub const RESTRICTED: (&str, &str) = ("pod-security.kubernetes.io/enforce", "restricted");

/// Creates namespace `name` enforcing the `restricted` Pod Security Standard.
pub async fn create_restricted_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([(RESTRICTED.0.to_owned(), RESTRICTED.1.to_owned())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces.create(&PostParams::default(), &namespace).await.expect("create namespace");
}

/// Polls `check` until it returns `Some`, panicking with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
    }
}

/// A fresh one-hour token of service account `namespace`/`account`, from the TokenRequest API.
pub async fn service_account_token(plane: &ControlPlane, namespace: &str, account: &str) -> String {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(plane.client().await, namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec { audiences: vec![], expiration_seconds: Some(3600), ..Default::default() },
        ..Default::default()
    };
    let issued = accounts.create_token_request(account, &Default::default(), &request).await.unwrap();
    issued.status.expect("a token").token
}
