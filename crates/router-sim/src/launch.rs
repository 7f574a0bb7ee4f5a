//! One simulated router node, launched exactly as the public
//! `conveyor-etl-router` is: the same command line (its clap arguments in
//! alexchoi0/conveyor `crates/etl-router/src/main.rs`) and the same
//! configuration file, read strictly ([`conveyor_router_contract::config::parse_strict`]):
//! where the router would log a warning and fall back to its built-in
//! defaults, the simulator refuses to start and names the field, so a launch
//! that would silently lose its settings fails loudly here.
//!
//! What it serves: `ServiceRegistry` (and `RouterAdmin` unless switched off,
//! as the public router serves none) on `--listen-addr`, from the state of a
//! real Raft member ([`raft_node`](super::raft_node)) whose Raft traffic goes
//! over `--raft-addr`; Prometheus text on `metrics.listen_addr` when
//! `metrics.enabled`, with the node id and every numeric setting it read
//! (`conveyor_router_sim_setting{name="cluster.heartbeat_interval_ms"} 100`);
//! and its vote, log and snapshot in `--data-dir` (`raft-log-<id>`, ...).
//!
//! Formation: a node started with no peers, or with only itself, initialises
//! a one-node cluster and leads it; nodes started with each other in their
//! `--peers` form one cluster (the lowest id initialises it, the leader adds
//! the others); a node whose peers never come waits, without a leader.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::raft_node::{NodeConfig, RaftNode};
use conveyor_router_contract::config::{RouterConfig, parse_strict};

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
    pub node: RaftNode,
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
/// `lease_ttl`: keep registrations per node and leased, as the public router
/// does (else replicated through Raft).
pub async fn launch(
    args: &NodeArgs,
    router_admin: bool,
    lease_ttl: Option<std::time::Duration>,
) -> anyhow::Result<Launched> {
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
    let other_peers: Vec<(u64, String)> = peers.iter().filter(|(id, _)| *id != node_id).cloned().collect();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("--data-dir {} is not writable", args.data_dir.display()))?;

    let mut tasks = Vec::new();
    if settings.metrics.enabled {
        let listener = TcpListener::bind(metrics)
            .await
            .with_context(|| format!("listening on metrics.listen_addr {metrics}"))?;
        tasks.push(tokio::spawn(serve_metrics(listener, metrics_text(node_id, &settings))));
    }
    let config = NodeConfig {
        id: node_id,
        api: client_address(listen, raft).to_string(),
        listen,
        raft,
        peers: peers.into_iter().collect::<BTreeMap<_, _>>(),
        data_dir: args.data_dir.clone(),
        settings: settings.clone(),
        router_admin,
        lease_ttl,
    };
    let node = RaftNode::start(config).await.with_context(|| format!("starting Raft node {node_id}"))?;
    Ok(Launched { node_id, settings, listen, raft, other_peers, node, tasks })
}

/// Where clients reach a node: its listen address, or, when it listens on
/// every interface, the Raft address's IP (the pod's) on the listen port.
pub fn client_address(listen: SocketAddr, raft: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() { SocketAddr::new(raft.ip(), listen.port()) } else { listen }
}

impl Launched {
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.node.shutdown().await;
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
    fn clients_reach_a_node_listening_everywhere_on_its_raft_ip() {
        let raft: SocketAddr = "10.1.0.7:50052".parse().unwrap();
        assert_eq!(client_address("0.0.0.0:50051".parse().unwrap(), raft).to_string(), "10.1.0.7:50051");
        assert_eq!(client_address("127.0.0.9:1".parse().unwrap(), raft).to_string(), "127.0.0.9:1");
    }

    #[test]
    fn addresses_must_be_socket_addresses() {
        assert!(socket_addr("--raft-addr", "10.0.0.1:50052").is_ok());
        assert!(socket_addr("--raft-addr", "[fd00::1]:50052").is_ok());
        let error = socket_addr("--raft-addr", "c-0.c-raft.ns.svc:50052").unwrap_err().to_string();
        assert!(error.contains("--raft-addr") && error.contains("no DNS names"), "{error}");
    }
}
