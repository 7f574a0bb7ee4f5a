//! Scenario `input`: bad input through the real API server, from a
//! property-based generator (proptest strategies driven by the run's seed):
//! random specs within and beyond the schema, dangling references, replicas
//! 0, 2 and even, heartbeat at or above the election timeout, malformed
//! endpoints, a thousand steps, names at the length limits, and objects
//! deleted while being created. Every object the API server took must end
//! with a Ready condition whose reason is PascalCase and whose message says
//! something, every deleted one must be gone, the operator must not panic,
//! and once settled its reconciles per object per minute (from /metrics)
//! must stay under [`CEILING_PER_MINUTE`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};

use crate::harness::{CLUSTER, World, metric};
use crate::model::object;
use crate::report::Outcome;
use crate::{Args, say, workload};
use conveyor_testbed::control_plane::ControlPlane;

/// Reconciles per object per minute no kind may exceed once settled: the
/// progress poll of a forming object (every 2 s, 30 a minute) with room for
/// watch-triggered ones. A hot loop runs hundreds.
const CEILING_PER_MINUTE: f64 = 40.0;
const KINDS: [&str; 5] = ["EtlRouterCluster", "EtlSource", "EtlTransform", "EtlSink", "EtlPipeline"];
const SETTLE_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Clone, Debug)]
enum Step {
    Apply(Value),
    Delete {
        kind: &'static str,
        name: String,
    },
    /// Applied and deleted at once, without waiting for the operator.
    ApplyThenDelete(Value),
}

/// A name without its one-letter kind prefix: short ones (which collide,
/// so later steps edit or delete earlier objects), and names that reach 63
/// (a DNS label), 253 (the limit of an object's name) and 254 characters
/// with the prefix, and one with capitals.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "[a-z][a-z0-9]{0,4}",
        1 => Just("n".repeat(62)),
        1 => Just("l".repeat(252)),
        1 => Just("x".repeat(253)),
        1 => Just("Not-A-Name".to_owned()),
    ]
}

fn cluster() -> impl Strategy<Value = Value> {
    let replicas = prop_oneof![1 => Just(0), 3 => 1..=5, 1 => Just(100)];
    let timing = (1u32..3000, 1u32..3000);
    let image = prop_oneof![4 => Just("conveyor-etl-router:latest"), 1 => Just(""), 1 => Just("bad image!")];
    (name(), replicas, timing, image).prop_map(|(name, replicas, (election, heartbeat), image)| {
        object(
            "EtlRouterCluster",
            &format!("c{name}"),
            json!({"replicas": replicas, "image": image,
                       "raft": {"electionTimeoutMs": election, "heartbeatIntervalMs": heartbeat}}),
        )
    })
}

fn endpoint() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z]{1,8}-svc:[0-9]{2,5}",
        1 => Just(String::new()),
        1 => Just(":".to_owned()),
        1 => Just("host:".to_owned()),
        1 => Just("host:99999".to_owned()),
        1 => Just("http://host:50051".to_owned()),
        1 => Just("a b:1".to_owned()),
        1 => Just("[::1]:50051".to_owned()),
        1 => Just("ünïcode:50051".to_owned()),
        1 => "\\PC{0,40}",
    ]
}

fn service() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![Just("EtlSource"), Just("EtlTransform"), Just("EtlSink")];
    (kind, name(), endpoint(), proptest::option::of(name())).prop_map(|(kind, name, endpoint, cluster)| {
        let mut spec = json!({"grpc": {"endpoint": endpoint}});
        if let Some(cluster) = cluster {
            spec["clusterRef"] = json!({"name": format!("c{cluster}")});
        }
        object(kind, &format!("s{name}"), spec)
    })
}

/// A reference: a name the generator also uses for services (so sometimes
/// it resolves), a dangling one, or empty (the schema refuses it).
fn reference() -> impl Strategy<Value = String> {
    prop_oneof![8 => name().prop_map(|n| format!("s{n}")), 1 => Just(String::new())]
}

fn pipeline() -> impl Strategy<Value = Value> {
    let steps = prop_oneof![
        20 => proptest::collection::vec(reference(), 0..4),
        1 => reference().prop_map(|step| vec![step; 1000]),
    ];
    let cluster_ref =
        proptest::option::of(prop_oneof![Just(CLUSTER.to_owned()), name().prop_map(|n| format!("c{n}"))]);
    (name(), reference(), steps, reference(), 0u32..150, any::<bool>(), cluster_ref).prop_map(
        |(name, source, steps, sink, retries, enabled, cluster)| {
            let mut spec = json!({"source": source, "steps": steps, "sink": sink,
                                  "dlq": {"enabled": true, "maxRetries": retries}, "enabled": enabled});
            if let Some(cluster) = cluster {
                spec["clusterRef"] = json!({"name": cluster});
            }
            object("EtlPipeline", &format!("p{name}"), spec)
        },
    )
}

fn step() -> impl Strategy<Value = Step> {
    let any_object = prop_oneof![1 => cluster(), 4 => service(), 4 => pipeline()];
    prop_oneof![
        6 => any_object.clone().prop_map(Step::Apply),
        1 => any_object.clone().prop_map(Step::ApplyThenDelete),
        1 => any_object.prop_map(|o| Step::Delete {
            kind: kind_of(&o),
            name: o["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
        }),
    ]
}

fn kind_of(object: &Value) -> &'static str {
    KINDS.into_iter().find(|k| object["kind"] == *k).unwrap_or("EtlPipeline")
}

#[derive(Default)]
struct Tally {
    taken: u64,
    refused: u64,
    deleted: u64,
}

pub async fn run(plane: &ControlPlane, args: &Args, outcome: &mut Outcome) -> anyhow::Result<()> {
    let world = World::start(plane, &format!("chaos-input-{}", args.seed()), Vec::new()).await?;
    let result = batches(&world, args, outcome).await;
    world.stop().await;
    result
}

async fn batches(world: &World, args: &Args, outcome: &mut Outcome) -> anyhow::Result<()> {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&args.seed().to_le_bytes());
    let mut runner =
        TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let mut tally = Tally::default();
    let mut reasons: BTreeMap<String, String> = BTreeMap::new();
    let mut worst = (0.0, String::new());
    for batch in 0..args.iterations {
        for _ in 0..args.inputs {
            let step = step().new_tree(&mut runner).map_err(anyhow::Error::msg)?.current();
            apply(world, step, &mut tally).await;
        }
        say(&format!(
            "batch {}: {} taken, {} refused by the API server so far",
            batch + 1,
            tally.taken,
            tally.refused
        ));
        settle(world, &mut reasons).await?;
        let (rate, kind) = reconcile_rate(world, args.quiet_window).await?;
        if rate > worst.0 {
            worst = (rate, kind.clone());
        }
        if rate > CEILING_PER_MINUTE {
            bail!(
                "{kind}: {rate:.1} reconciles per object per minute once settled (ceiling {CEILING_PER_MINUTE})"
            );
        }
        let log = world.log_text();
        if log.contains("panicked") {
            bail!(
                "the operator panicked:\n{}",
                log.lines().filter(|l| l.contains("panicked")).collect::<Vec<_>>().join("\n")
            );
        }
        world
            .operator()?
            .get("/readyz")
            .filter(|(code, _)| *code == 200)
            .ok_or_else(|| anyhow::anyhow!("the operator stopped answering /readyz"))?;
    }
    outcome.fault("generated objects taken by the API server", tally.taken);
    outcome.fault("refused by the API server's schema", tally.refused);
    outcome.fault("deleted (some while being created)", tally.deleted);
    outcome.figure(
        "most reconciles per object per minute once settled",
        format!("{:.1} ({}; ceiling {CEILING_PER_MINUTE})", worst.0, worst.1),
    );
    let shown: Vec<String> =
        reasons.iter().map(|(reason, message)| format!("`{reason}`: {message}")).collect();
    outcome.figure("conditions seen (reason: one message)", format!("\n  - {}", shown.join("\n  - ")));
    Ok(())
}

async fn apply(world: &World, step: Step, tally: &mut Tally) {
    let params = PatchParams::apply("conveyor-chaos").force();
    let put = |object: &Value| {
        let api = workload::api(&world.admin, &world.namespace, kind_of(object));
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let object = object.clone();
        let params = params.clone();
        async move { api.patch(&name, &params, &Patch::Apply(&object)).await }
    };
    let delete = |kind: &'static str, name: String| {
        let api = workload::api(&world.admin, &world.namespace, kind);
        async move { api.delete(&name, &DeleteParams::default()).await }
    };
    match step {
        Step::Apply(object) => match put(&object).await {
            Ok(_) => tally.taken += 1,
            Err(_) => tally.refused += 1,
        },
        Step::ApplyThenDelete(object) => match put(&object).await {
            Ok(created) => {
                tally.taken += 1;
                if delete(kind_of(&object), created.name_any()).await.is_ok() {
                    tally.deleted += 1;
                }
            }
            Err(_) => tally.refused += 1,
        },
        Step::Delete { kind, name } => {
            if delete(kind, name).await.is_ok() {
                tally.deleted += 1;
            }
        }
    }
}

/// A message for the summary: the first 300 characters.
fn shortened(message: &str) -> String {
    match message.char_indices().nth(300) {
        Some((cut, _)) => format!("{} … ({} characters)", &message[..cut], message.len()),
        None => message.to_owned(),
    }
}

fn pascal_case(reason: &str) -> bool {
    reason.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && reason.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Waits until every object is gone or shows a clear Ready condition for
/// its latest generation; keeps one message per reason seen.
async fn settle(world: &World, reasons: &mut BTreeMap<String, String>) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let mut unclear = Vec::new();
        for kind in KINDS {
            let list =
                workload::api(&world.admin, &world.namespace, kind).list(&ListParams::default()).await?;
            for object in list.items {
                let name = object.name_any();
                if object.metadata.deletion_timestamp.is_some() {
                    unclear.push(format!(
                        "{kind} {name}: deleted, still there (finalizers {:?})",
                        object.finalizers()
                    ));
                    continue;
                }
                let status = &object.data["status"];
                let ready =
                    status["conditions"].as_array().and_then(|all| all.iter().find(|c| c["type"] == "Ready"));
                let reason = ready.and_then(|c| c["reason"].as_str()).unwrap_or("");
                let message = ready.and_then(|c| c["message"].as_str()).unwrap_or("");
                let current = status["observedGeneration"].as_i64() == object.metadata.generation;
                if !current || !pascal_case(reason) || message.len() < 10 {
                    unclear.push(format!(
                        "{kind} {name}: observedGeneration {} of {:?}, Ready reason {reason:?}, message {message:?}",
                        status["observedGeneration"], object.metadata.generation
                    ));
                } else {
                    reasons.entry(format!("{kind} {reason}")).or_insert_with(|| shortened(message));
                }
            }
        }
        if unclear.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let metrics = world.operator()?.get("/metrics").map(|(_, text)| text).unwrap_or_default();
            let counters: Vec<&str> = metrics
                .lines()
                .filter(|l| {
                    l.starts_with("conveyor_reconciles_total")
                        || l.starts_with("conveyor_watch_restarts_total")
                })
                .collect();
            bail!(
                "{} objects without a clear condition after {SETTLE_TIMEOUT:?}, e.g.:\n  {}\nthe operator's counters:\n  {}",
                unclear.len(),
                unclear.iter().take(10).cloned().collect::<Vec<_>>().join("\n  "),
                counters.join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await; // poll interval
    }
}

/// The highest reconciles per object per minute of any kind over `window`, and that kind.
async fn reconcile_rate(world: &World, window: Duration) -> anyhow::Result<(f64, String)> {
    let scrape = || -> anyhow::Result<String> {
        let (code, text) = world.operator()?.get("/metrics").ok_or_else(|| anyhow::anyhow!("no /metrics"))?;
        anyhow::ensure!(code == 200, "/metrics answered {code}");
        Ok(text)
    };
    let before = scrape()?;
    tokio::time::sleep(window).await; // the window being measured
    let after = scrape()?;
    let mut worst = (0.0, String::new());
    for kind in KINDS {
        let label = format!("kind=\"{kind}\"");
        let reconciles = metric(&after, "conveyor_reconciles_total", &label)
            - metric(&before, "conveyor_reconciles_total", &label);
        let objects = workload::api(&world.admin, &world.namespace, kind)
            .list(&ListParams::default())
            .await?
            .items
            .len();
        let rate = reconciles / objects.max(1) as f64 / (window.as_secs_f64() / 60.0);
        if rate > worst.0 {
            worst = (rate, format!("{kind}, {reconciles} reconciles of {objects} objects in {window:?}"));
        }
    }
    Ok(worst)
}
