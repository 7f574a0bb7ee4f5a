//! `kubectl conveyor why` on a real node (containerd, runc, the kubelet and
//! kube-scheduler beside the control plane; crates/testbed/src/node/): the
//! example set whose router image is not on the node and may not be pulled.
//! One command follows the pipeline to the services, the cluster, the pod
//! and the pod's own state and Events that the real kubelet wrote.
//!
//! Needs root, `tests/harness/build-node.sh` and
//! `tests/harness/build-images.sh` (as `tests/run.sh` runs them); fails,
//! naming what is missing, without them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ObjectMeta, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use tokio::sync::oneshot;

use conveyor_etl_operator::controller::{Operator, client_without_hidden_retries};
use conveyor_etl_operator::router::{ClientOptions, RouterClient};
use conveyor_etl_operator::runtime::Timing;
use conveyor_testbed::control_plane::{ADMIN_USER, OPERATOR_USER, install_crypto_provider};
use conveyor_testbed::examples::{SEED, SERVICES};
use conveyor_testbed::install::{install_crds, install_rbac};
use conveyor_testbed::node::{self, RealNode};

/// A cold start of the node on a loaded two-core machine.
const DEADLINE: Duration = Duration::from_secs(180);

/// The example set, its cluster made to fit one node: one member, no
/// claim, and an image the node does not hold and may not pull.
fn example_set(image: &str) -> Vec<DynamicObject> {
    let documents = SEED.split("\n---\n").chain(SERVICES.split("\n---\n"));
    let mut objects: Vec<DynamicObject> = documents.map(|doc| serde_norway::from_str(doc).unwrap()).collect();
    for object in &mut objects {
        if object.types.as_ref().unwrap().kind == "EtlRouterCluster" {
            let spec = &mut object.data["spec"];
            spec["replicas"] = 1.into();
            spec["image"] = image.into();
            spec["imagePullPolicy"] = "Never".into();
            spec.as_object_mut().unwrap().remove("storage");
        }
    }
    objects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn why_names_the_image_the_real_kubelet_cannot_start_from_the_pipeline() {
    if let Some(why) = node::unavailable() {
        panic!("no real node on this machine: {why}");
    }
    let (router_image, router_tarball) = conveyor_testbed::images::packed("router");
    let mut node =
        tokio::task::spawn_blocking(RealNode::start).await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    node.import_image(&router_tarball).unwrap();
    let plane = node.plane.as_ref().unwrap();
    let admin = plane.client().await;
    install_crds(&admin).await.expect("CRDs installed");
    install_rbac(&admin).await.expect("operator RBAC installed");
    let namespace = "plugin-node".to_owned();
    let object = Namespace {
        metadata: ObjectMeta { name: Some(namespace.clone()), ..ObjectMeta::default() },
        ..Namespace::default()
    };
    Api::<Namespace>::all(admin.clone()).create(&PostParams::default(), &object).await.unwrap();

    install_crypto_provider();
    let operator_client = client_without_hidden_retries(plane.config(OPERATOR_USER).await).unwrap();
    let router = Arc::new(RouterClient::new(ClientOptions::default()));
    let timing = Timing { health_interval: Duration::from_secs(2), ..Timing::default() };
    let (stop, stopped) = oneshot::channel::<()>();
    let running = Operator::new(operator_client, router, timing, Some(namespace.clone()));
    let operator = tokio::spawn(async move {
        running
            .run(async move {
                let _ = stopped.await;
            })
            .await
            .expect("the operator starts");
    });

    let (repository, _) = router_image.rsplit_once(':').unwrap();
    let missing = format!("{repository}:missing");
    for object in example_set(&missing) {
        let kind = object.types.as_ref().unwrap().kind.clone();
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("conveyor.etl", "v1", &kind));
        let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), &namespace, &resource);
        api.create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("{kind} {}: {e}", object.name_any()));
    }

    let yaml =
        plane.kubeconfig_yaml(ADMIN_USER).replace("namespace: default", &format!("namespace: {namespace}"));
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(kubeconfig.path(), yaml).unwrap();
    let why = |args: &[&str]| {
        let output = std::process::Command::new(PathBuf::from(env!("CARGO_BIN_EXE_kubectl-conveyor")))
            .arg("--kubeconfig")
            .arg(kubeconfig.path())
            .args(args)
            .output()
            .expect("kubectl-conveyor runs");
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    // The real kubelet reports the container waiting with ErrImageNeverPull
    // and an Event saying so; one command gets there from the pipeline. The
    // Event may be published before the kubelet writes the container's
    // waiting state (which names the image), so wait for the first cause to
    // come from the container itself.
    let deadline = Instant::now() + DEADLINE;
    let answer = loop {
        let (success, out) = tokio::task::block_in_place(|| why(&["why", "etlp/user-analytics"]));
        let first_cause = out.lines().find(|l| l.starts_with("First cause:")).unwrap_or_default();
        if success && first_cause.contains("Pod/my-cluster-0: ErrImageNeverPull") && out.contains(&missing) {
            break out;
        }
        assert!(Instant::now() < deadline, "why never reached the pod's image; last answer:\n{out}");
        tokio::time::sleep(Duration::from_millis(500)).await; // poll interval
    };
    eprintln!("$ kubectl conveyor why etlp/user-analytics\n{answer}");
    for step in ["EtlPipeline/user-analytics", "EtlRouterCluster/my-cluster", &missing] {
        assert!(answer.contains(step), "the answer does not name {step}:\n{answer}");
    }

    let _ = stop.send(());
    let _ = operator.await;
    let pids: Vec<u32> = node.processes().iter().map(|(_, pid)| *pid).chain(plane.pids()).collect();
    tokio::task::block_in_place(|| node.stop());
    let left = node.leftovers(&pids);
    assert!(left.is_empty(), "the node left behind: {left:#?}");
}
