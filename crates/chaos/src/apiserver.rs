//! Scenario `apiserver`: the API server killed and started again mid-run
//! (after an etcd compaction, so the operator's watches resume from a
//! compacted resource version and are answered `410 Gone`), while a second
//! client updates the same objects with their resourceVersion (labels,
//! annotations and spec edits), meeting and causing 409 conflicts. The
//! operator must relist and converge; its log must show the 410s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use kube::ResourceExt;
use kube::api::PostParams;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

use crate::check::{self, Expect};
use crate::harness::{World, metric};
use crate::model::Model;
use crate::report::Outcome;
use crate::{Args, say, workload};
use conveyor_testbed::control_plane::ControlPlane;

const EDITS_PER_ROUND: usize = 12;
/// How long the second writer runs around each restart.
const MEDDLING: Duration = Duration::from_secs(4);

#[derive(Default)]
struct Tally {
    updates: AtomicU64,
    conflicts: AtomicU64,
    other_errors: AtomicU64,
}

pub async fn run(
    plane: &mut ControlPlane,
    args: &Args,
    rng: &mut StdRng,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let env = vec![("CONVEYOR_HEALTH_INTERVAL", "2s".to_owned())];
    let world = World::start(plane, &format!("chaos-apiserver-{}", args.seed()), env).await?;
    let result = rounds(plane, &world, args, rng, outcome).await;
    world.stop().await;
    result
}

async fn rounds(
    plane: &mut ControlPlane,
    world: &World,
    args: &Args,
    rng: &mut StdRng,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let model = Arc::new(Mutex::new(Model::default()));
    let tally = Arc::new(Tally::default());
    let initial = model.lock().await.initial(rng, args.pipelines);
    check::send(&world.admin, &world.namespace, initial).await?;
    for round in 0..args.iterations {
        let edits = model.lock().await.random_ops(rng, EDITS_PER_ROUND);
        check::send(&world.admin, &world.namespace, edits).await?;
        // The second writer runs alone with the operator (the scenario's own
        // edits are sent before), so the model knows the last spec written.
        let stop = Arc::new(AtomicBool::new(false));
        let meddler = tokio::spawn(meddle(
            world.admin.clone(),
            world.namespace.clone(),
            model.clone(),
            tally.clone(),
            stop.clone(),
            StdRng::seed_from_u64(rng.random()),
        ));
        tokio::time::sleep(MEDDLING / 2).await; // let it meddle before the restart
        let revision = plane.compact_etcd().map_err(anyhow::Error::msg)?;
        say(&format!(
            "round {}: etcd compacted at revision {revision}; restarting the API server",
            round + 1
        ));
        let plane_ref = &mut *plane;
        tokio::task::block_in_place(|| plane_ref.restart_apiserver()).map_err(anyhow::Error::msg)?;
        outcome.fault("API server restarts (after an etcd compaction)", 1);
        tokio::time::sleep(MEDDLING / 2).await; // and after it
        stop.store(true, Ordering::SeqCst);
        meddler.await?;
    }
    let model = model.lock().await;
    outcome.converged(check::converge(world, &model, Expect::default(), args.converge_timeout).await?);

    let log = world.log_text();
    // kube-runtime words a 410 as the API server's message and reason.
    let gone = log
        .lines()
        .filter(|line| line.contains("watch failed") && line.contains("too old resource version"))
        .filter(|line| line.contains("Expired") || line.contains("Gone"))
        .count();
    let metrics = world.operator()?.get("/metrics").map(|(_, text)| text).unwrap_or_default();
    let restarts = metric(&metrics, "conveyor_watch_restarts_total", "");
    let errors = metric(&metrics, "conveyor_reconcile_errors_total", "");
    let conflicts = tally.conflicts.load(Ordering::SeqCst);
    outcome.fault("409 conflicts met by the second writer", conflicts);
    outcome.figure("second writer's updates taken", tally.updates.load(Ordering::SeqCst).to_string());
    outcome.figure(
        "second writer's other errors (API server away)",
        tally.other_errors.load(Ordering::SeqCst).to_string(),
    );
    outcome.figure(
        "operator log lines `watch failed` with a 410 (too old resource version: Expired)",
        gone.to_string(),
    );
    outcome.figure("operator's conveyor_watch_restarts_total at the end", restarts.to_string());
    outcome.figure("operator's failed reconciles (conveyor_reconcile_errors_total)", errors.to_string());
    if gone == 0 {
        bail!("no watch of the operator was answered 410 Gone: the scenario did not test a relist");
    }
    if conflicts == 0 {
        bail!("the second writer met no 409 conflict: the scenario did not test one");
    }
    Ok(())
}

/// Read-modify-update of random objects with their resourceVersion until
/// `stop`: a label and an annotation always, a pipeline's DLQ retries often.
async fn meddle(
    client: kube::Client,
    namespace: String,
    model: Arc<Mutex<Model>>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    mut rng: StdRng,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let mut model = model.lock().await;
        let pipeline = rng.random_bool(0.7);
        let (kind, name) = if pipeline {
            let names: Vec<&String> = model.pipelines.keys().collect();
            ("EtlPipeline", names[rng.random_range(0..names.len())].clone())
        } else {
            let names: Vec<(&String, &&str)> = model.services.iter().collect();
            let (name, kind) = names[rng.random_range(0..names.len())];
            (*kind, name.clone())
        };
        let api = workload::api(&client, &namespace, kind);
        let Ok(mut object) = api.get(&name).await else {
            tally.other_errors.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await; // the API server is away
            continue;
        };
        // Give the operator time to write the object in between.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        let stale = object.clone();
        object.labels_mut().insert("chaos/touched".into(), (n % 7).to_string());
        match api.replace(&name, &params(), &object).await {
            Ok(_) => tally.updates.fetch_add(1, Ordering::SeqCst),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tally.conflicts.fetch_add(1, Ordering::SeqCst)
            }
            Err(_) => tally.other_errors.fetch_add(1, Ordering::SeqCst),
        };
        // Then from the copy read before: a conflict unless nothing was
        // written since, resolved as clients do, by reading again.
        let retries = rng.random_range(0..=100);
        let edit_spec = pipeline && rng.random_bool(0.5);
        let edit = |object: &mut kube::api::DynamicObject| {
            object.annotations_mut().insert("chaos/touch".into(), n.to_string());
            if edit_spec {
                object.data["spec"]["dlq"]["maxRetries"] = retries.into();
            }
        };
        match update_until_taken(&api, &name, stale, edit, &tally).await {
            Ok(()) => {
                if edit_spec && let Some(spec) = model.pipelines.get_mut(&name) {
                    spec["dlq"]["maxRetries"] = retries.into();
                }
            }
            Err(_) => {
                tally.other_errors.fetch_add(1, Ordering::SeqCst);
                // The update may have been applied before its answer was lost: ask.
                if edit_spec {
                    let held = read_back(&api, &name).await;
                    if let (Some(held), Some(spec)) = (held, model.pipelines.get_mut(&name)) {
                        spec["dlq"]["maxRetries"] = held;
                    }
                }
            }
        }
    }
}

fn params() -> PostParams {
    PostParams { field_manager: Some("chaos-meddler".into()), ..Default::default() }
}

/// Updates `object` after `edit`, reading it again after each 409.
async fn update_until_taken(
    api: &kube::Api<kube::api::DynamicObject>,
    name: &str,
    mut object: kube::api::DynamicObject,
    edit: impl Fn(&mut kube::api::DynamicObject),
    tally: &Tally,
) -> Result<(), kube::Error> {
    loop {
        edit(&mut object);
        match api.replace(name, &params(), &object).await {
            Ok(_) => {
                tally.updates.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tally.conflicts.fetch_add(1, Ordering::SeqCst);
                object = api.get(name).await?;
            }
            Err(error) => return Err(error),
        }
    }
}

/// The DLQ retries the API server holds for pipeline `name`, once it answers.
async fn read_back(api: &kube::Api<kube::api::DynamicObject>, name: &str) -> Option<serde_json::Value> {
    for _ in 0..600 {
        if let Ok(object) = api.get(name).await {
            return Some(object.data["spec"]["dlq"]["maxRetries"].clone());
        }
        tokio::time::sleep(Duration::from_millis(200)).await; // the API server is away
    }
    None
}
