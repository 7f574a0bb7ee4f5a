//! Leader election with the real binary: two operator processes on a real
//! control plane, each as the `operator` user under deploy/rbac's ClusterRole
//! plus deploy/operator's lease Role (so those rules are proven enough). One
//! leads and reconciles, the other stands by and reconciles nothing; the
//! standby takes over when the leader is killed (once the Lease expires, with
//! the whole example set, its router cluster run by the fake kubelet and
//! simulated router nodes, staying Ready throughout) or at once when the
//! leader is stopped with SIGTERM (it releases the Lease); a leader whose
//! Lease is taken from it stops with a non-zero exit code.

mod support;

use std::io::Write;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinHandle;

use conveyor_etl_operator::router::mapping::{METADATA_DLQ_MAX_RETRIES, pipeline_id};

use support::control_plane::{ADMIN_USER, OPERATOR_USER};
use support::kubelet::FakeKubelet;
use support::objects::{EXAMPLE_KINDS, api_in, example_set, examples, kind_of, not_ready, wait_all_ready};
use support::operator::{client_as, shared_with_rbac};
use support::operator_process::OperatorProcess;
use support::{ControlPlane, eventually, kubectl_ok, repo_path, test_namespace};

const LEASE: &str = "conveyor-etl-operator";
/// The failover test's timing: a 3 s Lease, tried and renewed every 500 ms.
const LEASE_DURATION: &str = "3s";
const RETRY_PERIOD: &str = "500ms";
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
                // Settled objects are checked every second (a Ready
                // pipeline each stats interval), so a takeover is followed
                // by several rounds of checks in a short test.
                ("CONVEYOR_HEALTH_INTERVAL", "1s".to_owned()),
                ("CONVEYOR_STATS_INTERVAL", "1s".to_owned()),
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

/// Watches every kind of the example set and records each state an object
/// shows that is not Ready (and each deletion), from the watches' first
/// lists on: a status write that leaves Ready for a moment is a watch event,
/// so none goes unseen, however short.
struct ReadyWatch {
    seen: Arc<Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl ReadyWatch {
    async fn start(admin: &Client, namespace: &str) -> ReadyWatch {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (listed, mut lists) = tokio::sync::mpsc::unbounded_channel();
        let tasks = EXAMPLE_KINDS
            .iter()
            .map(|kind| {
                let events = watcher(api_in(admin, namespace, kind), watcher::Config::default());
                let (seen, listed, kind) = (seen.clone(), listed.clone(), kind.to_string());
                tokio::spawn(async move {
                    let mut events = std::pin::pin!(events);
                    while let Some(event) = events.next().await {
                        let record = |what: String| seen.lock().unwrap().push(format!("{kind} {what}"));
                        match event {
                            Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                                if let Some(shows) = not_ready(&object) {
                                    record(format!("{} {shows}", object.name_any()));
                                }
                            }
                            Ok(watcher::Event::Delete(object)) => {
                                record(format!("{} deleted", object.name_any()))
                            }
                            Ok(watcher::Event::InitDone) => {
                                let _ = listed.send(());
                            }
                            Ok(watcher::Event::Init) => {}
                            Err(error) => record(format!("watch error {error}")),
                        }
                    }
                })
            })
            .collect::<Vec<_>>();
        for _ in EXAMPLE_KINDS {
            tokio::time::timeout(DEADLINE, lists.recv()).await.expect("the watches' first lists").unwrap();
        }
        ReadyWatch { seen, tasks }
    }

    /// Everything not Ready seen so far.
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for ReadyWatch {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// The sum of `conveyor_reconciles_total` of `kind`, 0 when it has none yet.
fn reconciles(metrics: &str, kind: &str) -> f64 {
    sample(metrics, &format!(r#"conveyor_reconciles_total{{kind="{kind}"}}"#)).unwrap_or(0.0)
}

/// The full example set goes Ready under one leader while the standby
/// reconciles nothing; `kill -9` of the leader: the standby takes the Lease
/// once the leader's claim has run out (not before), within the lease
/// duration and its own retry period of the kill, and every object stays
/// Ready throughout, through the new leader's first reconciles and health
/// checks; the new leader then carries a spec change to the router.
#[tokio::test(flavor = "multi_thread")]
async fn the_standby_takes_over_a_killed_leader_and_every_resource_stays_ready() {
    let plane = shared_with_rbac();
    let admin = client_as(plane, ADMIN_USER).await;
    let namespace = namespace(plane, &admin, "leader-kill").await;
    let kubelet = FakeKubelet::start(admin.clone(), &namespace, "my-cluster", 50051).await;
    let kubeconfig = operator_kubeconfig(plane);
    let (mut a, mut b) = candidates(plane, &kubeconfig, &namespace, [LEASE_DURATION, "2s", RETRY_PERIOD]);
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &namespace);
    let (leader, standby, first) = leader_and_standby(&leases, &mut a, &mut b).await;

    metric_becomes(leader, "conveyor_leader", 1.0, "the leader's conveyor_leader 1").await;
    metric_becomes(standby, "conveyor_leader", 0.0, "the standby's conveyor_leader 0").await;
    for object in example_set() {
        api_in(&admin, &namespace, &kind_of(&object)).create(&PostParams::default(), &object).await.unwrap();
    }
    wait_all_ready(&admin, &namespace).await;
    // The standby has been up as long, with the same objects to reconcile:
    // it reconciled nothing and still does not lead.
    let standby_metrics = standby.metrics().unwrap();
    assert!(
        !standby_metrics.contains("conveyor_reconciles_total{"),
        "the standby reconciled:\n{standby_metrics}"
    );
    assert_eq!(sample(&standby_metrics, "conveyor_leader"), Some(0.0));
    assert_eq!(holder(&leases).await.as_deref(), Some(first.as_str()), "the lease changed hands");
    assert_eq!(
        standby.get("/readyz").map(|(code, body)| (code, body.contains("standby"))),
        Some((200, true))
    );
    assert_eq!(leader.get("/readyz").map(|(code, body)| (code, body.contains("leading"))), Some((200, true)));

    let watch = ReadyWatch::start(&admin, &namespace).await;
    let killed_at = Timestamp::now();
    leader.kill();
    let killed = Instant::now();
    // The leader is gone: this is its last renewal.
    let last = leases.get(LEASE).await.unwrap().spec.unwrap();
    assert_eq!(last.holder_identity.as_deref(), Some(first.as_str()));
    let duration = SignedDuration::from_secs(i64::from(last.lease_duration_seconds.unwrap()));
    assert_eq!(duration, SignedDuration::from_secs(3));
    let expiry = last.renew_time.unwrap().0 + duration;

    eventually(DEADLINE, "the standby to take the Lease", || async {
        holder(&leases).await.filter(|holder| *holder != first)
    })
    .await;
    let noticed = killed.elapsed();
    let lease = leases.get(LEASE).await.unwrap().spec.unwrap();
    assert_eq!(lease.lease_transitions, Some(1), "{lease:?}");
    assert_eq!(lease.lease_duration_seconds, Some(3));
    let acquired = lease.acquire_time.unwrap().0;
    // Not before the dead leader's claim ran out...
    assert!(acquired >= expiry, "taken at {acquired}, before the claim ran out at {expiry}");
    // ...and within the lease duration of the kill, plus the standby's own
    // retry period (it looks every 500 ms, jittered up to 20 %), the time its
    // read and write of the Lease take on a loaded machine, and a renewal the
    // leader had in flight when killed (committed after `last` was read).
    let took = acquired.duration_since(killed_at);
    let late = acquired.duration_since(expiry);
    eprintln!(
        "took over {took:#} after the kill ({late:#} after the claim ran out; seen by the test after {noticed:?})"
    );
    assert!(took <= SignedDuration::from_millis(3000 + 2000), "took over {took:#} after the kill");
    assert!(late <= SignedDuration::from_millis(2000), "took over {late:#} after the claim ran out");
    metric_becomes(standby, "conveyor_leader", 1.0, "the new leader's conveyor_leader 1").await;
    eventually(DEADLINE, "the new leader's 'acquired the lease' line", || {
        std::future::ready(
            standby.lines().iter().any(|line| line.contains("acquired the lease")).then_some(()),
        )
    })
    .await;

    // The new leader reconciles every object and keeps checking their
    // health (every second here): two rounds of each, all still Ready.
    let counts: Vec<(String, f64)> = EXAMPLE_KINDS
        .iter()
        .map(|kind| {
            let objects = example_set().iter().filter(|o| kind_of(o) == *kind).count();
            (kind.to_string(), 2.0 * objects as f64)
        })
        .collect();
    eventually(DEADLINE, "two rounds of the new leader's reconciles of every object", || {
        let metrics = standby.metrics();
        std::future::ready(
            metrics.filter(|text| counts.iter().all(|(kind, at_least)| reconciles(text, kind) >= *at_least)),
        )
    })
    .await;
    let metrics = standby.metrics().unwrap();
    assert!(
        !metrics.contains("conveyor_reconcile_errors_total{"),
        "the new leader's reconciles failed:\n{metrics}"
    );
    let left_ready = watch.seen();
    assert!(left_ready.is_empty(), "left Ready during the takeover: {left_ready:#?}");
    drop(watch);
    wait_all_ready(&admin, &namespace).await;

    // The new leader acts: a changed pipeline reaches the router.
    let pipelines = api_in(&admin, &namespace, "EtlPipeline");
    let patch = serde_json::json!({"spec": {"dlq": {"maxRetries": 5}}});
    pipelines.patch("user-analytics", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    eventually(DEADLINE, "the changed pipeline Ready at generation 2 on the router", || async {
        let pipeline = pipelines.get("user-analytics").await.ok()?;
        let applied = pipeline.data["status"]["appliedGeneration"] == 2 && not_ready(&pipeline).is_none();
        let (config, _) = kubelet.sim.pipeline(&pipeline_id(&namespace, "user-analytics"))?;
        (applied && config.metadata.get(METADATA_DLQ_MAX_RETRIES).map(String::as_str) == Some("5"))
            .then_some(())
    })
    .await;
    kubelet.stop().await;
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

/// Writes the Lease as a holder named `skewed` whose clock is `skew` off:
/// a fresh `renewTime` every `RETRY_PERIOD` on that clock, 3 s claims.
async fn renew_as_skewed_holder(leases: &Api<Lease>, skew: SignedDuration) {
    let renew_time = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(Timestamp::now() + skew);
    let spec = k8s_openapi::api::coordination::v1::LeaseSpec {
        holder_identity: Some("skewed".to_owned()),
        lease_duration_seconds: Some(3),
        acquire_time: Some(renew_time.clone()),
        renew_time: Some(renew_time),
        ..Default::default()
    };
    match leases.get_opt(LEASE).await.unwrap() {
        None => {
            let lease = Lease {
                metadata: kube::api::ObjectMeta { name: Some(LEASE.to_owned()), ..Default::default() },
                spec: Some(spec),
            };
            leases.create(&PostParams::default(), &lease).await.unwrap();
        }
        Some(mut lease) => {
            let held = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
            assert_eq!(held.as_deref(), Some("skewed"), "the standby took a live Lease");
            lease.spec = Some(spec);
            if let Err(error) = leases.replace(LEASE, &PostParams::default(), &lease).await {
                let now = holder(leases).await;
                panic!(
                    "renewing failed ({error}); the Lease is now held by {now:?}: the standby took a live Lease"
                );
            }
        }
    }
}

/// A holder whose clock is an hour behind keeps renewing: the standby never
/// takes the live Lease (it would at once by comparing that `renewTime` with
/// its own clock). Its last renewal then comes from a clock an hour ahead
/// and it stops: the standby takes over once the record has not changed for
/// the lease duration on its own clock, not an hour later.
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_times_the_lease_on_its_own_clock_whatever_the_holders_clock_says() {
    let plane = shared_with_rbac();
    let admin = client_as(plane, ADMIN_USER).await;
    let namespace = namespace(plane, &admin, "leader-skew").await;
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &namespace);
    let hour = SignedDuration::from_hours(1);
    renew_as_skewed_holder(&leases, -hour).await;
    let kubeconfig = operator_kubeconfig(plane);
    let standby = OperatorProcess::start(
        plane,
        &namespace,
        &[("KUBECONFIG", kubeconfig.path().display().to_string()), ("POD_NAME", "standby".to_owned())],
        &[
            "--leader-election",
            "--lease-duration",
            LEASE_DURATION,
            "--renew-deadline",
            "2s",
            "--retry-period",
            RETRY_PERIOD,
        ],
    );
    eventually(DEADLINE, "the standby's /metrics", || std::future::ready(standby.metrics())).await;

    // Three lease durations of live renewals from the slow clock.
    let mut renewals = tokio::time::interval(Duration::from_millis(500));
    let renewing = Instant::now();
    while renewing.elapsed() < Duration::from_secs(9) {
        renewals.tick().await;
        renew_as_skewed_holder(&leases, -hour).await;
    }
    assert_eq!(holder(&leases).await.as_deref(), Some("skewed"), "the standby took a live Lease");

    // The last renewal, from a clock an hour ahead; then the holder stops.
    renew_as_skewed_holder(&leases, hour).await;
    let stopped = Instant::now();
    eventually(DEADLINE, "the standby to take the Lease", || async {
        holder(&leases).await.filter(|holder| holder == "standby")
    })
    .await;
    let took = stopped.elapsed();
    eprintln!("took over {took:?} after the skewed holder's last renewal");
    assert!(
        took >= Duration::from_secs(3),
        "took over {took:?} after the last renewal: before its claim ran out"
    );
    // The lease duration, timed from the standby's first read of the last
    // renewal, then its next try: two retry periods (500 ms, jittered up to
    // 20 %), and its reads and write of the Lease on a loaded machine
    // (3.6 s and 3.9 s measured; the skewed renewTime alone would say an hour).
    assert!(took <= Duration::from_secs(3 + 3), "took over {took:?} after the last renewal");
}
