//! Scenario `kill`: the operator killed with SIGKILL at random moments
//! while pipelines and services are created, edited and deleted, and
//! started again each time; then everything must converge.

use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;

use crate::check::{self, Expect};
use crate::harness::World;
use crate::model::Model;
use crate::report::Outcome;
use crate::{Args, say};
use conveyor_testbed::control_plane::ControlPlane;

/// Changes sent per iteration after the first (which creates everything).
const OPS_PER_ITERATION: usize = 12;
/// The kill lands somewhere in this window after the changes start.
const KILL_WINDOW_MS: u64 = 2500;

pub async fn run(
    plane: &ControlPlane,
    args: &Args,
    rng: &mut StdRng,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let env = vec![("CONVEYOR_HEALTH_INTERVAL", "2s".to_owned())];
    let mut world = World::start(plane, &format!("chaos-kill-{}", args.seed()), env).await?;
    let result = kill_loop(&mut world, args, rng, outcome).await;
    world.stop().await;
    result
}

async fn kill_loop(
    world: &mut World,
    args: &Args,
    rng: &mut StdRng,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let mut model = Model::default();
    let mut kills = 0;
    for iteration in 0..args.kills {
        let ops = if iteration == 0 {
            model.initial(rng, args.pipelines)
        } else {
            model.random_ops(rng, OPS_PER_ITERATION)
        };
        let count = ops.len();
        let kill_after = Duration::from_millis(rng.random_range(0..KILL_WINDOW_MS));
        let client = world.admin.clone();
        let namespace = world.namespace.clone();
        let sending = tokio::spawn(async move { check::send(&client, &namespace, ops).await });
        tokio::time::sleep(kill_after).await; // the random moment of the kill
        world.kill_operator();
        kills += 1;
        sending.await??;
        say(&format!("kill {kills}: {} ms into {count} changes", kill_after.as_millis()));
        world.start_operator().await?;
    }
    outcome.fault("operator SIGKILLs", kills);
    outcome.figure("pipelines created", model.created.len().to_string());
    outcome.figure("pipelines deleted", model.deleted_pipelines.len().to_string());
    outcome.figure("services deleted", model.deleted_services.len().to_string());
    let took = check::converge(world, &model, Expect::default(), args.converge_timeout).await?;
    outcome.converged(took);
    Ok(())
}
