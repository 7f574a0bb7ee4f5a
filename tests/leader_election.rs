//! Leader election with the real binary: two operator processes on a real
//! control plane, each as the `operator` user under deploy/rbac's ClusterRole
//! plus deploy/operator's lease Role (so those rules are proven enough). One
//! leads and reconciles, the other stands by and reconciles nothing; the
//! standby takes over when the leader is killed (once the Lease expires) or
//! at once when the leader is stopped with SIGTERM (it releases the Lease);
//! a leader whose Lease is taken from it stops with a non-zero exit code.

mod support;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::{Api, Client};

use support::control_plane::{ADMIN_USER, OPERATOR_USER};
use support::objects::examples;
use support::operator::{client_as, shared_with_rbac};
use support::operator_process::OperatorProcess;
use support::{ControlPlane, eventually, kubectl_ok, repo_path, test_namespace};

const LEASE: &str = "conveyor-etl-operator";
const DEADLINE: Duration = Duration::from_secs(60);

/// A namespace where the `operator` user may also use Leases, through the
/// Role deploy/operator installs for them.
async fn namespace(plane: &ControlPlane, admin: &Client, prefix: &str) -> String {
    let namespace = test_namespace(admin, prefix).await;
    let manifest = std::fs::read_to_string(repo_path("deploy/operator/leader-election-role.yaml")).unwrap();
    let role = manifest.split("\n---\n").next().unwrap().replace("namespace: conveyor-system", "");
    assert!(role.contains("kind: Role"), "{role}");
    let mut apply = plane
        .kubectl()
        .args(["apply", "-n", &namespace, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    apply.stdin.take().unwrap().write_all(role.as_bytes()).unwrap();
    assert!(apply.wait().unwrap().success(), "applying the lease Role");
    kubectl_ok(
        plane,
        &[
            "create",
            "rolebinding",
            "leases",
            "-n",
            &namespace,
            "--role=conveyor-etl-operator-leader-election",
            &format!("--user={OPERATOR_USER}"),
        ],
    );
    namespace
}

/// Two candidates named `a` and `b`, watching `namespace` (where their Lease
/// is, by default), as the `operator` user.
fn candidates(
    plane: &ControlPlane,
    kubeconfig: &tempfile::NamedTempFile,
    namespace: &str,
    timing: [&str; 3],
) -> (OperatorProcess, OperatorProcess) {
    let start = |name: &str| {
        OperatorProcess::start(
            plane,
            namespace,
            &[
                ("KUBECONFIG", kubeconfig.path().display().to_string()),
                ("POD_NAME", name.to_owned()),
                ("CONVEYOR_LEADER_ELECTION", "true".to_owned()),
                ("CONVEYOR_LEASE_DURATION", timing[0].to_owned()),
                ("CONVEYOR_RENEW_DEADLINE", timing[1].to_owned()),
                ("CONVEYOR_RETRY_PERIOD", timing[2].to_owned()),
            ],
            &["--log-format", "text"],
        )
    };
    (start("a"), start("b"))
}

fn operator_kubeconfig(plane: &ControlPlane) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(plane.kubeconfig_yaml(OPERATOR_USER).as_bytes()).unwrap();
    file
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    let lease = leases.get_opt(LEASE).await.ok()??;
    lease.spec?.holder_identity.filter(|holder| !holder.is_empty())
}

/// Waits for the Lease to be held, and returns (leader, standby) by its holder.
async fn leader_and_standby<'a>(
    leases: &Api<Lease>,
    a: &'a mut OperatorProcess,
    b: &'a mut OperatorProcess,
) -> (&'a mut OperatorProcess, &'a mut OperatorProcess, String) {
    let held = eventually(DEADLINE, "the Lease to be held", || holder(leases)).await;
    match held.as_str() {
        "a" => (a, b, held),
        "b" => (b, a, held),
        other => panic!("the Lease is held by {other:?}, neither candidate"),
    }
}

/// The value of one sample (exact series text) in the `/metrics` text.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn metric_becomes(operator: &OperatorProcess, series: &str, value: f64, what: &str) {
    eventually(DEADLINE, what, || {
        std::future::ready(operator.metrics().filter(|text| sample(text, series) == Some(value)).map(|_| ()))
    })
    .await;
}

fn clusters(admin: &Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("conveyor.etl", "v1", "EtlRouterCluster"));
    Api::namespaced_with(admin.clone(), namespace, &resource)
}

/// Creates the example router cluster as `name`.
async fn create_cluster(admin: &Client, namespace: &str, name: &str) {
    let mut cluster = examples(&["EtlRouterCluster"]).remove(0);
    cluster.metadata.name = Some(name.to_owned());
    cluster.metadata.namespace = Some(namespace.to_owned());
    clusters(admin, namespace).create(&PostParams::default(), &cluster).await.unwrap();
}

/// Waits until the cluster has been reconciled: it left Pending for
/// Provisioning (there is no kubelet, so it goes no further).
async fn wait_provisioning(admin: &Client, namespace: &str, name: &str) {
    let api = clusters(admin, namespace);
    eventually(DEADLINE, &format!("cluster {name} to reach Provisioning"), || {
        let api = api.clone();
        async move {
            let cluster = api.get(name).await.ok()?;
            (cluster.data["status"]["phase"] == "Provisioning").then_some(())
        }
    })
    .await;
}

const RECONCILES: &str = r#"conveyor_reconciles_total{kind="EtlRouterCluster"}"#;

/// One leads and reconciles, the other reconciles nothing; `kill -9` of the
/// leader hands over once the Lease expires, and the new leader reconciles.
#[tokio::test(flavor = "multi_thread")]
async fn one_leads_and_the_standby_takes_over_when_the_leader_is_killed() {
    let plane = shared_with_rbac();
    let admin = client_as(plane, ADMIN_USER).await;
    let namespace = namespace(plane, &admin, "leader-kill").await;
    let kubeconfig = operator_kubeconfig(plane);
    let (mut a, mut b) = candidates(plane, &kubeconfig, &namespace, ["3s", "2s", "500ms"]);
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &namespace);
    let (leader, standby, first) = leader_and_standby(&leases, &mut a, &mut b).await;

    metric_becomes(leader, "conveyor_leader", 1.0, "the leader's conveyor_leader 1").await;
    metric_becomes(standby, "conveyor_leader", 0.0, "the standby's conveyor_leader 0").await;
    create_cluster(&admin, &namespace, "first").await;
    wait_provisioning(&admin, &namespace, "first").await;
    // A reconcile is counted when it ends, just after it wrote the status.
    eventually(DEADLINE, "the leader's counted reconcile", || {
        std::future::ready(leader.metrics().filter(|text| sample(text, RECONCILES).is_some()).map(|_| ()))
    })
    .await;
    // The standby has been up as long, with the same object to reconcile:
    // it reconciled nothing and still does not lead.
    let standby_metrics = standby.metrics().unwrap();
    assert_eq!(sample(&standby_metrics, RECONCILES), None, "the standby reconciled:\n{standby_metrics}");
    assert_eq!(sample(&standby_metrics, "conveyor_leader"), Some(0.0));
    assert_eq!(holder(&leases).await.as_deref(), Some(first.as_str()), "the lease changed hands");
    assert_eq!(
        standby.get("/readyz").map(|(code, body)| (code, body.contains("standby"))),
        Some((200, true))
    );
    assert_eq!(leader.get("/readyz").map(|(code, body)| (code, body.contains("leading"))), Some((200, true)));

    leader.kill();
    let killed = Instant::now();
    let second = eventually(DEADLINE, "the standby to take the Lease", || async {
        holder(&leases).await.filter(|holder| *holder != first)
    })
    .await;
    let took = killed.elapsed();
    // Lease duration 3 s, counted from the last renewal (at most one retry
    // period before the kill), then at most one retry period (jittered) more.
    assert!(took < Duration::from_secs(6), "took over after {took:?}");
    let lease = leases.get(LEASE).await.unwrap().spec.unwrap();
    assert_eq!(lease.lease_transitions, Some(1), "{lease:?}");
    assert_eq!(lease.lease_duration_seconds, Some(3));
    metric_becomes(standby, "conveyor_leader", 1.0, "the new leader's conveyor_leader 1").await;
    create_cluster(&admin, &namespace, "second").await;
    wait_provisioning(&admin, &namespace, "second").await;
    assert!(standby.lines().iter().any(|line| line.contains("acquired the lease")), "{second} never said so");
}

/// SIGTERM: the leader drains, releases the Lease and exits 0; the standby
/// leads within a few seconds, far sooner than the 20 s Lease would expire.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_given_sigterm_releases_the_lease_and_the_standby_leads_at_once() {
    let plane = shared_with_rbac();
    let admin = client_as(plane, ADMIN_USER).await;
    let namespace = namespace(plane, &admin, "leader-term").await;
    let kubeconfig = operator_kubeconfig(plane);
    let (mut a, mut b) = candidates(plane, &kubeconfig, &namespace, ["20s", "10s", "500ms"]);
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &namespace);
    let (leader, standby, first) = leader_and_standby(&leases, &mut a, &mut b).await;
    create_cluster(&admin, &namespace, "first").await;
    wait_provisioning(&admin, &namespace, "first").await;

    leader.terminate();
    let terminated = Instant::now();
    let status = leader.exited_within(Duration::from_secs(15)).expect("the leader exits after SIGTERM");
    assert!(status.success(), "the leader exited with {status} on SIGTERM");
    assert!(leader.lines().iter().any(|line| line.contains("released the lease")), "{:#?}", leader.lines());
    eventually(DEADLINE, "the standby to take the Lease", || async {
        holder(&leases).await.filter(|holder| *holder != first)
    })
    .await;
    let took = terminated.elapsed();
    assert!(took < Duration::from_secs(5), "took over {took:?} after SIGTERM");
    create_cluster(&admin, &namespace, "second").await;
    wait_provisioning(&admin, &namespace, "second").await;
    assert!(standby.metrics().is_some_and(|text| sample(&text, "conveyor_leader") == Some(1.0)));
}

/// A leader that finds the Lease held by someone else when it renews stops
/// leading: it exits with a non-zero code instead of running on beside the
/// new holder.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_that_loses_its_lease_exits_with_an_error() {
    let plane = shared_with_rbac();
    let admin = client_as(plane, ADMIN_USER).await;
    let namespace = namespace(plane, &admin, "leader-lost").await;
    let kubeconfig = operator_kubeconfig(plane);
    let mut only = OperatorProcess::start(
        plane,
        &namespace,
        &[("KUBECONFIG", kubeconfig.path().display().to_string()), ("POD_NAME", "only".to_owned())],
        &["--leader-election", "--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "500ms"],
    );
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &namespace);
    eventually(DEADLINE, "the only candidate to lead", || async {
        holder(&leases).await.filter(|holder| holder == "only")
    })
    .await;
    assert!(only.exited_within(Duration::ZERO).is_none(), "exited while leading");

    // Someone else takes the Lease (as a leader would after a partition).
    let mut lease = leases.get(LEASE).await.unwrap();
    lease.spec.as_mut().unwrap().holder_identity = Some("intruder".to_owned());
    lease.spec.as_mut().unwrap().lease_duration_seconds = Some(600);
    leases.replace(LEASE, &PostParams::default(), &lease).await.unwrap();

    let status =
        only.exited_within(Duration::from_secs(10)).expect("the leader stops after losing its lease");
    assert!(!status.success(), "exited with {status}");
    assert!(only.lines().iter().any(|line| line.contains("lost the lease")), "{:#?}", only.lines());
    assert_eq!(holder(&leases).await.as_deref(), Some("intruder"), "the loser wrote the Lease back");
}
