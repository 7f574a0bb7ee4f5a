use clap::{Parser, Subcommand};

use conveyor_etl_operator::{controller, crd, telemetry};

#[cfg(feature = "jemalloc")]
mod allocator;

/// Kubernetes operator for Conveyor ETL router clusters, pipelines and services.
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Settings of `run` when no subcommand is given.
    #[command(flatten)]
    run: controller::Settings,
    /// Log lines as JSON, as text, or (auto) JSON unless stderr is a terminal.
    #[arg(long, global = true, env = "CONVEYOR_LOG_FORMAT", value_enum, default_value_t)]
    log_format: telemetry::LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against the cluster in KUBECONFIG (or in-cluster config). The default.
    Run(Box<controller::Settings>),
    /// Print the CustomResourceDefinitions as multi-document YAML.
    Crds,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crds) => print_crds(),
        command => {
            let settings = match command {
                Some(Command::Run(settings)) => *settings,
                _ => cli.run,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(run(settings, cli.log_format))
        }
    }
}

async fn run(settings: controller::Settings, log_format: telemetry::LogFormat) -> anyhow::Result<()> {
    let _telemetry = telemetry::init(log_format)?;
    let result = controller::run(settings).await;
    if let Err(error) = &result {
        tracing::error!(%error, "operator stopped");
    }
    result.map_err(Into::into)
}

fn print_crds() -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(crd::to_yaml().as_bytes()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}
