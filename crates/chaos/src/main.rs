//! `conveyor-chaos`: the operator binary under faults, on the local control
//! plane the tests use, the fake kubelet and the router simulator. Each
//! scenario runs in its own namespace against its own operator process and
//! ends with a convergence check (see `check.rs`); the summary is printed
//! and written as Markdown (default `docs/chaos-run.md`). The seed is printed
//! first: `--seed` replays a run's random choices.
//!
//! `cargo build --release && target/release/conveyor-chaos --kills 100`
//! (`tests/chaos.rs` runs a short version under `cargo test`).

mod apiserver;
mod check;
mod harness;
mod input;
mod kill;
mod model;
mod report;
mod router;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use clap::{Parser, ValueEnum};
use rand::SeedableRng;
use rand::rngs::StdRng;

use conveyor_testbed::control_plane::ControlPlane;
use conveyor_testbed::install::{install_crds, install_rbac};
use conveyor_testbed::{machine, workload};
use report::Outcome;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// SIGKILL of the operator while pipelines and services change.
    Kill,
    /// API server restarts, 409 conflicts from a second writer, 410 Gone watches.
    Apiserver,
    /// Router leader loss, partition, quorum loss, slow nodes, empty restart.
    Router,
    /// Property-based bad input through the API server.
    Input,
}

#[derive(Parser)]
#[command(about = "Runs the operator under faults and checks that everything converges")]
pub struct Args {
    /// Seed of every random choice (default: from the clock, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Scenarios to run, in order (default: all).
    #[arg(long = "scenario", value_enum)]
    pub scenarios: Vec<Scenario>,
    /// SIGKILLs of the operator in the `kill` scenario.
    #[arg(long, default_value_t = 100)]
    pub kills: usize,
    /// Rounds of the other scenarios (apiserver restarts, router fault
    /// rounds, bad-input batches).
    #[arg(long, default_value_t = 5)]
    pub iterations: usize,
    /// Pipelines created at the start of the `kill` and `apiserver` scenarios.
    #[arg(long, default_value_t = 100)]
    pub pipelines: usize,
    /// Generated objects per bad-input batch.
    #[arg(long, default_value_t = 60)]
    pub inputs: usize,
    /// How long the bad-input scenario counts reconciles once settled.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub quiet_window: Duration,
    /// How long each convergence check may take.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub converge_timeout: Duration,
    /// Where the Markdown summary goes (docs/chaos.md explains it).
    #[arg(long, default_value = "docs/chaos-run.md")]
    pub report: PathBuf,
}

impl Args {
    pub fn seed(&self) -> u64 {
        self.seed.expect("set in main")
    }
}

pub fn say(line: &str) {
    eprintln!("[chaos] {line}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    args.seed = Some(seed);
    if args.scenarios.is_empty() {
        args.scenarios = Scenario::value_variants().to_vec();
    }
    say(&format!("seed {seed} (replay with --seed {seed})"));
    conveyor_testbed::control_plane::install_crypto_provider();
    say("starting the control plane");
    let mut plane = tokio::task::spawn_blocking(ControlPlane::try_start).await?.map_err(|e| anyhow!(e))?;
    let admin = plane.client().await;
    install_crds(&admin).await?;
    install_rbac(&admin).await?;

    let mut outcomes = Vec::new();
    for (index, scenario) in args.scenarios.clone().into_iter().enumerate() {
        let name = scenario.to_possible_value().expect("no skipped variants").get_name().to_owned();
        // Each scenario draws from its own stream: one can be replayed alone.
        let mut rng = StdRng::seed_from_u64(seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut outcome = Outcome::new(scenario_name(scenario));
        say(&format!("scenario {name}"));
        let started = Instant::now();
        let result = match scenario {
            Scenario::Kill => kill::run(&plane, &args, &mut rng, &mut outcome).await,
            Scenario::Apiserver => apiserver::run(&mut plane, &args, &mut rng, &mut outcome).await,
            Scenario::Router => router::run(&plane, &args, &mut rng, &mut outcome).await,
            Scenario::Input => input::run(&plane, &args, &mut outcome).await,
        };
        outcome.took = started.elapsed();
        if let Err(error) = result {
            say(&format!("scenario {name} FAILED: {error:#}"));
            outcome.failure = Some(format!("{error:#}"));
        } else {
            say(&format!("scenario {name} passed in {:.0} s", outcome.took.as_secs_f64()));
        }
        outcomes.push(outcome);
    }
    plane.stop();

    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let markdown = report::markdown(&outcomes, seed, &command, &machine::describe());
    println!("{markdown}");
    if let Some(dir) = args.report.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.report, &markdown).with_context(|| format!("writing {}", args.report.display()))?;
    say(&format!("report written to {}", args.report.display()));
    let failed: Vec<&str> = outcomes.iter().filter(|o| o.failure.is_some()).map(|o| o.scenario).collect();
    if !failed.is_empty() {
        anyhow::bail!("failed: {} (seed {seed})", failed.join(", "));
    }
    Ok(())
}

fn scenario_name(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Kill => "kill -9 of the operator",
        Scenario::Apiserver => "API server restarts, 409s, 410s",
        Scenario::Router => "router faults",
        Scenario::Input => "bad input (property-based)",
    }
}
