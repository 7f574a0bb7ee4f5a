//! The simulator's router mode as real Raft members, on loopback: processes
//! of the built `conveyor-router-sim`, each launched with the router's
//! command line on its own 127.x address, form one openraft cluster over
//! their `--raft-addr` ports. Killing a process (SIGKILL) loses a member for
//! real; its `--data-dir` brings it back with its log.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conveyor_etl_operator::router_cluster::build::router_config;
use conveyor_router_contract::proto::common::ServiceIdentity;
use conveyor_router_contract::proto::registry::service_registry_client::ServiceRegistryClient;
use conveyor_router_contract::proto::registry::{HeartbeatRequest, ListServicesRequest, RegisterRequest};
use conveyor_router_contract::proto::router::router_admin_client::RouterAdminClient;
use conveyor_router_contract::proto::router::{
    CreatePipelineRequest, CreatePipelineResponse, GetClusterStatusRequest, GetClusterStatusResponse,
    ListPipelinesRequest, NodeRole, PipelineConfig,
};
use conveyor_testbed::examples::seed_cluster;
use tonic::transport::{Channel, Endpoint};

/// Long enough for an election and a restart on a loaded two-core machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// A port free on `ip` now; every node of a cluster uses it on its own address.
fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

/// Router nodes as processes: node `id` on 127.`range`.0.`id`.
struct Cluster {
    range: u8,
    api_port: u16,
    raft_port: u16,
    root: tempfile::TempDir,
    config: PathBuf,
    nodes: Vec<Option<(u64, Child)>>,
    /// `CONVEYOR_SIM_LEASE_TTL_MS` of the nodes started from now on (leased registry).
    lease_ttl_ms: Option<u64>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in self.nodes.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Cluster {
    fn new(range: u8) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let mut settings = router_config(&seed_cluster("raft"));
        settings.metrics.enabled = false;
        // Elections only when a member is really gone: a process stalled for a
        // few hundred milliseconds on a loaded machine must not move leadership
        // between a test's reading of the leader and its write.
        settings.cluster.election_timeout_min_ms = 1500;
        settings.cluster.election_timeout_max_ms = 3000;
        settings.cluster.heartbeat_interval_ms = 250;
        let config = root.path().join("router.yaml");
        std::fs::write(&config, settings.to_yaml()).unwrap();
        let first = format!("127.{range}.0.1");
        Cluster {
            range,
            api_port: free_port(&first),
            raft_port: free_port(&first),
            root,
            config,
            nodes: Vec::new(),
            lease_ttl_ms: None,
        }
    }

    fn ip(&self, id: u64) -> String {
        format!("127.{}.0.{id}", self.range)
    }

    fn api(&self, id: u64) -> String {
        format!("{}:{}", self.ip(id), self.api_port)
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.root.path().join(format!("data-{id}"))
    }

    fn log_of(&self, id: u64) -> String {
        std::fs::read_to_string(self.root.path().join(format!("node-{id}.log"))).unwrap_or_default()
    }

    fn logs(&self) -> String {
        let ids: BTreeSet<u64> = self.nodes.iter().flatten().map(|(id, _)| *id).collect();
        ids.iter().map(|id| format!("--- node {id}\n{}", tail(&self.log_of(*id)))).collect()
    }

    /// Starts node `id` with `--peers` for `peers`, as the router's launch does.
    fn start(&mut self, id: u64, peers: &[u64]) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_conveyor-router-sim"));
        command
            .arg("--config")
            .arg(&self.config)
            .args(["--node-id", &id.to_string()])
            .args(["--listen-addr", &self.api(id)])
            .args(["--raft-addr", &format!("{}:{}", self.ip(id), self.raft_port)])
            .arg("--data-dir")
            .arg(self.data_dir(id));
        for peer in peers {
            command.args(["--peers", &format!("{peer}:{}:{}", self.ip(*peer), self.raft_port)]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join(format!("node-{id}.log")))
            .unwrap();
        if let Some(ms) = self.lease_ttl_ms {
            command.env("CONVEYOR_SIM_LEASE_TTL_MS", ms.to_string());
        }
        let child =
            command.env("RUST_LOG", "info,openraft=warn").stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.nodes.push(Some((id, child)));
    }

    /// SIGKILL, as a container killed through the runtime.
    fn kill(&mut self, id: u64) {
        for slot in &mut self.nodes {
            if slot.as_ref().is_some_and(|(running, _)| *running == id) {
                let (_, mut child) = slot.take().unwrap();
                child.kill().unwrap();
                child.wait().unwrap();
            }
        }
    }

    fn running(&self) -> Vec<u64> {
        self.nodes.iter().flatten().map(|(id, _)| *id).collect()
    }

    async fn admin(&self, id: u64) -> Option<RouterAdminClient<Channel>> {
        Some(RouterAdminClient::new(channel(&self.api(id)).await?))
    }

    async fn status(&self, id: u64) -> Option<GetClusterStatusResponse> {
        let mut admin = self.admin(id).await?;
        admin.get_cluster_status(GetClusterStatusRequest {}).await.ok().map(|r| r.into_inner())
    }

    /// Polls until `check` holds, failing with the nodes' logs after [`DEADLINE`].
    async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let started = Instant::now();
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(started.elapsed() < DEADLINE, "not within {DEADLINE:?}: {what}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
        }
    }

    /// The one leader every running node names, once they agree and it has
    /// `voters` healthy voting members; its status.
    async fn settled(&self, voters: &[u64]) -> GetClusterStatusResponse {
        let what = format!("one leader of voters {voters:?} named by all of {:?}", self.running());
        self.until(&what, || async {
            let mut leader = None;
            for id in self.running() {
                let status = self.status(id).await?;
                if status.leader_id == 0 || leader.is_some_and(|known| known != status.leader_id) {
                    return None;
                }
                leader = Some(status.leader_id);
            }
            let status = self.status(leader?).await?;
            (status.node_id == status.leader_id && voting(&status) == voters && all_healthy(&status))
                .then_some(status)
        })
        .await
    }

    async fn create(&self, id: u64, pipeline: &str) -> Option<CreatePipelineResponse> {
        let config = PipelineConfig { id: pipeline.into(), enabled: true, ..Default::default() };
        let request = CreatePipelineRequest { config: Some(config) };
        Some(self.admin(id).await?.create_pipeline(request).await.ok()?.into_inner())
    }

    /// Creates `pipeline` on the leader of `voters`, asking the new leader
    /// again if leadership moved in between; the leader and its answer.
    async fn create_on_leader(&self, voters: &[u64], pipeline: &str) -> (u64, CreatePipelineResponse) {
        self.until(&format!("the leader's answer to creating {pipeline}"), || async {
            let leader = self.settled(voters).await.leader_id;
            let answer = self.create(leader, pipeline).await?;
            let moved = answer.error.starts_with("not leader") || answer.error.starts_with("no quorum");
            (!moved).then_some((leader, answer))
        })
        .await
    }

    /// [`Cluster::create_on_leader`], which must succeed; the leader.
    async fn must_create(&self, voters: &[u64], pipeline: &str) -> u64 {
        let (leader, answer) = self.create_on_leader(voters, pipeline).await;
        assert!(answer.success, "creating {pipeline}: {}", answer.error);
        leader
    }

    async fn pipelines(&self, id: u64) -> Option<Vec<String>> {
        let request = ListPipelinesRequest { include_disabled: true };
        let listed = self.admin(id).await?.list_pipelines(request).await.ok()?.into_inner();
        Some(listed.pipelines.into_iter().map(|p| p.id).collect())
    }

    /// Waits until every running node serves `pipeline`.
    async fn everywhere(&self, pipeline: &str) {
        for id in self.running() {
            self.until(&format!("node {id} to serve {pipeline}"), || async {
                self.pipelines(id).await.filter(|ids| ids.iter().any(|p| p == pipeline))
            })
            .await;
        }
    }
}

/// The last lines of a node's log, without openraft's per-heartbeat
/// replication warnings (which would crowd out the node's own lines).
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| {
            !line.contains("\"target\":\"openraft::replication")
                && !line.contains("\"target\":\"openraft::engine::handler::replication_handler")
        })
        .collect();
    lines[lines.len().saturating_sub(15)..].join("\n") + "\n"
}

async fn channel(address: &str) -> Option<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{address}")).ok()?;
    endpoint.connect_timeout(Duration::from_millis(300)).timeout(Duration::from_secs(6)).connect().await.ok()
}

fn voting(status: &GetClusterStatusResponse) -> Vec<u64> {
    status.nodes.iter().filter(|node| node.role() != NodeRole::Learner).map(|node| node.node_id).collect()
}

fn all_healthy(status: &GetClusterStatusResponse) -> bool {
    status.nodes.iter().all(|node| node.healthy)
}

fn followers(status: &GetClusterStatusResponse) -> Vec<u64> {
    status.nodes.iter().map(|node| node.node_id).filter(|id| *id != status.leader_id).collect()
}

#[tokio::test]
async fn three_processes_form_one_cluster_and_only_the_leader_takes_writes() {
    let mut cluster = Cluster::new(71);
    for id in 1..=3 {
        cluster.start(id, &[1, 2, 3]);
    }
    let status = cluster.settled(&[1, 2, 3]).await;
    let leader = status.leader_id;
    let roles: Vec<NodeRole> = status.nodes.iter().map(|node| node.role()).collect();
    assert_eq!(roles.iter().filter(|role| **role == NodeRole::Leader).count(), 1, "{status:#?}");
    let addresses: Vec<&str> = status.nodes.iter().map(|node| node.address.as_str()).collect();
    assert_eq!(
        addresses,
        [cluster.api(1), cluster.api(2), cluster.api(3)],
        "client addresses, not Raft ones"
    );

    let follower = followers(&status)[0];
    let refused = cluster.create(follower, "ns/refused").await.unwrap();
    assert!(!refused.success);
    assert_eq!(refused.error, format!("not leader; leader is {leader} at {}", cluster.api(leader)));

    let leader = cluster.must_create(&[1, 2, 3], "ns/p").await;
    cluster.everywhere("ns/p").await;
    let (_, again) = cluster.create_on_leader(&[1, 2, 3], "ns/p").await;
    assert_eq!((again.success, again.error.as_str()), (false, "pipeline ns/p already exists"));

    // ServiceRegistry: refused by a follower as a status naming the leader, taken by the leader.
    let identity = ServiceIdentity { service_id: "ns/src".into(), name: "src".into(), ..Default::default() };
    let register = RegisterRequest { identity: Some(identity), ..Default::default() };
    let mut on_follower = ServiceRegistryClient::new(channel(&cluster.api(follower)).await.unwrap());
    let status = on_follower.register(register.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains(&format!("leader is {leader} at {}", cluster.api(leader))), "{status}");
    let mut on_leader = ServiceRegistryClient::new(channel(&cluster.api(leader)).await.unwrap());
    assert!(on_leader.register(register).await.unwrap().into_inner().success);
    for id in 1..=3 {
        cluster
            .until(&format!("node {id} to list the service"), || async {
                let mut registry = ServiceRegistryClient::new(channel(&cluster.api(id)).await?);
                let listed = registry.list_services(ListServicesRequest::default()).await.ok()?.into_inner();
                (listed.services.len() == 1).then_some(())
            })
            .await;
    }
    assert!(cluster.data_dir(leader).join(format!("raft-log-{leader}")).exists());
}

#[tokio::test]
async fn a_killed_leader_is_replaced_in_a_later_term_and_the_write_survives() {
    let mut cluster = Cluster::new(72);
    for id in 1..=3 {
        cluster.start(id, &[1, 2, 3]);
    }
    cluster.must_create(&[1, 2, 3], "ns/p").await;
    cluster.everywhere("ns/p").await;
    let before = cluster.settled(&[1, 2, 3]).await;

    cluster.kill(before.leader_id);
    let after = cluster
        .until("a new leader among the two left", || async {
            let status = cluster.status(cluster.running()[0]).await?;
            (status.leader_id != 0 && status.leader_id != before.leader_id).then_some(status)
        })
        .await;
    assert!(after.term > before.term, "term {} after {}", after.term, before.term);
    assert!(cluster.pipelines(after.leader_id).await.unwrap().contains(&"ns/p".to_owned()));
    let created = cluster
        .until("the new leader to take a write", || async {
            cluster.create(after.leader_id, "ns/q").await.filter(|created| created.success)
        })
        .await;
    assert_eq!(created.pipeline_id, "ns/q");
}

#[tokio::test]
async fn without_a_majority_there_is_no_leader_and_restarted_members_come_back_with_their_logs() {
    let mut cluster = Cluster::new(73);
    for id in 1..=3 {
        cluster.start(id, &[1, 2, 3]);
    }
    let status = cluster.settled(&[1, 2, 3]).await;
    cluster.must_create(&[1, 2, 3], "ns/p").await;
    cluster.everywhere("ns/p").await;

    // Two of three killed, the leader among them: the one left has no leader and refuses writes.
    let survivor = followers(&status)[0];
    for id in [1, 2, 3].into_iter().filter(|id| *id != survivor) {
        cluster.kill(id);
    }
    let alone = cluster
        .until("the survivor to see no leader", || async {
            cluster.status(survivor).await.filter(|status| status.leader_id == 0)
        })
        .await;
    assert_ne!(alone.health, 1, "not healthy without quorum: {alone:#?}");
    let refused = cluster.create(survivor, "ns/q").await.unwrap();
    assert!(!refused.success);
    assert!(
        refused.error.starts_with("no quorum") || refused.error.starts_with("not leader"),
        "{}",
        refused.error
    );

    // Every member down, then all back: what they hold comes from --data-dir alone.
    cluster.kill(survivor);
    for id in 1..=3 {
        cluster.start(id, &[1, 2, 3]);
    }
    let back = cluster.settled(&[1, 2, 3]).await;
    assert!(back.term > status.term);
    cluster.everywhere("ns/p").await;
    cluster.must_create(&[1, 2, 3], "ns/q").await;
}

#[tokio::test]
async fn members_join_and_leave_as_the_peer_lists_change() {
    let mut cluster = Cluster::new(74);
    for id in 1..=3 {
        cluster.start(id, &[1, 2, 3]);
    }
    cluster.must_create(&[1, 2, 3], "ns/p").await;

    // 3 → 5: each member restarted with the longer list, then the two new ones started.
    let five = [1, 2, 3, 4, 5];
    for id in 1..=3 {
        cluster.kill(id);
        cluster.start(id, &five);
        cluster.settled(&[1, 2, 3]).await;
    }
    for id in 4..=5 {
        cluster.start(id, &five);
    }
    let grown = cluster.settled(&five).await;
    assert_eq!(grown.nodes.len(), 5, "{grown:#?}");
    cluster.everywhere("ns/p").await;

    // 5 → 3: the three restarted with the short list, the two others stopped: they leave.
    for id in 1..=3 {
        cluster.kill(id);
        cluster.start(id, &[1, 2, 3]);
        cluster.settled(&five).await;
    }
    cluster.kill(5);
    cluster.kill(4);
    let shrunk = cluster.settled(&[1, 2, 3]).await;
    let members: Vec<u64> = shrunk.nodes.iter().map(|node| node.node_id).collect();
    assert_eq!(members, [1, 2, 3], "4 and 5 left the membership: {shrunk:#?}");
    cluster.must_create(&[1, 2, 3], "ns/q").await;
    cluster.everywhere("ns/q").await;
}

/// `CONVEYOR_SIM_LEASE_TTL_MS` gives each process the public router's
/// registry: its own, in memory, leased; a registration lives on the node
/// that took it while heartbeats renew it, and lapses without them.
#[tokio::test]
async fn with_a_lease_each_process_keeps_its_own_leased_registry() {
    const LEASE: Duration = Duration::from_millis(800);
    let mut cluster = Cluster::new(77);
    cluster.lease_ttl_ms = Some(LEASE.as_millis() as u64);
    cluster.start(1, &[1, 2]);
    cluster.start(2, &[1, 2]);
    let registry = |id| {
        let address = cluster.api(id);
        async move { Some(ServiceRegistryClient::new(channel(&address).await?)) }
    };
    let listed = |id| async move {
        let request = ListServicesRequest { include_unhealthy: true, ..Default::default() };
        let services = registry(id).await?.list_services(request).await.ok()?.into_inner().services;
        Some(services.into_iter().map(|s| s.identity.unwrap().service_id).collect::<Vec<_>>())
    };
    let identity = ServiceIdentity { service_id: "ns/s".into(), ..Default::default() };
    let request = RegisterRequest { identity: Some(identity), ..Default::default() };
    let answer = cluster
        .until("node 2 to take a registration", || async {
            registry(2).await?.register(request.clone()).await.ok().map(|r| r.into_inner())
        })
        .await;
    assert_eq!(answer.lease_ttl, Some(prost_types::Duration { seconds: 0, nanos: 800_000_000 }));
    assert_eq!(listed(2).await.unwrap(), ["ns/s"]);
    let on_one = cluster.until("node 1 to list", || listed(1)).await;
    assert!(on_one.is_empty(), "node 1 holds {on_one:?}: registries are per node");

    let (beats, outgoing) = futures::channel::mpsc::unbounded();
    let mut answers = registry(2).await.unwrap().heartbeat(outgoing).await.unwrap().into_inner();
    let started = Instant::now();
    while started.elapsed() < 4 * LEASE {
        beats.unbounded_send(HeartbeatRequest { service_id: "ns/s".into(), ..Default::default() }).unwrap();
        assert!(answers.message().await.unwrap().unwrap().acknowledged);
        tokio::time::sleep(LEASE / 3).await; // the renewal pace
    }
    assert_eq!(listed(2).await.unwrap(), ["ns/s"], "renewed for four leases");
    cluster
        .until("the lease to lapse without heartbeats", || async {
            listed(2).await?.is_empty().then_some(())
        })
        .await;
    beats.unbounded_send(HeartbeatRequest { service_id: "ns/s".into(), ..Default::default() }).unwrap();
    assert!(!answers.message().await.unwrap().unwrap().acknowledged);
}
