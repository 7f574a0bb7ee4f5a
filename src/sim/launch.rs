//! One simulated router node, launched exactly as the public
//! `conveyor-etl-router` is: the same command line (its clap arguments in
//! alexchoi0/conveyor `crates/etl-router/src/main.rs`) and the same
//! configuration file, read strictly ([`crate::router::config::parse_strict`]):
//! where the router would log a warning and fall back to its built-in
//! defaults, the simulator refuses to start and names the field, so a launch
//! that would silently lose its settings fails loudly here.
//!
//! What it serves: `ServiceRegistry` (and `RouterAdmin` unless switched off,
//! as the public router serves none) on `--listen-addr`; a TCP listener on
//! `--raft-addr` (the router's Raft port; nothing speaks Raft to it here);
//! Prometheus text on `metrics.listen_addr` when `metrics.enabled`, with the
//! node id and every numeric setting it read
//! (`conveyor_router_sim_setting{name="cluster.heartbeat_interval_ms"} 100`);
//! and a `raft-log-<id>` file in `--data-dir`, as the router keeps its log.
//!
//! Formation as in the router: a node started with no peers, or with only
//! itself, bootstraps a one-node cluster and leads it; a node given other
//! peers waits to be added (it joins as a learner, so it reports no leader),
//! and nothing can add it.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{SimCluster, SimOptions};
use crate::router::config::{RouterConfig, parse_strict};

/// The public router's command line.
#[derive(Clone, Debug, clap::Args)]
pub struct NodeArgs {
    /// Configuration file (YAML: cluster, buffer, grpc, metrics; every field required).
    #[arg(short, long, default_value = "config/router.yaml")]
    pub config: PathBuf,
    /// This node's Raft id.
    #[arg(short, long, required = true)]
    pub node_id: Option<u64>,
    /// Client gRPC address (ip:port).
    #[arg(short, long, default_value = "127.0.0.1:50051")]
    pub listen_addr: String,
    /// Raft address (ip:port): listened on and advertised.
    #[arg(long, default_value = "127.0.0.1:50052")]
    pub raft_addr: String,
    /// A Raft member as `<id>:<host>:<port>`; repeatable.
    #[arg(long)]
    pub peers: Vec<String>,
    /// Where the Raft log is kept.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
}

/// A running node.
pub struct Launched {
    pub node_id: u64,
    pub settings: RouterConfig,
    pub listen: SocketAddr,
    pub raft: SocketAddr,
    /// Peers other than this node, as `(id, address)`.
    pub other_peers: Vec<(u64, String)>,
    pub sim: SimCluster,
    tasks: Vec<JoinHandle<()>>,
}

/// A `--peers` value: the router splits it at the first `:` into a numeric
/// id and an address (`crates/etl-grpc/src/server.rs`); the simulator refuses
/// what the router would silently drop.
pub fn parse_peer(peer: &str) -> anyhow::Result<(u64, String)> {
    let (id, address) =
        peer.split_once(':').with_context(|| format!("--peers {peer:?} is not <id>:<host>:<port>"))?;
    let id = id.parse().with_context(|| format!("--peers {peer:?}: the id {id:?} is not a number"))?;
    if address.rsplit_once(':').is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err()) {
        bail!("--peers {peer:?}: the address {address:?} is not <host>:<port>");
    }
    Ok((id, address.to_owned()))
}

fn socket_addr(flag: &str, value: &str) -> anyhow::Result<SocketAddr> {
    value.parse().with_context(|| {
        format!(
            "{flag} {value:?} is not an ip:port socket address (the router parses it as one: no DNS names)"
        )
    })
}

/// Reads and checks everything, then starts serving. Any error names the
/// flag, file or field at fault.
pub async fn launch(args: &NodeArgs, router_admin: bool) -> anyhow::Result<Launched> {
    let node_id = args.node_id.context("--node-id is required")?;
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading --config {}", args.config.display()))?;
    let settings = parse_strict(&text).map_err(|error| {
        anyhow::anyhow!(
            "refusing --config {}: {error} (the router would ignore the file)",
            args.config.display()
        )
    })?;
    let listen = socket_addr("--listen-addr", &args.listen_addr)?;
    let raft = socket_addr("--raft-addr", &args.raft_addr)?;
    let metrics = socket_addr("metrics.listen_addr", &settings.metrics.listen_addr)?;
    let peers = args.peers.iter().map(|peer| parse_peer(peer)).collect::<anyhow::Result<Vec<_>>>()?;
    let other_peers: Vec<(u64, String)> = peers.into_iter().filter(|(id, _)| *id != node_id).collect();
    std::fs::create_dir_all(&args.data_dir)
        .and_then(|()| std::fs::write(args.data_dir.join(format!("raft-log-{node_id}")), b""))
        .with_context(|| format!("--data-dir {} is not writable", args.data_dir.display()))?;

    let raft_listener =
        TcpListener::bind(raft).await.with_context(|| format!("listening on --raft-addr {raft}"))?;
    let mut tasks = vec![tokio::spawn(hold(raft_listener))];
    if settings.metrics.enabled {
        let listener = TcpListener::bind(metrics)
            .await
            .with_context(|| format!("listening on metrics.listen_addr {metrics}"))?;
        tasks.push(tokio::spawn(serve_metrics(listener, metrics_text(node_id, &settings))));
    }
    let options = SimOptions {
        election_delay: std::time::Duration::from_millis(settings.cluster.election_timeout_min_ms),
    };
    let sim = if other_peers.is_empty() {
        SimCluster::start(vec![(node_id, listen)], options).await
    } else {
        let sim = SimCluster::start(Vec::new(), options).await?;
        sim.add_learner(node_id, listen).await.map(|()| sim)
    }
    .with_context(|| format!("listening on --listen-addr {listen}"))?;
    sim.set_router_admin_unimplemented(!router_admin);
    Ok(Launched { node_id, settings, listen, raft, other_peers, sim, tasks })
}

impl Launched {
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.sim.shutdown().await;
    }
}

/// Accepts and drops connections: the port is the router's, held as it would be.
async fn hold(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        drop(stream);
    }
}

/// Prometheus text: the node id and every numeric or boolean setting read.
pub fn metrics_text(node_id: u64, settings: &RouterConfig) -> String {
    let mut text = format!(
        "# TYPE conveyor_router_sim_node_id gauge\nconveyor_router_sim_node_id {node_id}\n\
         # TYPE conveyor_router_sim_setting gauge\n"
    );
    let value = serde_json::to_value(settings).expect("settings serialise");
    for (section, fields) in value.as_object().into_iter().flatten() {
        for (field, value) in fields.as_object().into_iter().flatten() {
            let number = match value {
                serde_json::Value::Bool(on) => Some(f64::from(u8::from(*on))),
                other => other.as_f64(),
            };
            if let Some(number) = number {
                text.push_str(&format!(
                    "conveyor_router_sim_setting{{name=\"{section}.{field}\"}} {number}\n"
                ));
            }
        }
    }
    text
}

async fn serve_metrics(listener: TcpListener, text: String) {
    let app = axum::Router::new().route("/metrics", axum::routing::get(move || async move { text }));
    if let Err(error) = axum::serve(listener, app).await {
        tracing::warn!(%error, "metrics server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_refused_where_the_router_would_drop_them() {
        assert_eq!(
            parse_peer("2:c-1.c-raft.ns.svc:50052").unwrap(),
            (2, "c-1.c-raft.ns.svc:50052".to_owned())
        );
        for bad in ["c-1.c-raft.ns.svc:50052", "x:host:1", "2", "2:host", "2:host:port", "2::1"] {
            assert!(parse_peer(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_must_be_socket_addresses() {
        assert!(socket_addr("--raft-addr", "10.0.0.1:50052").is_ok());
        assert!(socket_addr("--raft-addr", "[fd00::1]:50052").is_ok());
        let error = socket_addr("--raft-addr", "c-0.c-raft.ns.svc:50052").unwrap_err().to_string();
        assert!(error.contains("--raft-addr") && error.contains("no DNS names"), "{error}");
    }
}
