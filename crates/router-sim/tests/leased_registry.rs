//! The simulator's leased registry over real gRPC, as the public router
//! keeps registrations: per node, in memory, each with a lease renewed by
//! `Heartbeat`; and the default replicated registry, which serves no `Heartbeat`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use conveyor_router_contract::proto::common::{ServiceIdentity, ServiceType};
use conveyor_router_contract::proto::registry::service_registry_client::ServiceRegistryClient;
use conveyor_router_contract::proto::registry::{HeartbeatRequest, ListServicesRequest, RegisterRequest};
use conveyor_router_sim::{RegistryMode, SimCluster, SimOptions};
use futures::StreamExt;
use futures::channel::mpsc;
use tonic::transport::Channel;

const LEASE: Duration = Duration::from_millis(600);

async fn cluster(range: u8, registry: RegistryMode) -> SimCluster {
    let nodes =
        (1..=2).map(|id| (id, SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, range, 0, id as u8)), 0)));
    SimCluster::start(nodes.collect(), SimOptions { registry, ..SimOptions::default() }).await.unwrap()
}

async fn client(sim: &SimCluster, node: u64) -> ServiceRegistryClient<Channel> {
    ServiceRegistryClient::connect(format!("http://{}", sim.addr(node).unwrap())).await.unwrap()
}

fn register_request(id: &str) -> RegisterRequest {
    let identity = ServiceIdentity {
        service_id: id.into(),
        service_type: ServiceType::Sink.into(),
        ..Default::default()
    };
    RegisterRequest { identity: Some(identity), ..Default::default() }
}

async fn listed(client: &mut ServiceRegistryClient<Channel>) -> Vec<String> {
    let request = ListServicesRequest { include_unhealthy: true, ..Default::default() };
    let services = client.list_services(request).await.unwrap().into_inner().services;
    services.into_iter().map(|s| s.identity.unwrap().service_id).collect()
}

fn beat(id: &str) -> HeartbeatRequest {
    HeartbeatRequest { service_id: id.into(), ..Default::default() }
}

#[tokio::test]
async fn a_leased_registration_lives_on_its_node_only_while_heartbeats_renew_it() {
    let sim = cluster(75, RegistryMode::Leased { ttl: LEASE }).await;
    let (mut one, mut two) = (client(&sim, 1).await, client(&sim, 2).await);
    let answer = one.register(register_request("ns/kept")).await.unwrap().into_inner();
    assert_eq!(answer.lease_ttl, Some(prost_types::Duration { seconds: 0, nanos: 600_000_000 }));
    one.register(register_request("ns/left")).await.unwrap();
    assert_eq!(listed(&mut one).await, ["ns/kept", "ns/left"]);
    assert!(listed(&mut two).await.is_empty(), "registered on node 1 only");

    let (beats, outgoing) = mpsc::unbounded();
    let mut answers = one.heartbeat(outgoing).await.unwrap().into_inner();
    let started = Instant::now();
    while started.elapsed() < 5 * LEASE {
        beats.unbounded_send(beat("ns/kept")).unwrap();
        assert!(answers.next().await.unwrap().unwrap().acknowledged);
        tokio::time::sleep(LEASE / 3).await; // the renewal pace
    }
    assert_eq!(listed(&mut one).await, ["ns/kept"], "the unrenewed lease lapsed");
    beats.unbounded_send(beat("ns/left")).unwrap();
    assert!(!answers.next().await.unwrap().unwrap().acknowledged, "a lapsed lease is not renewed");
    assert!(sim.services_on(1).iter().all(|s| s.identity.as_ref().unwrap().service_id == "ns/kept"));

    // A restart forgets everything: the stream is cut and the lease unknown.
    sim.stop_node(1).await;
    sim.restart_node(1).await.unwrap();
    assert!(answers.next().await.is_none_or(|answer| answer.is_err()));
    let mut one = client(&sim, 1).await;
    assert!(listed(&mut one).await.is_empty());
    let (beats, outgoing) = mpsc::unbounded();
    let mut answers = one.heartbeat(outgoing).await.unwrap().into_inner();
    beats.unbounded_send(beat("ns/kept")).unwrap();
    assert!(!answers.next().await.unwrap().unwrap().acknowledged);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_replicated_registry_serves_no_heartbeat() {
    let sim = cluster(76, RegistryMode::Replicated).await;
    let mut one = client(&sim, 1).await;
    let (_beats, outgoing) = mpsc::unbounded::<HeartbeatRequest>();
    let status = one.heartbeat(outgoing).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    one.register(register_request("ns/a")).await.unwrap();
    assert_eq!(listed(&mut client(&sim, 2).await).await, ["ns/a"], "replicated to every node");
    sim.shutdown().await;
}
