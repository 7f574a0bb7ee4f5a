//! `conveyor-router-sim`: a simulated Conveyor ETL router.
//!
//! - `conveyor-router-sim --config router.yaml --node-id 1 --listen-addr ...
//!   --raft-addr ... --peers ... --data-dir ...` plays one node of the public
//!   `conveyor-etl-router`, taking exactly its command line and configuration
//!   file (see `conveyor_router_sim::launch`), so the launch the
//!   operator generates runs against it unchanged. Each such process is one
//!   real Raft member (openraft): processes started with each other in their
//!   `--peers` form one cluster over their `--raft-addr` ports, and keep their
//!   vote, log and snapshot in `--data-dir`. `CONVEYOR_SIM_ROUTER_ADMIN=off`
//!   makes it answer UNIMPLEMENTED for every RouterAdmin method, as the public
//!   router does (`on`, the default, serves them). `CONVEYOR_SIM_LEASE_TTL_MS=30000`
//!   keeps registrations as the public router does: in the node's memory,
//!   outside Raft, leased and renewed by Heartbeat.
//! - `conveyor-router-sim cluster --nodes 3 --listen 127.0.0.2:50051` runs a
//!   whole cluster in one process for a local demo: node 1 on 127.0.0.2:50051,
//!   node 2 on 127.0.0.3:50051, node 3 on 127.0.0.4:50051 (every 127.0.0.0/8
//!   address is local on Linux). `--leased-registry [--lease-ttl-ms 30000]`
//!   keeps registrations as the public router does (per node, in memory,
//!   leased, renewed by Heartbeat) instead of replicating them through Raft.
//!
//! Logs go to stderr (`RUST_LOG`, default `info`); it runs until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use conveyor_router_sim::launch::{NodeArgs, launch};
use conveyor_router_sim::{RegistryMode, SimCluster, SimOptions, consecutive_nodes};
use conveyor_telemetry as telemetry;

/// Environment switch of RouterAdmin in the router's own mode.
const ROUTER_ADMIN_ENV: &str = "CONVEYOR_SIM_ROUTER_ADMIN";
/// Environment switch of the leased registry in the router's own mode: the lease in milliseconds.
const LEASE_TTL_ENV: &str = "CONVEYOR_SIM_LEASE_TTL_MS";

/// Simulates the Conveyor ETL router (ServiceRegistry, and RouterAdmin unless switched off, over gRPC).
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Subcommand)]
enum Mode {
    /// Runs a whole simulated cluster in this process, for a local demo.
    Cluster(ClusterArgs),
}

#[derive(clap::Args)]
struct ClusterArgs {
    /// Number of router nodes (Raft ids 1..=N).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=255))]
    nodes: u64,
    /// Address of node 1; node i listens on the (i-1)-th next IP, same port.
    #[arg(long, default_value = "127.0.0.2:50051")]
    listen: SocketAddr,
    /// Delay before a leaderless cluster with quorum elects a new leader, in milliseconds.
    #[arg(long, default_value_t = 150)]
    election_delay_ms: u64,
    /// Answer UNIMPLEMENTED for every RouterAdmin method, like router builds that serve only ServiceRegistry.
    #[arg(long)]
    router_admin_unimplemented: bool,
    /// Keep registrations as the public router does: per node, in memory,
    /// each with a lease renewed by Heartbeat (default: one registry
    /// replicated through Raft, without leases or Heartbeat).
    #[arg(long)]
    leased_registry: bool,
    /// The lease of a registration in the leased registry, in milliseconds (the public router's is 30 s).
    #[arg(long, default_value_t = 30_000, requires = "leased_registry", value_parser = clap::value_parser!(u64).range(1..))]
    lease_ttl_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = telemetry::init(telemetry::LogFormat::Auto)?;
    match cli.mode {
        Some(Mode::Cluster(args)) => run_cluster(args).await,
        None => run_node(&cli.node).await,
    }
}

async fn run_node(args: &NodeArgs) -> anyhow::Result<()> {
    let router_admin = match std::env::var(ROUTER_ADMIN_ENV).as_deref() {
        Err(_) | Ok("on") => true,
        Ok("off") => false,
        Ok(other) => bail!("{ROUTER_ADMIN_ENV}={other:?}: use on or off"),
    };
    let lease_ttl = match std::env::var(LEASE_TTL_ENV) {
        Err(_) => None,
        Ok(ms) => match ms.parse::<u64>() {
            Ok(ms) if ms > 0 => Some(Duration::from_millis(ms)),
            _ => bail!("{LEASE_TTL_ENV}={ms:?}: use a lease in milliseconds, above 0"),
        },
    };
    let node = launch(args, router_admin, lease_ttl).await?;
    tracing::info!(
        node_id = node.node_id,
        listen_addr = %node.listen,
        raft_addr = %node.raft,
        peers = ?node.other_peers,
        router_admin,
        leased_registry_ms = lease_ttl.map(|ttl| ttl.as_millis() as u64),
        settings = %serde_json::to_string(&node.settings)?,
        "router simulator node serving"
    );
    wait_for_shutdown().await?;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

async fn run_cluster(args: ClusterArgs) -> anyhow::Result<()> {
    let nodes = consecutive_nodes(args.listen, args.nodes).with_context(|| {
        format!("{} nodes from {} run past the end of the address space", args.nodes, args.listen)
    })?;
    let registry = if args.leased_registry {
        RegistryMode::Leased { ttl: Duration::from_millis(args.lease_ttl_ms) }
    } else {
        RegistryMode::Replicated
    };
    let options = SimOptions { election_delay: Duration::from_millis(args.election_delay_ms), registry };
    let sim = SimCluster::start(nodes, options).await.context("starting the simulated router nodes")?;
    sim.set_router_admin_unimplemented(args.router_admin_unimplemented);
    tracing::info!(members = %sim.endpoints().join(","), leader = ?sim.leader(), "router simulator running");

    wait_for_shutdown().await?;
    tracing::info!("shutting down");
    sim.shutdown().await;
    Ok(())
}

async fn wait_for_shutdown() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
