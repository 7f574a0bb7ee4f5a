//! The chaos suite's short version: each scenario of `conveyor-chaos` (see
//! docs/chaos.md) for a few iterations, as the real command on its own
//! control plane, one scenario at a time. The seeds are fixed so a failure
//! replays with the printed command; `CONVEYOR_CHAOS_SEED` picks another.

use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

/// One scenario at a time: each runs a control plane, a router simulator
/// and the operator, and they would compete for the same cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn chaos(scenario: &str, seed: u64, args: &[&str]) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let seed = std::env::var("CONVEYOR_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(seed);
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_conveyor-chaos"));
    command
        .args(["--scenario", scenario, "--seed", &seed.to_string(), "--report"])
        .arg(report.path())
        .args(args);
    let shown = format!("{command:?}");
    let started = Instant::now();
    let output = command.output().expect("conveyor-chaos runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = std::fs::read_to_string(report.path()).unwrap_or_default();
    eprintln!("{shown} took {:.0} s\n{summary}", started.elapsed().as_secs_f64());
    assert!(output.status.success(), "{shown} failed ({}):\n{stderr}\n{summary}", output.status);
}

#[test]
fn operator_killed_at_random_moments_converges() {
    chaos("kill", 1301, &["--kills", "6", "--pipelines", "30"]);
}

#[test]
fn api_server_restarts_conflicts_and_expired_watches_converge() {
    chaos("apiserver", 1302, &["--iterations", "2", "--pipelines", "30"]);
}

#[test]
fn router_faults_converge() {
    chaos("router", 1303, &["--iterations", "1"]);
}

#[test]
fn bad_input_ends_in_clear_conditions_without_hot_loops() {
    chaos("input", 1304, &["--iterations", "2", "--inputs", "50", "--quiet-window", "20s"]);
}
