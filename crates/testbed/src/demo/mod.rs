//! The one-command local demo, `cargo demo` (the `conveyor-demo` binary): everything on
//! one machine, nothing to install by hand.
//!
//! It starts the local control plane the integration tests use (etcd,
//! kube-apiserver, kube-controller-manager on loopback, built and cached by
//! `tests/harness/build-kubernetes.sh` the first time), installs the CRDs
//! and the operator's ClusterRole, plays the kubelet for the router pods with
//! a simulated router node on a loopback address per pod (the data plane is
//! simulated), runs the operator in-process under that ClusterRole, applies
//! the example set and prints every object's phase as it moves. Ctrl-C
//! (SIGINT or SIGTERM) stops all of it; `--until-ready` stops once the set is
//! Ready.
//!
//! [`crate::control_plane`] and [`crate::kubelet`] are the same code the integration tests
//! run on.

mod phases;
mod real;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use futures::StreamExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::{Client, ResourceExt};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::control_plane::{ControlPlane, OPERATOR_USER};
use crate::examples::{SEED, SERVICES};
use crate::install::{install_crds, install_rbac};
use crate::kubelet::FakeKubelet;
use conveyor_etl_operator::controller::{Operator, ensure_crds_installed};
use conveyor_etl_operator::crd::EtlRouterCluster;
use conveyor_etl_operator::router::{ClientOptions, RouterClient};
use conveyor_etl_operator::runtime::Timing;

/// Where the example set goes: the kubeconfig's default namespace, so plain
/// `kubectl get conveyor` shows it.
const NAMESPACE: &str = "default";
const FIELD_MANAGER: &str = "conveyor-demo";

/// Settings of the `demo` subcommand.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "conveyor-demo", version)]
pub struct Options {
    /// Stop everything and exit 0 once every example object is Ready, instead
    /// of running until Ctrl-C.
    #[arg(long)]
    pub until_ready: bool,
    /// Give up (stopping everything, exit 1) when the example set is not all
    /// Ready within this time.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Run on a real node instead of the simulated data plane: containerd,
    /// the kubelet and real router pods (root; after
    /// tests/harness/build-node.sh and tests/harness/build-images.sh).
    #[arg(long, conflicts_with = "clean_node")]
    pub real_node: bool,
    /// Only clean up what a killed `--real-node` run (or node test) left on
    /// the machine, then exit.
    #[arg(long)]
    pub clean_node: bool,
}

/// Where the router pods come from.
enum Pods {
    /// The fake kubelet plays every router pod with a simulated router node.
    Simulated,
    /// A real kubelet runs them from this local image, never pulled.
    Real { image: String },
}

/// Runs the demo until SIGINT/SIGTERM (or, with `--until-ready`, until the
/// example set is Ready), then stops every process it started.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut stop = Stop::install()?;
    if options.clean_node {
        return real::clean();
    }
    say("conveyor-etl-operator demo: a local Kubernetes control plane, the operator and the example set.");
    if options.real_node {
        return real::run(&options, &mut stop).await;
    }
    say("mode: simulated data plane (`--real-node` runs real router pods on a real node).");
    say("The data plane is simulated: no containers run. Each router pod is played by a simulated router");
    say(
        "node (conveyor-router-sim) listening on a loopback address; a fake kubelet marks the pods Running and Ready.",
    );
    if !ensure_binaries(&mut stop).await? {
        return Ok(());
    }
    say("starting etcd, kube-apiserver and kube-controller-manager on loopback ...");
    let mut start = tokio::task::spawn_blocking(ControlPlane::try_start);
    let started = tokio::select! {
        started = &mut start => started,
        signal = stop.wait() => {
            say(&format!("{signal}: stopping the control plane as soon as its start returns"));
            drop(start.await);
            return Ok(());
        }
    };
    let mut plane = started
        .context("the control-plane start thread failed")?
        .map_err(|error| anyhow!("cannot start the control plane: {error}"))?;
    let processes: Vec<String> =
        plane.processes().iter().map(|(name, pid)| format!("{name} (pid {pid})")).collect();
    say(&format!("control plane up: {}; API server {}", processes.join(", "), plane.server));
    say(&format!("kubeconfig (admin): {}", plane.kubeconfig.display()));
    init_log(&plane.dir().join("operator.log"));

    let outcome = with_control_plane(&plane, &options, &mut stop, Pods::Simulated).await;
    plane.stop();
    let dir = plane.dir().to_path_buf();
    drop(plane);
    say(&format!("stopped {}; removed {}", processes.join(", "), dir.display()));
    outcome
}

/// Everything that runs on the control plane; stops what it started before returning.
async fn with_control_plane(
    plane: &ControlPlane,
    options: &Options,
    stop: &mut Stop,
    pods: Pods,
) -> anyhow::Result<()> {
    let admin = plane.client().await;
    install_crds(&admin).await?;
    install_rbac(&admin).await?;
    let operator_client = Client::try_from(plane.config(OPERATOR_USER).await)?;
    ensure_crds_installed(&operator_client).await?;
    say(
        "installed the CRDs and the operator's ClusterRole (deploy/rbac), bound to the user the operator runs as",
    );

    let mut examples = examples()?;
    if let Pods::Real { image } = &pods {
        let cluster = examples
            .iter_mut()
            .find(|object| object.types.as_ref().is_some_and(|t| t.kind == "EtlRouterCluster"))
            .context("the examples hold no EtlRouterCluster")?;
        cluster.data["spec"]["image"] = image.as_str().into();
        cluster.data["spec"]["imagePullPolicy"] = "Never".into();
    }
    let cluster: EtlRouterCluster = examples
        .iter()
        .find(|object| object.types.as_ref().is_some_and(|t| t.kind == "EtlRouterCluster"))
        .map(|object| serde_json::to_value(object).and_then(serde_json::from_value))
        .transpose()?
        .context("the examples hold no EtlRouterCluster")?;
    let grpc_port = u16::try_from(cluster.spec.ports.grpc).context("the example's gRPC port")?;
    let kubelet = match pods {
        Pods::Simulated => {
            let kubelet = FakeKubelet::start(admin.clone(), NAMESPACE, &cluster.name_any(), grpc_port).await;
            say(&format!(
                "fake kubelet started for the pods of {}: one simulated router node per pod, on 127.x.y.z:{grpc_port}",
                cluster.name_any()
            ));
            Some(kubelet)
        }
        Pods::Real { .. } => None,
    };

    let metrics = free_local_address()?;
    let (stop_operator, operator_stopped) = tokio::sync::oneshot::channel::<()>();
    let router = Arc::new(RouterClient::new(ClientOptions::default()));
    let operator = Operator::new(operator_client, router, Timing::default(), Some(NAMESPACE.to_string()))
        .with_http(metrics);
    let mut operator_task = Some(tokio::spawn(operator.run(async move {
        let _ = operator_stopped.await;
    })));
    say(&format!(
        "operator running in-process under its ClusterRole; metrics on http://{metrics}/metrics, log in {}",
        plane.dir().join("operator.log").display()
    ));

    let mut board = phases::Board::new(&examples, grpc_port, kubelet.is_some());
    let mut changes = phases::watch(admin.clone(), NAMESPACE);
    for object in &examples {
        apply(&admin, object).await?;
    }
    say(&format!("applied deploy/examples/seed.yaml and services.yaml ({} objects):", examples.len()));

    let timeout = tokio::time::sleep(options.timeout);
    tokio::pin!(timeout);
    let mut ready_once = false;
    let outcome = loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(change) => {
                    for line in board.apply(change) {
                        say(&line);
                    }
                    if board.became_all_ready() {
                        let again = if ready_once { " again" } else { "" };
                        say(&format!("all {} objects are Ready{again} ({:.1}s)", examples.len(), board.elapsed()));
                        if !ready_once {
                            ready_once = true;
                            if options.until_ready {
                                break Ok(());
                            }
                            look_around(plane, &cluster.name_any(), metrics, kubelet.is_some());
                        }
                    }
                }
                None => break Err(anyhow!("the watch of the example set ended")),
            },
            () = &mut timeout, if !ready_once => {
                break Err(anyhow!("not all Ready within {}: {}", humantime::format_duration(options.timeout), board.not_ready().join(", ")));
            }
            signal = stop.wait() => {
                say(&format!("{signal}: stopping everything the demo started"));
                break Ok(());
            }
            result = async { operator_task.as_mut().expect("operator task").await }, if operator_task.is_some() => {
                operator_task = None;
                break Err(match result {
                    Ok(Ok(())) => anyhow!("the operator stopped on its own"),
                    Ok(Err(error)) => anyhow!("the operator stopped: {error}"),
                    Err(error) => anyhow!("the operator task failed: {error}"),
                });
            }
        }
    };
    drop(changes);
    let _ = stop_operator.send(());
    if let Some(task) = operator_task {
        // The operator lets in-flight reconciles finish for up to 10 s.
        if tokio::time::timeout(Duration::from_secs(15), task).await.is_err() {
            say("the operator did not stop within 15s; stopping it anyway");
        }
    }
    match kubelet {
        Some(kubelet) => {
            kubelet.stop().await;
            say("stopped the operator, the fake kubelet and the simulated router nodes");
        }
        None => say("stopped the operator"),
    }
    outcome
}

/// How to look around once the example set is Ready.
fn look_around(plane: &ControlPlane, cluster: &str, metrics: SocketAddr, simulated: bool) {
    let kubeconfig = plane.kubeconfig.display();
    let kill = if simulated {
        "the fake kubelet stops its simulated node"
    } else {
        "the kubelet stops its container, a real Raft member"
    };
    let text = format!(
        "
Look around from another terminal (the demo keeps printing phase changes here):
  export KUBECONFIG={kubeconfig}
  kubectl get conveyor                          # the five kinds with their phases
  kubectl describe etlrouterclusters {cluster}      # conditions and one Event per transition
  kubectl describe etlpipelines user-analytics  # its stages on the router
  kubectl get statefulsets,pods,services,configmaps,poddisruptionbudgets
  curl -s http://{metrics}/metrics | grep conveyor_
Kill a router node: {kill}, the cluster turns Degraded,
and it is Ready again once the StatefulSet controller re-creates the pod:
  kubectl delete pod {cluster}-1
Press Ctrl-C to stop everything the demo started.
"
    );
    println!("{text}");
}

/// Makes sure the control plane's binaries exist, building them with the
/// harness script the first time (`CONVEYOR_CONTROL_PLANE_BUILD_SCRIPT`
/// names another script, for tests). False when interrupted meanwhile.
async fn ensure_binaries(stop: &mut Stop) -> anyhow::Result<bool> {
    let missing = match crate::control_plane::binaries_dir() {
        Ok(_) => return Ok(true),
        Err(missing) => missing,
    };
    if std::env::var_os("KUBEBUILDER_ASSETS").is_some() {
        bail!("{missing}");
    }
    let script = std::env::var_os("CONVEYOR_KUBERNETES_BUILD_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(crate::kubernetes::build_script);
    let release = crate::kubernetes::requested();
    let (_, log) = tempfile::Builder::new()
        .prefix("conveyor-build-kubernetes-")
        .suffix(".log")
        .tempfile()?
        .keep()
        .context("cannot keep the build log")?;
    say(&missing);
    say(&format!(
        "building it once with {} {release} (from Go modules; about ten minutes; log: {})",
        script.display(),
        log.display()
    ));
    let mut child = spawn_logged(&script, &[release.as_str()], &log)?;
    let started = Instant::now();
    let mut poll = tokio::time::interval(Duration::from_millis(250));
    let mut progress = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(15),
        Duration::from_secs(15),
    );
    let status = loop {
        tokio::select! {
            _ = poll.tick() => if let Some(status) = child.try_wait()? { break status },
            _ = progress.tick() => say(&format!(
                "  still building the control plane ({}s): {}",
                started.elapsed().as_secs(),
                last_line(&log)
            )),
            signal = stop.wait() => {
                say(&format!("{signal}: stopping the build"));
                let _ = child.kill();
                let _ = child.wait();
                return Ok(false);
            }
        }
    };
    if !status.success() {
        bail!("{} failed ({status}); its log: {}", script.display(), log.display());
    }
    crate::control_plane::binaries_dir().map_err(|error| anyhow!("{error} after {}", script.display()))?;
    let _ = std::fs::remove_file(&log); // kept only when the build fails
    say(&format!("control plane built in {}s and cached", started.elapsed().as_secs()));
    Ok(true)
}

/// Runs `script` with its output in `log` and none of the variables cargo
/// sets for a build or a `cargo run` (Kubernetes' Makefile builds into an
/// inherited `OUT_DIR`, which a package with a build script gets).
fn spawn_logged(script: &Path, args: &[&str], log: &Path) -> anyhow::Result<Child> {
    let file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut command = std::process::Command::new("bash");
    for (name, _) in std::env::vars_os() {
        if is_cargo_build_variable(&name.to_string_lossy()) {
            command.env_remove(&name);
        }
    }
    command
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot run {}", script.display()))
}

fn is_cargo_build_variable(name: &str) -> bool {
    const BUILD: [&str; 10] = [
        "OUT_DIR",
        "TARGET",
        "HOST",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
        "NUM_JOBS",
        "RUSTC",
        "RUSTDOC",
        "RUSTFLAGS",
    ];
    (name.starts_with("CARGO_") && name != "CARGO_HOME")
        || BUILD.contains(&name)
        || name.starts_with("RUSTC_")
}

fn last_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or("").chars().take(120).collect()
}

/// The example set: `seed.yaml` then `services.yaml`.
fn examples() -> anyhow::Result<Vec<DynamicObject>> {
    SEED.split("\n---\n")
        .chain(SERVICES.split("\n---\n"))
        .map(|doc| serde_norway::from_str::<DynamicObject>(doc).context("an example object"))
        .collect()
}

async fn apply(admin: &Client, object: &DynamicObject) -> anyhow::Result<()> {
    let types = object.types.as_ref().context("an example without apiVersion and kind")?;
    let (group, version) = types.api_version.split_once('/').context("an example's apiVersion")?;
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &types.kind));
    let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), NAMESPACE, &resource);
    api.patch(&object.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object))
        .await
        .with_context(|| format!("cannot apply {}/{}", types.kind, object.name_any()))?;
    Ok(())
}

/// A loopback address with a port free right now, for the operator's HTTP endpoint.
fn free_local_address() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The operator's log lines go to a file, so the terminal shows the phases.
fn init_log(path: &Path) {
    let Ok(file) = std::fs::File::create(path) else { return };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}

fn say(line: &str) {
    println!("{line}");
}

/// SIGINT and SIGTERM, installed at start so none is lost.
struct Stop {
    interrupt: Signal,
    terminate: Signal,
}

impl Stop {
    fn install() -> std::io::Result<Stop> {
        Ok(Stop { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
    }

    /// Resolves on the next signal (cancel-safe).
    async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
