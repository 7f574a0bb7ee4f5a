//! `conveyor-router-sim`: a simulated Conveyor ETL router cluster for local demos.
//!
//! `conveyor-router-sim --nodes 3 --listen 127.0.0.2:50051` serves node 1 on
//! 127.0.0.2:50051, node 2 on 127.0.0.3:50051, node 3 on 127.0.0.4:50051 (every
//! 127.0.0.0/8 address is local on Linux), logs to stderr (`RUST_LOG`, default
//! `info`), and runs until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use conveyor_etl_operator::sim::{SimCluster, SimOptions, consecutive_nodes};
use conveyor_etl_operator::telemetry;

/// Runs a simulated Conveyor ETL router cluster (RouterAdmin and ServiceRegistry over gRPC).
#[derive(Parser)]
#[command(version, about)]
struct Args {
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = telemetry::init(telemetry::LogFormat::Auto)?;
    let nodes = consecutive_nodes(args.listen, args.nodes).with_context(|| {
        format!("{} nodes from {} run past the end of the address space", args.nodes, args.listen)
    })?;
    let options = SimOptions { election_delay: Duration::from_millis(args.election_delay_ms) };
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
