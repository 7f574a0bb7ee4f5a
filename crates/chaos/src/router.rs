//! Scenario `router`: faults of the router cluster while pipelines and
//! services change: the leader lost, a follower partitioned, quorum lost
//! and restored, the leader slowed just under and just over the operator's
//! router deadline, and the whole router restarted with empty state. After
//! each, the fault is healed and everything must converge; where the
//! cluster keeps quorum, the dependants must converge during the fault too.

use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::check::{self, Expect};
use crate::harness::{CLUSTER, World};
use crate::model::Model;
use crate::report::Outcome;
use crate::{Args, say};
use conveyor_router_sim::SimCluster;
use conveyor_testbed::control_plane::ControlPlane;

/// The operator's router deadline in this scenario (`--router-timeout`).
const ROUTER_TIMEOUT: Duration = Duration::from_secs(1);
const PIPELINES: usize = 20;
const EDITS_PER_FAULT: usize = 6;

#[derive(Clone, Copy, Debug)]
enum Fault {
    LeaderLoss,
    FollowerPartition,
    QuorumLoss,
    SlowUnderDeadline,
    SlowOverDeadline,
    EmptyRestart,
}

const FAULTS: [Fault; 6] = [
    Fault::LeaderLoss,
    Fault::FollowerPartition,
    Fault::QuorumLoss,
    Fault::SlowUnderDeadline,
    Fault::SlowOverDeadline,
    Fault::EmptyRestart,
];

pub async fn run(
    plane: &ControlPlane,
    args: &Args,
    rng: &mut StdRng,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let env = vec![
        ("CONVEYOR_HEALTH_INTERVAL", "2s".to_owned()),
        ("CONVEYOR_ROUTER_TIMEOUT", format!("{}ms", ROUTER_TIMEOUT.as_millis())),
    ];
    let world = World::start(plane, &format!("chaos-router-{}", args.seed()), env).await?;
    let result = rounds(&world, args, rng, outcome).await;
    world.stop().await;
    result
}

async fn rounds(world: &World, args: &Args, rng: &mut StdRng, outcome: &mut Outcome) -> anyhow::Result<()> {
    let mut model = Model::default();
    check::send(&world.admin, &world.namespace, model.initial(rng, PIPELINES)).await?;
    let mut expect = Expect::default();
    outcome.converged(check::converge(world, &model, expect, args.converge_timeout).await?);
    for round in 0..args.iterations {
        let mut faults = FAULTS;
        faults.shuffle(rng);
        for fault in faults {
            say(&format!("round {}: {fault:?}", round + 1));
            inject(world, &mut model, &mut expect, fault, args, rng, outcome)
                .await
                .map_err(|error| error.context(format!("round {}, {fault:?}", round + 1)))?;
        }
    }
    Ok(())
}

fn members(sim: &SimCluster) -> Vec<u64> {
    (0..16).filter(|id| sim.addr(*id).is_some()).collect()
}

async fn inject(
    world: &World,
    model: &mut Model,
    expect: &mut Expect,
    fault: Fault,
    args: &Args,
    rng: &mut StdRng,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let sim = &world.kubelet.sim;
    let leader = sim.leader().ok_or_else(|| anyhow::anyhow!("no router leader before {fault:?}"))?;
    let followers: Vec<u64> = members(sim).into_iter().filter(|id| *id != leader).collect();
    let follower = followers[rng.random_range(0..followers.len())];
    let edits = model.random_ops(rng, EDITS_PER_FAULT);
    let during = Expect { cluster_degraded: true, ..*expect };
    match fault {
        Fault::LeaderLoss => {
            sim.stop_node(leader).await;
            check::send(&world.admin, &world.namespace, edits).await?;
            outcome.converged(check::converge(world, model, during, args.converge_timeout).await?);
            sim.restart_node(leader).await?;
        }
        Fault::FollowerPartition => {
            sim.partition_node(follower);
            check::send(&world.admin, &world.namespace, edits).await?;
            outcome.converged(check::converge(world, model, during, args.converge_timeout).await?);
            sim.heal_node(follower);
        }
        Fault::QuorumLoss => {
            sim.stop_node(leader).await;
            sim.stop_node(follower).await;
            check::send(&world.admin, &world.namespace, edits).await?;
            world.wait_phase("EtlRouterCluster", CLUSTER, &["Unavailable"], args.converge_timeout).await?;
            sim.restart_node(leader).await?;
            sim.restart_node(follower).await?;
        }
        Fault::SlowUnderDeadline => {
            sim.slow_node(leader, ROUTER_TIMEOUT * 6 / 10);
            check::send(&world.admin, &world.namespace, edits).await?;
            outcome.converged(check::converge(world, model, during, args.converge_timeout).await?);
            sim.slow_node(leader, Duration::ZERO);
        }
        Fault::SlowOverDeadline => {
            sim.slow_node(leader, ROUTER_TIMEOUT * 15 / 10);
            check::send(&world.admin, &world.namespace, edits).await?;
            // Calls to the leader time out: the cluster must say so.
            let shown = world
                .wait_phase("EtlRouterCluster", CLUSTER, &["Degraded", "Unavailable"], args.converge_timeout)
                .await?;
            outcome.figure("cluster with its leader over the deadline", shown);
            sim.slow_node(leader, Duration::ZERO);
        }
        Fault::EmptyRestart => {
            check::send(&world.admin, &world.namespace, edits).await?;
            sim.restart_empty().await?;
            expect.wipes += 1;
        }
    }
    outcome.fault(&format!("{fault:?}"), 1);
    outcome.converged(check::converge(world, model, *expect, args.converge_timeout).await?);
    Ok(())
}
