//! `conveyor-bench`: the operator's cost at scale, on the local control
//! plane the tests use and the router simulator, in one run.
//!
//! It measures the API server's own write floor, then runs the operator
//! binary at its default settings on one router cluster, a few dozen
//! services and N pipelines, and prints one table: time to Ready against the
//! floor, API requests by kind (from the API server's audit log) and router
//! calls (from the simulator) during the run, an idle window and a busy one
//! (records flowing through every stage), resident
//! memory, a restart's catch-up, a router node's loss and spec-edit latency.
//! The table is written as Markdown (default `docs/benchmark.md`).
//!
//! The operator is measured as the image ships it (the `dist` profile), from
//! next to this binary:
//!
//! ```text
//! cargo build --profile dist -p conveyor-etl-operator
//! cargo build --release -p conveyor-bench -p conveyor-router-sim
//! cp target/dist/conveyor-etl-operator target/release/
//! target/release/conveyor-bench --pipelines 1000
//! ```

mod audit;
mod cpu;
mod floor;
mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

use audit::AuditLog;
use conveyor_etl_operator::router::mapping::pipeline_id;
use conveyor_router_sim::{Rates, SimCluster};
use conveyor_testbed::control_plane::{ControlPlane, OPERATOR_USER};
use conveyor_testbed::install::{install_crds, install_rbac};
use conveyor_testbed::kubelet::FakeKubelet;
use conveyor_testbed::operator_process::OperatorProcess;
use conveyor_testbed::{machine, workload};
use report::{Figures, Large};
use workload::{CLUSTER, Phases};

const NAMESPACE: &str = "bench";
/// Where the example set alone runs, before the benchmark's own objects.
const EXAMPLE_NAMESPACE: &str = "bench-example";
/// How long the example set sits idle before its memory is read.
const EXAMPLE_IDLE: Duration = Duration::from_secs(15);
/// The operator's default health interval (`--health-interval`).
const HEALTH_INTERVAL: Duration = Duration::from_secs(10);
/// The operator's default stats interval (`--stats-interval`).
const STATS_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Parser)]
#[command(about = "Measures the operator at scale against the API server's own write floor")]
struct Args {
    /// Pipelines applied at once (N).
    #[arg(long, default_value_t = 1000)]
    pipelines: usize,
    /// Sources, transforms and sinks each (shared by the pipelines).
    #[arg(long, default_value_t = 10)]
    services_per_kind: usize,
    /// Grow to each of these many pipelines in turn at the end, sampling
    /// memory and time at each (`10000,20000`; 0: skip). Two or more sizes
    /// make the report project 100,000.
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    large: Vec<usize>,
    /// The idle window after all are Ready.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    idle: Duration,
    /// The busy window after the idle one: records flow through every
    /// stage. The default spans a stats interval and a health interval, so
    /// every pipeline's stage figures are read at least once in it.
    #[arg(long, default_value = "5m10s", value_parser = humantime::parse_duration)]
    busy: Duration,
    /// Records per second per stage during the busy window.
    #[arg(long, default_value_t = 100.0)]
    records_per_second: f64,
    /// Spec edits timed from the API to the router.
    #[arg(long, default_value_t = 100)]
    edits: usize,
    /// Give up when a phase takes longer than this.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Copy the API server's audit log here at the end, for a closer look.
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Keep everything running this long after the last size, the
    /// operator's pid printed, to look into it (a debugger, a profiler).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    linger: Duration,
    /// Where the Markdown report goes.
    #[arg(long, default_value = "docs/benchmark.md")]
    report: PathBuf,
}

/// The bench's own process in the CPU figures: it runs the simulated router
/// nodes, the fake kubelet, the applies and the watches that time them.
const BENCH_PROCESS: &str = "bench (routers, kubelet, applies)";

fn secs_of(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

fn say(line: &str) {
    eprintln!("[bench] {line}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    conveyor_testbed::control_plane::install_crypto_provider();
    say("starting the control plane");
    let mut plane = tokio::task::spawn_blocking(ControlPlane::try_start).await?.map_err(|e| anyhow!(e))?;
    let outcome = run(&args, &plane).await;
    if let Some(copy) = &args.audit_log {
        std::fs::copy(plane.audit_log(), copy)
            .with_context(|| format!("copying the audit log to {}", copy.display()))?;
    }
    plane.stop();
    let figures = outcome?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let markdown = figures.markdown(&command, &machine::describe());
    println!("{markdown}");
    if let Some(dir) = args.report.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.report, &markdown).with_context(|| format!("writing {}", args.report.display()))?;
    say(&format!("report written to {}", args.report.display()));
    Ok(())
}

async fn run(args: &Args, plane: &ControlPlane) -> anyhow::Result<Figures> {
    let admin = plane.client().await;
    install_crds(&admin).await?;
    install_rbac(&admin).await?;
    for namespace in [NAMESPACE, floor::NAMESPACE, EXAMPLE_NAMESPACE] {
        let object = serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))?;
        Api::<Namespace>::all(admin.clone()).create(&PostParams::default(), &object).await?;
    }
    let mut figures = Figures {
        pipelines: args.pipelines,
        services: 3 * args.services_per_kind,
        health_interval: HEALTH_INTERVAL,
        stats_interval: STATS_INTERVAL,
        idle: args.idle,
        busy: args.busy,
        ..Figures::default()
    };

    let mut processes: Vec<(String, u32)> =
        plane.processes().into_iter().map(|(name, pid)| (name.to_owned(), pid)).collect();
    processes.push((BENCH_PROCESS.to_owned(), std::process::id()));
    say(&format!("floor: {} sequential status applies", args.pipelines));
    let before = cpu::Sample::take(&processes);
    figures.floor = floor::measure(&admin, args.pipelines, args.services_per_kind).await?;
    figures.floor_cpu = before.until_now(&processes);
    say(&format!("floor: {:.2} s ({})", figures.floor.as_secs_f64(), figures.floor_cpu.describe()));

    let kubeconfig = plane.dir().join("operator.kubeconfig");
    std::fs::write(&kubeconfig, plane.kubeconfig_yaml(OPERATOR_USER))?;
    say("the example set alone (1 cluster, 3 services, 1 pipeline): memory when idle");
    let (rss, anon, file) = example_idle(plane, &admin, &kubeconfig, args.timeout).await?;
    figures.rss_example_idle_mib = Some(rss);
    figures.rss_split.push(("example idle".into(), anon, file));

    let kubelet = FakeKubelet::start(admin.clone(), NAMESPACE, CLUSTER, 50051).await;
    let log = plane.dir().join("operator.log");
    let mut operator = OperatorProcess::start(&kubeconfig, NAMESPACE, &log).await?;
    let phases = Phases::watch(&admin, NAMESPACE);
    let mut audit = AuditLog::from_now(plane.audit_log());
    let calls_before = total_calls(&kubelet.sim);
    processes.push(("operator".to_owned(), operator.pid()));

    say(&format!("applying 1 cluster, {} services, {} pipelines", figures.services, args.pipelines));
    let cpu_before = cpu::Sample::take(&processes);
    let started = Instant::now();
    let mut objects = vec![workload::cluster()];
    objects.extend(workload::services(args.services_per_kind));
    objects.extend(workload::pipelines(0..args.pipelines, args.services_per_kind));
    let total = objects.len();
    workload::apply_all(&admin, NAMESPACE, objects).await?;
    figures.applied = started.elapsed();
    all_ready(&phases, total, args.timeout).await?;
    figures.to_ready = started.elapsed();
    figures.run_cpu = cpu_before.until_now(&processes);
    figures.cluster_formed = phases.first_ready("EtlRouterCluster", CLUSTER).map(|at| at - started);
    figures.run_reconciles = operator.metric_sum("conveyor_reconciles_total");
    figures.run_reconciles_by_kind = reconciles_by_kind(&operator);
    figures.run_requests = audit.take(OPERATOR_USER);
    figures.run_pipeline_events = events_about(&admin, "EtlPipeline").await?;
    figures.run_router_calls = total_calls(&kubelet.sim) - calls_before;
    say(&format!("all {total} Ready in {:.2} s", figures.to_ready.as_secs_f64()));

    say(&format!("idle window of {}", humantime::format_duration(args.idle)));
    let calls_before = kubelet.sim.call_counts();
    tokio::time::sleep(args.idle).await; // the window being measured
    figures.idle_requests = audit.take(OPERATOR_USER);
    figures.idle_router_calls = calls_since(&kubelet.sim, &calls_before);
    figures.rss_ready_mib = operator.rss_mib();
    let (anon, file) = operator.rss_split_mib();
    figures.rss_split.push((format!("{} Ready", args.pipelines), anon, file));

    if !args.busy.is_zero() {
        say(&format!("busy window of {}: records flowing", humantime::format_duration(args.busy)));
        let rates = Rates { records_per_second: args.records_per_second, errors_per_second: 0.0 };
        kubelet.sim.set_flow(rates);
        let calls_before = kubelet.sim.call_counts();
        tokio::time::sleep(args.busy).await; // the window being measured
        figures.busy_requests = audit.take(OPERATOR_USER);
        figures.busy_router_calls = calls_since(&kubelet.sim, &calls_before);
        kubelet.sim.set_flow(Rates::default());
    }

    say("restart with every object Ready");
    operator.stop()?;
    audit.take(OPERATOR_USER);
    let started = Instant::now();
    operator = OperatorProcess::start(&kubeconfig, NAMESPACE, &log).await?;
    let deadline = Instant::now() + args.timeout;
    while operator.metric_sum("conveyor_reconciles_total") < total as f64 {
        if Instant::now() > deadline {
            bail!("the restarted operator did not reconcile every object in time");
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
    }
    figures.restart_catch_up = Some(started.elapsed());
    tokio::time::sleep(Duration::from_secs(5)).await; // writes the catch-up still makes
    figures.restart_requests = audit.take(OPERATOR_USER);

    say(&format!("{} spec edits timed to the router", args.edits));
    figures.edit_latencies = edits(&admin, &kubelet.sim, args.edits.min(args.pipelines)).await?;

    say("killing a router node");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NAMESPACE);
    let killed = Instant::now();
    pods.delete(&format!("{CLUSTER}-1"), &DeleteParams::default()).await?;
    let deadline = Instant::now() + args.timeout;
    while phases.phase("EtlRouterCluster", CLUSTER).as_deref() != Some("Degraded") {
        if Instant::now() > deadline {
            bail!("the cluster never showed Degraded");
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
    }
    figures.degraded_after = Some(killed.elapsed());
    all_ready(&phases, total, args.timeout).await?;

    let mut sizes: Vec<usize> = args.large.iter().copied().filter(|&size| size > args.pipelines).collect();
    sizes.sort();
    sizes.dedup();
    let mut from = args.pipelines;
    for size in sizes {
        say(&format!("growing to {size} pipelines"));
        let started = Instant::now();
        workload::apply_all(&admin, NAMESPACE, workload::pipelines(from..size, args.services_per_kind))
            .await?;
        all_ready(&phases, total + size - args.pipelines, args.timeout).await?;
        let to_ready = started.elapsed();
        figures.large.push(Large { from, pipelines: size, to_ready, rss_mib: operator.rss_mib() });
        let (anon, file) = operator.rss_split_mib();
        figures.rss_split.push((format!("{size} watched"), anon, file));
        from = size;
    }
    if !args.linger.is_zero() {
        say(&format!("lingering {} with the operator (pid {})", secs_of(args.linger), operator.pid()));
        tokio::time::sleep(args.linger).await; // asked for, to look into the operator
    }
    operator.stop()?;
    kubelet.stop().await;
    Ok(figures)
}

/// The resident memory (total, anonymous, file) of an operator that watches only the example set
/// (one cluster, a source, a transform, a sink and a pipeline), all Ready
/// and then idle for [`EXAMPLE_IDLE`]; that operator and its routers stop after.
async fn example_idle(
    plane: &ControlPlane,
    admin: &Client,
    kubeconfig: &std::path::Path,
    timeout: Duration,
) -> anyhow::Result<(f64, f64, f64)> {
    let kubelet = FakeKubelet::start(admin.clone(), EXAMPLE_NAMESPACE, CLUSTER, 50051).await;
    let log = plane.dir().join("operator-example.log");
    let operator = OperatorProcess::start(kubeconfig, EXAMPLE_NAMESPACE, &log).await?;
    let phases = Phases::watch(admin, EXAMPLE_NAMESPACE);
    let mut objects = vec![workload::cluster()];
    objects.extend(workload::services(1));
    objects.extend(workload::pipelines(0..1, 1));
    let total = objects.len();
    workload::apply_all(admin, EXAMPLE_NAMESPACE, objects).await?;
    all_ready(&phases, total, timeout).await?;
    tokio::time::sleep(EXAMPLE_IDLE).await; // the idle time measured
    let rss = operator.rss_mib();
    let (anon, file) = operator.rss_split_mib();
    operator.stop()?;
    kubelet.stop().await;
    Ok((rss, anon, file))
}

/// The Events in the benchmark's namespace about objects of `kind`: each
/// was created once (a repeat patches its series).
async fn events_about(admin: &Client, kind: &str) -> anyhow::Result<u64> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(admin.clone(), NAMESPACE);
    let list = events.list(&Default::default()).await?;
    let about = |event: &&k8s_openapi::api::events::v1::Event| {
        event.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some(kind)
    };
    Ok(list.items.iter().filter(about).count() as u64)
}

/// Router calls by method since `before` was counted (methods not called left out).
fn calls_since(sim: &SimCluster, before: &BTreeMap<String, u64>) -> Vec<(String, u64)> {
    sim.call_counts()
        .into_iter()
        .map(|(method, n)| (method.clone(), n - before.get(&method).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn total_calls(sim: &SimCluster) -> u64 {
    sim.call_counts().values().sum()
}

/// Waits until `total` objects are known and all Ready, saying how far it got now and then.
async fn all_ready(phases: &Phases, total: usize, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut said = Instant::now();
    loop {
        let (ready, known) = phases.count("Ready");
        if ready == total && known == total {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{ready} of {total} Ready after {}", humantime::format_duration(timeout));
        }
        if said.elapsed() > Duration::from_secs(10) {
            say(&format!("{ready} of {total} Ready"));
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
    }
}

/// Disables `n` pipelines one after another, each timed from the API write
/// until the router holds the change, then enables them again.
async fn edits(admin: &Client, sim: &SimCluster, n: usize) -> anyhow::Result<Vec<Duration>> {
    let pipelines = workload::api(admin, NAMESPACE, "EtlPipeline");
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let name = workload::pipeline_name(i);
        let id = pipeline_id(NAMESPACE, &name);
        let patch = serde_json::json!({"spec": {"enabled": false}});
        let started = Instant::now();
        pipelines.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        let deadline = started + Duration::from_secs(60);
        while sim.pipeline(&id).is_none_or(|(config, status)| config.enabled || status.enabled) {
            if Instant::now() > deadline {
                bail!("{name}'s edit did not reach the router within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await; // poll interval
        }
        latencies.push(started.elapsed());
    }
    // Enabled again (untimed): a disabled pipeline shows phase Disabled, and
    // the steps after this one wait for every object to be Ready.
    let patch = serde_json::json!({"spec": {"enabled": true}});
    for i in 0..n {
        pipelines.patch(&workload::pipeline_name(i), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    Ok(latencies)
}

/// `EtlPipeline: 1000 (0 failed), ...` from the operator's metrics.
fn reconciles_by_kind(operator: &OperatorProcess) -> String {
    let failed = operator.metric_by_label("conveyor_reconcile_errors_total", "kind");
    let kinds: Vec<String> = operator
        .metric_by_label("conveyor_reconciles_total", "kind")
        .into_iter()
        .map(|(kind, count)| {
            let failed = failed.iter().filter(|(k, _)| *k == kind).fold(0.0, |sum, (_, n)| sum + n);
            format!("{kind}: {count:.0} ({failed:.0} failed)")
        })
        .collect();
    kinds.join(", ")
}
