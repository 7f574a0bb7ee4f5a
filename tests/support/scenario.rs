//! A router-cluster scenario on the shared control plane: its own namespace,
//! a fake kubelet with a simulated router node per pod, and the operator
//! running in-process under its RBAC.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::Client;
use kube::api::{Api, ListParams};

use conveyor_etl_operator::crd::{ClusterPhase, EtlRouterCluster};
use conveyor_router_sim::SimOptions;

use super::kubelet::FakeKubelet;
use super::operator::{RunningOperator, shared_with_rbac};
use super::{ControlPlane, test_namespace};

pub use conveyor_testbed::examples::seed_cluster;

pub const FORM_TIMEOUT: Duration = Duration::from_secs(60);

/// A roll waits on pod evictions. A replaced router pod keeps its name, and
/// when the StatefulSet recreates it before the disruption controller has
/// seen the old one go (the fake kubelet's pods go at once, a real
/// kubelet's take their grace period), the controller counts the new pod as
/// disrupted, and refuses the next eviction, for its DeletionTimeout of two
/// minutes.
pub const ROLL_TIMEOUT: Duration = Duration::from_secs(60 + 120);

pub struct Scenario {
    pub plane: &'static ControlPlane,
    pub client: Client,
    pub namespace: String,
    pub clusters: Api<EtlRouterCluster>,
    pub kubelet: FakeKubelet,
    pub operator: Option<RunningOperator>,
}

impl Scenario {
    pub async fn new(prefix: &str) -> Scenario {
        Self::with_sim(prefix, SimOptions::default()).await
    }

    /// A scenario whose simulated router nodes run with `options`.
    pub async fn with_sim(prefix: &str, options: SimOptions) -> Scenario {
        let plane = shared_with_rbac();
        let client = plane.client().await;
        let namespace = test_namespace(&client, prefix).await;
        let kubelet = FakeKubelet::start_with(client.clone(), &namespace, "my-cluster", 50051, options).await;
        let operator = Some(RunningOperator::start(plane, &namespace).await);
        let clusters = Api::namespaced(client.clone(), &namespace);
        Scenario { plane, client, namespace, clusters, kubelet, operator }
    }

    pub async fn create(&self, cluster: &EtlRouterCluster) {
        self.clusters.create(&Default::default(), cluster).await.expect("create cluster");
    }

    pub async fn get(&self) -> EtlRouterCluster {
        self.clusters.get("my-cluster").await.expect("get cluster")
    }

    pub async fn wait_for(&self, what: &str, check: impl Fn(&EtlRouterCluster) -> bool) -> EtlRouterCluster {
        self.wait_within(FORM_TIMEOUT, what, check).await
    }

    pub async fn wait_within(
        &self,
        timeout: Duration,
        what: &str,
        check: impl Fn(&EtlRouterCluster) -> bool,
    ) -> EtlRouterCluster {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let cluster = self.clusters.get("my-cluster").await.expect("get cluster");
            if check(&cluster) {
                return cluster;
            }
            if std::time::Instant::now() >= deadline {
                let events = super::kubectl(self.plane, &["get", "events", "-n", &self.namespace]);
                let pods = super::kubectl(
                    self.plane,
                    &["get", "pods,statefulsets,pvc", "-n", &self.namespace, "-o", "wide"],
                );
                panic!(
                    "timed out waiting for {what}; status: {:#?}\nevents:\n{}\nobjects:\n{}{}",
                    cluster.status,
                    String::from_utf8_lossy(&events.stdout),
                    String::from_utf8_lossy(&pods.stdout),
                    String::from_utf8_lossy(&pods.stderr),
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
        }
    }

    /// A second router cluster `name` in the scenario's namespace, with its
    /// own kubelet and simulated router, once it is Ready.
    pub async fn ready_cluster_beside(&self, name: &str) -> FakeKubelet {
        let kubelet = FakeKubelet::start(self.client.clone(), &self.namespace, name, 50051).await;
        self.create(&seed_cluster(name)).await;
        super::eventually(FORM_TIMEOUT, &format!("EtlRouterCluster {name} Ready"), || async {
            let cluster = self.clusters.get(name).await.ok()?;
            (phase_of(&cluster) == Some(ClusterPhase::Ready)).then_some(())
        })
        .await;
        kubelet
    }

    pub async fn wait_phase(&self, phase: ClusterPhase) -> EtlRouterCluster {
        self.wait_for(&format!("phase {phase:?}"), |c| phase_of(c) == Some(phase)).await
    }

    /// (type, reason, note) of the Events about the cluster, oldest first.
    pub async fn events(&self) -> Vec<(String, String, String)> {
        self.events_of("my-cluster").await
    }

    /// Polls the cluster's Events until one matches: the runtime publishes an
    /// Event after the status write it tells of, so a test that has just seen
    /// the status must wait for the Event.
    pub async fn wait_event(&self, what: &str, matches: impl Fn(&str, &str, &str) -> bool) {
        super::eventually(FORM_TIMEOUT, what, || async {
            let events = self.events().await;
            events.iter().any(|(type_, reason, note)| matches(type_, reason, note)).then_some(())
        })
        .await
    }

    /// (type, reason, note) of the Events about cluster `name`, oldest first.
    pub async fn events_of(&self, name: &str) -> Vec<(String, String, String)> {
        self.events_regarding("EtlRouterCluster", name)
            .await
            .into_iter()
            .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// The Events about `kind`/`name` in the scenario's namespace, oldest first.
    pub async fn events_regarding(&self, kind: &str, name: &str) -> Vec<KubeEvent> {
        let api: Api<KubeEvent> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut events: Vec<KubeEvent> = api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.regarding
                    .as_ref()
                    .is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
            })
            .collect();
        events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        events
    }
}

pub fn phase_of(cluster: &EtlRouterCluster) -> Option<ClusterPhase> {
    cluster.status.as_ref().and_then(|s| s.phase)
}

pub fn condition<'a>(cluster: &'a EtlRouterCluster, type_: &str) -> (&'a str, &'a str, &'a str) {
    let c = cluster
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}
