//! Plays the kubelet for one router cluster: there is no scheduler or
//! kubelet in the local control plane (tests and demo), so this marks the cluster's pods
//! Running and Ready with a loopback IP and runs a simulated router node on
//! that IP, exactly where the operator will look for it.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinHandle;

use conveyor_etl_operator::router_cluster::build::ordinal_of;
use conveyor_router_sim::{SimCluster, SimOptions};

/// What a test can change about the kubelet while it runs.
#[derive(Default)]
struct Knobs {
    /// Pods with an ordinal below this are started; the rest wait (lets a
    /// test hold a cluster in RaftForming).
    ready_below: AtomicU32,
    /// Images whose pods never start (a bad image: not pulled, crashing, whatever).
    broken_images: Mutex<HashSet<String>>,
}

pub struct FakeKubelet {
    pub sim: Arc<SimCluster>,
    knobs: Arc<Knobs>,
    task: JoinHandle<()>,
    subnet: [u8; 2],
    /// Holds the subnet for as long as this kubelet lives.
    _claim: TcpListener,
    client: Client,
    namespace: String,
}

/// A /24 of loopback addresses (`127.a.b.0/24`) no other fake kubelet uses
/// while this one lives, in this process or another (test binaries of
/// several checkouts may share a machine): claimed by listening on its `.1`
/// at `port` (pods get `.10` and up), so a subnet in use elsewhere fails to
/// bind and the next one is tried.
pub fn claim_subnet(port: u16) -> ([u8; 2], TcpListener) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut last = None;
    for _ in 0..240 * 256 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) + (std::process::id() % 200) * 256;
        let subnet = [10 + (n / 256 % 240) as u8, (n % 256) as u8];
        match TcpListener::bind((Ipv4Addr::new(127, subnet[0], subnet[1], 1), port)) {
            Ok(claim) => return (subnet, claim),
            Err(error) => last = Some(error),
        }
    }
    panic!("no free loopback subnet for simulated router nodes: {last:?}")
}

pub fn pod_ip(subnet: [u8; 2], ordinal: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, subnet[0], subnet[1], 10 + ordinal as u8)
}

impl FakeKubelet {
    pub async fn start(client: Client, namespace: &str, cluster: &str, grpc_port: u16) -> FakeKubelet {
        Self::start_with(client, namespace, cluster, grpc_port, SimOptions::default()).await
    }

    /// Like [`FakeKubelet::start`], its simulated nodes run with `options`
    /// (e.g. the public router's leased registry).
    pub async fn start_with(
        client: Client,
        namespace: &str,
        cluster: &str,
        grpc_port: u16,
        options: SimOptions,
    ) -> FakeKubelet {
        let sim = Arc::new(SimCluster::start(Vec::new(), options).await.expect("start simulator"));
        let knobs = Arc::new(Knobs { ready_below: AtomicU32::new(u32::MAX), ..Knobs::default() });
        let (subnet, claim) = claim_subnet(grpc_port);
        let task = tokio::spawn(run(
            client.clone(),
            namespace.to_string(),
            cluster.to_string(),
            grpc_port,
            subnet,
            sim.clone(),
            knobs.clone(),
        ));
        FakeKubelet { sim, knobs, task, subnet, _claim: claim, client, namespace: namespace.to_string() }
    }

    /// Starts only pods with an ordinal below `limit` from now on.
    pub fn start_pods_below(&self, limit: u32) {
        self.knobs.ready_below.store(limit, Ordering::SeqCst);
    }

    /// Pods of `image` never become ready from now on.
    pub fn break_image(&self, image: &str) {
        self.knobs.broken_images.lock().unwrap().insert(image.to_string());
    }

    /// Restarts the kubelet's watch so pods held back are looked at again.
    pub async fn release_all(&self) {
        self.start_pods_below(u32::MAX);
        // Touch every pod so the watch delivers it again.
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        for pod in pods.list(&Default::default()).await.expect("list pods") {
            let patch = serde_json::json!({"metadata": {"annotations": {"test/kubelet-release": "1"}}});
            let _ = pods.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await;
        }
    }

    pub fn ip(&self, ordinal: u32) -> Ipv4Addr {
        pod_ip(self.subnet, ordinal)
    }

    /// Stops the kubelet and then every simulated node, awaiting both (a
    /// plain drop closes the nodes' listeners only when their tasks next run).
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        let sim = self.sim.clone();
        drop(self);
        if let Ok(sim) = Arc::try_unwrap(sim) {
            sim.shutdown().await;
        }
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    client: Client,
    namespace: String,
    cluster: String,
    grpc_port: u16,
    subnet: [u8; 2],
    sim: Arc<SimCluster>,
    knobs: Arc<Knobs>,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let sets: Api<StatefulSet> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().labels(&format!("conveyor.etl/cluster={cluster}"));
    let mut events = watcher(pods.clone(), config).boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                let image =
                    pod.spec.as_ref().and_then(|s| s.containers.first()?.image.clone()).unwrap_or_default();
                if knobs.broken_images.lock().unwrap().contains(&image) {
                    continue;
                }
                start_pod(&pods, &pod, grpc_port, subnet, &sim, &knobs.ready_below).await;
            }
            Ok(watcher::Event::Delete(pod)) => {
                let Some(ordinal) = ordinal_of(&pod.name_any()) else { continue };
                let replicas = sets
                    .get_opt(&cluster)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|set| set.spec.and_then(|spec| spec.replicas))
                    .unwrap_or(0);
                if ordinal as i32 >= replicas {
                    sim.remove_node(u64::from(ordinal) + 1).await;
                } else {
                    sim.stop_node(u64::from(ordinal) + 1).await;
                }
            }
            _ => {}
        }
    }
}

async fn start_pod(
    pods: &Api<Pod>,
    pod: &Pod,
    grpc_port: u16,
    subnet: [u8; 2],
    sim: &SimCluster,
    ready_below: &AtomicU32,
) {
    let Some(ordinal) = ordinal_of(&pod.name_any()) else { return };
    let already_running = pod.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some();
    if already_running
        || pod.metadata.deletion_timestamp.is_some()
        || ordinal >= ready_below.load(Ordering::SeqCst)
    {
        return;
    }
    let ip = pod_ip(subnet, ordinal);
    let id = u64::from(ordinal) + 1;
    let result = match sim.addr(id) {
        None => sim.add_node(id, SocketAddr::V4(SocketAddrV4::new(ip, grpc_port))).await,
        Some(_) => sim.restart_node(id).await,
    };
    result.expect("start simulated router node");
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = serde_json::json!({
        "status": {
            "phase": "Running",
            "podIP": ip.to_string(),
            "podIPs": [{"ip": ip.to_string()}],
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
            ],
        }
    });
    pods.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("mark pod ready");
}
