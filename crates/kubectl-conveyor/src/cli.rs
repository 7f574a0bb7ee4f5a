//! The command line, kubectl's conventions: `--kubeconfig`, `--context`,
//! `-n/--namespace` (default: the context's), `-A/--all-namespaces`, and
//! `-o json|yaml` where a command returns objects.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};

use conveyor_etl_operator::crd::EtlRouterCluster;
use conveyor_etl_operator::runtime::{PAUSED_ANNOTATION, RESTARTED_AT_ANNOTATION};

use crate::fetch::{self, Extras};
use crate::kinds::{Kind, parse_target};
use crate::{graph, render, why};

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-conveyor",
    bin_name = "kubectl conveyor",
    version,
    about = "Conveyor ETL at a glance: a router cluster's status, why an object is not Ready (followed to its first cause), a pipeline's graph; pause, resume and restart a cluster."
)]
pub struct Cli {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Every namespace (`status` without a cluster only).
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    Json,
    Yaml,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum GraphOutput {
    Json,
    Yaml,
    /// Graphviz (`| dot -Tsvg > pipeline.svg`).
    Dot,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// A router cluster: phase, leader, term, members, its services and pipelines. Without CLUSTER, one line per cluster.
    Status {
        cluster: Option<String>,
        /// Print the objects instead (a List).
        #[arg(short = 'o', long)]
        output: Option<Output>,
    },
    /// Why KIND/NAME is not Ready, followed across objects to the first cause (KIND: etlp, etlrc, etlsrc, etltf, etlsink, or their singular or plural).
    Why {
        /// KIND/NAME, or KIND followed by NAME.
        target: String,
        name: Option<String>,
        /// Print the chain's steps instead.
        #[arg(short = 'o', long)]
        output: Option<Output>,
    },
    /// A pipeline's stages, source → steps → sink, and its dead-letter queue.
    Graph {
        pipeline: String,
        #[arg(short = 'o', long)]
        output: Option<GraphOutput>,
    },
    /// Pause a router cluster: the operator reports its health but changes nothing (annotation conveyor.etl/paused).
    Pause { cluster: String },
    /// Resume a paused router cluster.
    Resume { cluster: String },
    /// Restart a router cluster's pods: one at a time, the leader last, each waiting for the cluster to be healthy.
    Restart { cluster: String },
}

/// A client from the user's kubeconfig, and the namespace to use.
async fn connect(cli: &Cli) -> anyhow::Result<(Client, String)> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = KubeConfigOptions { context: cli.context.clone(), ..KubeConfigOptions::default() };
    let config = match &cli.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await
        }
        None => Config::from_kubeconfig(&options).await,
    }
    .context("cannot load the kubeconfig")?;
    let namespace = cli.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    Ok((Client::try_from(config)?, namespace))
}

fn print_as(out: &mut dyn Write, value: &impl Serialize, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(value)?)?,
        Output::Yaml => write!(out, "{}", serde_norway::to_string(value)?)?,
    }
    Ok(())
}

fn list_of(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items})
}

fn one_namespace(cli: &Cli, command: &str) -> anyhow::Result<()> {
    if cli.all_namespaces {
        bail!("{command} works in one namespace: use -n NAMESPACE instead of -A");
    }
    Ok(())
}

/// Runs the command, writing what it prints to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    let (client, namespace) = connect(&cli).await?;
    let now = Timestamp::now();
    match &cli.command {
        Command::Status { cluster: None, output } => {
            let scope = (!cli.all_namespaces).then_some(namespace.as_str());
            let snapshot = fetch::snapshot(&client, scope, Extras::default()).await?;
            if let Some(output) = output {
                let items = snapshot.clusters.iter().map(serde_json::to_value).collect::<Result<_, _>>()?;
                return print_as(out, &list_of(items), *output);
            }
            if snapshot.clusters.is_empty() {
                let place = scope.map_or_else(|| "any namespace".to_owned(), |ns| format!("namespace {ns}"));
                writeln!(out, "No EtlRouterCluster found in {place}.")?;
                return Ok(());
            }
            write!(out, "{}", render::status_summary(&snapshot, cli.all_namespaces, now))?;
        }
        Command::Status { cluster: Some(name), output } => {
            one_namespace(&cli, "status CLUSTER")?;
            let snapshot =
                fetch::snapshot(&client, Some(&namespace), Extras { pods: true, events: false }).await?;
            let Some(cluster) = snapshot.cluster(&namespace, name) else {
                bail!("etlroutercluster {name} not found in namespace {namespace}");
            };
            if let Some(output) = output {
                let mut items = vec![serde_json::to_value(cluster)?];
                for pod in snapshot.pods_of(&namespace, name) {
                    items.push(serde_json::to_value(pod)?);
                }
                let services: Vec<(Kind, String)> = snapshot
                    .services_of(&namespace, name)
                    .iter()
                    .map(|s| (s.kind, s.name().to_owned()))
                    .collect();
                let of = |kind: Kind, object: &dyn ResourceName| services.contains(&(kind, object.name()));
                for source in snapshot.sources.iter().filter(|s| of(Kind::Source, *s)) {
                    items.push(serde_json::to_value(source)?);
                }
                for transform in snapshot.transforms.iter().filter(|s| of(Kind::Transform, *s)) {
                    items.push(serde_json::to_value(transform)?);
                }
                for sink in snapshot.sinks.iter().filter(|s| of(Kind::Sink, *s)) {
                    items.push(serde_json::to_value(sink)?);
                }
                for pipeline in snapshot.pipelines_of(&namespace, name) {
                    items.push(serde_json::to_value(pipeline)?);
                }
                return print_as(out, &list_of(items), *output);
            }
            write!(out, "{}", render::status_cluster(&snapshot, cluster, now))?;
        }
        Command::Why { target, name, output } => {
            one_namespace(&cli, "why")?;
            let (kind, name) = parse_target(target, name.as_deref()).map_err(anyhow::Error::msg)?;
            let snapshot =
                fetch::snapshot(&client, Some(&namespace), Extras { pods: true, events: true }).await?;
            let chain = why::why(&snapshot, &namespace, kind, &name);
            match output {
                Some(output) => print_as(out, &chain, *output)?,
                None => write!(out, "{}", render::why(&chain, now))?,
            }
        }
        Command::Graph { pipeline, output } => {
            one_namespace(&cli, "graph")?;
            let snapshot = fetch::snapshot(&client, Some(&namespace), Extras::default()).await?;
            let Some(found) = snapshot.pipeline(&namespace, pipeline) else {
                bail!("etlpipeline {pipeline} not found in namespace {namespace}");
            };
            let graph = graph::graph(&snapshot, found);
            match output {
                None => write!(out, "{}", render::graph_text(&graph))?,
                Some(GraphOutput::Dot) => write!(out, "{}", render::graph_dot(&graph))?,
                Some(GraphOutput::Json) => print_as(out, &graph, Output::Json)?,
                Some(GraphOutput::Yaml) => print_as(out, &graph, Output::Yaml)?,
            }
        }
        Command::Pause { cluster } => {
            one_namespace(&cli, "pause")?;
            annotate(&client, &namespace, cluster, PAUSED_ANNOTATION, Some("true")).await?;
            writeln!(
                out,
                "etlroutercluster/{cluster} paused: the operator reports its health but changes nothing until `kubectl conveyor resume {cluster}`"
            )?;
        }
        Command::Resume { cluster } => {
            one_namespace(&cli, "resume")?;
            annotate(&client, &namespace, cluster, PAUSED_ANNOTATION, None).await?;
            writeln!(out, "etlroutercluster/{cluster} resumed: the operator applies changes again")?;
        }
        Command::Restart { cluster } => {
            one_namespace(&cli, "restart")?;
            let requested = now.to_string();
            let updated =
                annotate(&client, &namespace, cluster, RESTARTED_AT_ANNOTATION, Some(&requested)).await?;
            writeln!(
                out,
                "etlroutercluster/{cluster} restart requested ({RESTARTED_AT_ANNOTATION}={requested}): the operator replaces its pods one at a time, the leader last; follow it with `kubectl conveyor status {cluster}`"
            )?;
            if conveyor_etl_operator::runtime::paused(&updated) {
                writeln!(
                    out,
                    "note: the cluster is paused; the restart waits until `kubectl conveyor resume {cluster}`"
                )?;
            }
        }
    }
    Ok(())
}

/// Sets (or, with `None`, removes) one annotation of a router cluster by a merge patch.
async fn annotate(
    client: &Client,
    namespace: &str,
    cluster: &str,
    key: &str,
    value: Option<&str>,
) -> anyhow::Result<EtlRouterCluster> {
    let api: Api<EtlRouterCluster> = Api::namespaced(client.clone(), namespace);
    let patch = json!({"metadata": {"annotations": {key: value}}});
    match api.patch(cluster, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(updated) => Ok(updated),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            bail!("etlroutercluster {cluster} not found in namespace {namespace}")
        }
        Err(error) => {
            Err(anyhow::Error::new(error).context(format!("cannot annotate etlroutercluster {cluster}")))
        }
    }
}

/// The name of any object, as a trait object.
trait ResourceName {
    fn name(&self) -> String;
}

impl<K: kube::Resource> ResourceName for K {
    fn name(&self) -> String {
        self.name_any()
    }
}
