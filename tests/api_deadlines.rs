//! The operator's Kubernetes API calls have deadlines: with the API server
//! frozen (SIGSTOP) mid-run, a status write fails at its deadline instead of
//! pinning its object, and once the server is thawed (SIGCONT) every object
//! converges, nothing written twice.
//!
//! The test freezes its binary's own control plane, so this binary holds
//! this one test only: any other would stall beside it.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use kube::api::PostParams;

use support::control_plane::{ADMIN_USER, OPERATOR_USER};
use support::kubelet::FakeKubelet;
use support::objects::{api_in, example_set, kind_of, wait_all_ready};
use support::operator::{client_as, shared_with_rbac};
use support::operator_process::OperatorProcess;
use support::{eventually, test_namespace};

/// The operator's deadline for every API request in this test.
const API_TIMEOUT: &str = "2s";

/// Sends `signal` to the control plane's kube-apiserver.
fn signal_apiserver(plane: &support::ControlPlane, signal: i32) {
    let (_, pid) = plane.processes().into_iter().find(|(name, _)| *name == "kube-apiserver").unwrap();
    // SAFETY: kill(2) on a child process the test bed started.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0, "signal {signal} to kube-apiserver");
}

/// Thaws the API server however the test ends, so the control plane can stop.
struct Frozen<'a>(&'a support::ControlPlane);

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        signal_apiserver(self.0, libc::SIGCONT);
    }
}

/// Successful writes per request URI (verb and path) by the operator, from
/// the `from`-th write of the audit log on.
fn successful_writes(plane: &support::ControlPlane, from: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for write in &plane.writes_by(OPERATOR_USER)[from..] {
        let code = write.response_status.as_ref().and_then(|s| s["code"].as_u64()).unwrap_or(0);
        if (200..300).contains(&code) {
            *counts.entry(format!("{} {}", write.verb, write.request_uri)).or_default() += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_api_server_fails_calls_at_their_deadline_and_every_object_converges_after_it() {
    let plane = shared_with_rbac();
    let admin = client_as(plane, ADMIN_USER).await;
    let namespace = test_namespace(&admin, "api-freeze").await;
    let kubelet = FakeKubelet::start(admin.clone(), &namespace, "my-cluster", 50051).await;
    let mut kubeconfig = tempfile::NamedTempFile::new().unwrap();
    kubeconfig.write_all(plane.kubeconfig_yaml(OPERATOR_USER).as_bytes()).unwrap();
    let operator = OperatorProcess::start(
        plane,
        &namespace,
        &[
            ("KUBECONFIG", kubeconfig.path().display().to_string()),
            ("CONVEYOR_API_TIMEOUT", API_TIMEOUT.to_owned()),
            ("CONVEYOR_HEALTH_INTERVAL", "1s".to_owned()),
            ("CONVEYOR_ROUTER_TIMEOUT", "1s".to_owned()),
        ],
        &["--log-format", "text"],
    );
    for object in example_set() {
        api_in(&admin, &namespace, &kind_of(&object)).create(&PostParams::default(), &object).await.unwrap();
    }
    wait_all_ready(&admin, &namespace).await;
    let sim = kubelet.sim.clone();
    let leader = sim.leader().unwrap();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let writes_before = plane.writes_by(OPERATOR_USER).len();
    let router_calls_before = sim.call_counts();
    let failures_before = operator.lines().iter().filter(|line| line.contains("reconcile failed")).count();

    // Frozen, the API server still accepts connections but answers nothing.
    signal_apiserver(plane, libc::SIGSTOP);
    let frozen = Frozen(plane);
    let froze = Instant::now();
    // A member stops: the cluster must write Degraded, which the API server cannot take.
    sim.stop_node(follower).await;
    let failed = eventually(Duration::from_secs(30), "a reconcile failing at its API deadline", || {
        let lines = operator.lines();
        let failed: Vec<String> = lines
            .iter()
            .filter(|line| line.contains("reconcile failed"))
            .skip(failures_before)
            .cloned()
            .collect();
        std::future::ready(failed.into_iter().next())
    })
    .await;
    let took = froze.elapsed();
    eprintln!("while frozen, after {took:?}: {failed}");
    assert!(failed.contains("EtlRouterCluster"), "{failed}");
    drop(frozen);

    // Thawed: the cluster reports the stopped member, then recovers with it.
    eventually(Duration::from_secs(60), "the cluster Degraded after the thaw", || async {
        let cluster = api_in(&admin, &namespace, "EtlRouterCluster").get("my-cluster").await.ok()?;
        (cluster.data["status"]["phase"] == "Degraded").then_some(())
    })
    .await;
    sim.restart_node(follower).await.unwrap();
    wait_all_ready(&admin, &namespace).await;

    let writes = successful_writes(plane, writes_before);
    eprintln!("the operator's writes from the freeze on: {writes:#?}");
    // Each object's status (and each Event series) is written at most twice:
    // down, and up again. Event creates share one URI, so they are not counted.
    let twice: Vec<_> =
        writes.iter().filter(|(uri, count)| !uri.starts_with("create ") && **count > 2).collect();
    assert!(twice.is_empty(), "written more than down and up again: {twice:#?}");
    assert!(writes.keys().any(|uri| uri.contains("/etlrouterclusters/my-cluster/status")), "{writes:#?}");
    let router_writes: Vec<(String, u64)> = sim
        .call_counts()
        .into_iter()
        .filter(|(method, _)| {
            ["CreatePipeline", "UpdatePipeline", "DeletePipeline", "Register", "Deregister"]
                .contains(&method.as_str())
        })
        .filter(|(method, count)| router_calls_before.get(method) != Some(count))
        .collect();
    assert!(router_writes.is_empty(), "router writes for unchanged objects: {router_writes:?}");
    kubelet.stop().await;
}
