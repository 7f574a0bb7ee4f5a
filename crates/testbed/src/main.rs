//! `conveyor-demo` (`cargo demo` from the checkout): see the operator work on
//! this machine: a local control plane, simulated router nodes (or, with
//! `--real-node`, real router pods), the operator and the example set going
//! Ready; Ctrl-C stops it all.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    conveyor_testbed::demo::run(conveyor_testbed::demo::Options::parse()).await
}
