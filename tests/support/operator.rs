//! Runs the operator in-process, as the token user `operator` bound to the
//! ClusterRole in deploy/rbac, against one namespace.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kube::Client;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use conveyor_etl_operator::controller::Operator;
use conveyor_etl_operator::router::{ClientOptions, RouterClient};
use conveyor_etl_operator::runtime::namespaces::Namespaces;
use conveyor_etl_operator::runtime::{Context, Timing};

use super::control_plane::{OPERATOR_USER, install_crypto_provider};
use super::{ControlPlane, kubectl_ok, repo_path, shared_with_crds};

/// Router deadlines short enough for tests to see partitions quickly.
pub fn router_options() -> ClientOptions {
    ClientOptions {
        call_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(300),
        max_attempts: 3,
        max_retry_time: Duration::from_secs(2),
        ..ClientOptions::default()
    }
}

pub fn timing() -> Timing {
    Timing {
        health_interval: Duration::from_secs(1),
        progress_interval: Duration::from_millis(300),
        stats_interval: Duration::from_secs(3),
        min_retry_delay: Duration::from_millis(200),
        max_retry_delay: Duration::from_secs(5),
        ..Timing::default()
    }
}

/// Applies the operator's ClusterRole (deploy/rbac) and binds it to the user the operator runs as.
pub fn bind_operator_role(plane: &ControlPlane) {
    kubectl_ok(plane, &["apply", "-f", repo_path("deploy/rbac/cluster-role.yaml").to_str().unwrap()]);
    kubectl_ok(
        plane,
        &[
            "create",
            "clusterrolebinding",
            "conveyor-etl-operator-test",
            "--clusterrole=conveyor-etl-operator",
            &format!("--user={OPERATOR_USER}"),
        ],
    );
}

/// The shared control plane with the CRDs and the operator's RBAC bound to the `operator` user.
pub fn shared_with_rbac() -> &'static ControlPlane {
    static BOUND: OnceLock<()> = OnceLock::new();
    let plane = shared_with_crds();
    BOUND.get_or_init(|| bind_operator_role(plane));
    plane
}

/// A client authenticated as the `operator` user.
pub async fn operator_client(plane: &ControlPlane) -> Client {
    client_as(plane, OPERATOR_USER).await
}

/// A client authenticated as one of the harness's token users.
/// A client for `user` made as the operator's binary makes its own.
pub async fn client_as(plane: &ControlPlane, user: &str) -> Client {
    install_crypto_provider();
    conveyor_etl_operator::controller::client_without_hidden_retries(plane.config(user).await)
        .expect("client")
}

pub struct RunningOperator {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningOperator {
    pub async fn start(plane: &ControlPlane, namespace: &str) -> RunningOperator {
        Self::start_as(plane, namespace, OPERATOR_USER).await
    }

    /// The operator running as `user`, watching `namespace` only.
    pub async fn start_as(plane: &ControlPlane, namespace: &str, user: &str) -> RunningOperator {
        let client = client_as(plane, user).await;
        Self::start_with_client(client, namespace)
    }

    /// The operator running with `client`'s credentials, watching `namespace` only.
    pub fn start_with_client(client: Client, namespace: &str) -> RunningOperator {
        Self::start_with_timing(client, namespace, timing())
    }

    /// As [`RunningOperator::start_with_client`], with `timing`.
    pub fn start_with_timing(client: Client, namespace: &str, timing: Timing) -> RunningOperator {
        Self::start_watching(client, Namespaces::from_list(&[namespace]), timing)
    }

    /// The operator running with `client`'s credentials, watching `namespaces`.
    pub fn start_watching(client: Client, namespaces: Namespaces, timing: Timing) -> RunningOperator {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
        let router = Arc::new(RouterClient::new(router_options()));
        let operator = Operator::new(client, router, timing, namespaces);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            operator.run(shutdown).await.expect("the operator starts");
        });
        RunningOperator { stop: Some(stop), task }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningOperator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A context for calling a reconciler directly, as the `operator` user, with
/// its caches of `namespace` filled and kept current in the background.
/// Its router calls get the default deadline: these tests count writes, and a
/// loaded machine must not turn a slow health answer into one.
pub async fn direct_context(plane: &ControlPlane, namespace: &str) -> (Arc<Context>, JoinHandle<()>) {
    let client = operator_client(plane).await;
    let operator = Operator::new(
        client,
        Arc::new(RouterClient::new(ClientOptions::default())),
        timing(),
        Some(namespace.to_string()),
    );
    operator.detached_context().await
}
