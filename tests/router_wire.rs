//! Wire compatibility with the router contract: messages encoded by prost are
//! compared with bytes written by hand from the contract's field numbers
//! (tag = field << 3 | wire type; 0 = varint, 2 = length-delimited), so a
//! renumbered or retyped field fails here. Decoding the hand-written bytes must
//! give the message back.

use std::collections::HashMap;

use conveyor_etl_operator::router::proto::common::{Endpoint, ServiceIdentity, ServiceType};
use conveyor_etl_operator::router::proto::registry::{RegisterRequest, ServiceMetadata};
use conveyor_etl_operator::router::proto::router::{
    ClusterHealth, Condition, Edge, GetClusterStatusResponse, NodeRole, NodeStatus, PipelineConfig,
    ServiceSelector, Stage, StageType, condition,
};
use prost::Message;

fn assert_wire<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M, expected: &[u8]) {
    assert_eq!(message.encode_to_vec(), expected, "encoding differs from the contract");
    assert_eq!(&M::decode(expected).unwrap(), message, "decoding the contract's bytes differs");
}

#[test]
fn pipeline_config_matches_the_contract_bytes() {
    let config = PipelineConfig {
        id: "p".into(),
        name: "n".into(),
        description: "d".into(),
        stages: vec![Stage {
            id: "s".into(),
            name: String::new(),
            stage_type: StageType::Source.into(),
            service_selector: Some(ServiceSelector { service_name: "x".into(), ..Default::default() }),
            routing_rules: Vec::new(),
            parallelism: 2,
        }],
        edges: vec![Edge {
            from_stage: "a".into(),
            to_stage: "b".into(),
            condition: Some(Condition { condition: Some(condition::Condition::RecordType("r".into())) }),
        }],
        enabled: true,
        metadata: HashMap::from([("k".to_string(), "v".to_string())]),
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x01, b'p',                         // 1 id
        0x12, 0x01, b'n',                         // 2 name
        0x1a, 0x01, b'd',                         // 3 description
        0x22, 0x0c,                               // 4 stages, 12 bytes:
            0x0a, 0x01, b's',                     //   Stage.1 id
            0x18, 0x01,                           //   Stage.3 stage_type = STAGE_TYPE_SOURCE
            0x22, 0x03, 0x0a, 0x01, b'x',         //   Stage.4 service_selector { 1 service_name }
            0x30, 0x02,                           //   Stage.6 parallelism
        0x2a, 0x0b,                               // 5 edges, 11 bytes:
            0x0a, 0x01, b'a',                     //   Edge.1 from_stage
            0x12, 0x01, b'b',                     //   Edge.2 to_stage
            0x1a, 0x03, 0x12, 0x01, b'r',         //   Edge.3 condition { oneof 2 record_type }
        0x30, 0x01,                               // 6 enabled
        0x3a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', // 7 metadata entry { 1 key, 2 value }
    ];
    assert_wire(&config, &expected);
}

#[test]
fn cluster_status_matches_the_contract_bytes() {
    let status = GetClusterStatusResponse {
        node_id: 1,
        leader_id: 2,
        term: 3,
        commit_index: 4,
        applied_index: 5,
        nodes: vec![NodeStatus {
            node_id: 2,
            address: "h:1".into(),
            role: NodeRole::Leader.into(),
            healthy: true,
            match_index: 4,
            last_contact: Some(prost_types::Timestamp { seconds: 7, nanos: 0 }),
        }],
        health: ClusterHealth::Degraded.into(),
    };
    #[rustfmt::skip]
    let expected = [
        0x08, 0x01,                               // 1 node_id
        0x10, 0x02,                               // 2 leader_id
        0x18, 0x03,                               // 3 term
        0x20, 0x04,                               // 4 commit_index
        0x28, 0x05,                               // 5 applied_index
        0x32, 0x11,                               // 6 nodes, 17 bytes:
            0x08, 0x02,                           //   NodeStatus.1 node_id
            0x12, 0x03, b'h', b':', b'1',         //   NodeStatus.2 address
            0x18, 0x01,                           //   NodeStatus.3 role = NODE_ROLE_LEADER
            0x20, 0x01,                           //   NodeStatus.4 healthy
            0x28, 0x04,                           //   NodeStatus.5 match_index
            0x32, 0x02, 0x08, 0x07,               //   NodeStatus.6 last_contact { 1 seconds }
        0x38, 0x02,                               // 7 health = CLUSTER_HEALTH_DEGRADED
    ];
    assert_wire(&status, &expected);
}

#[test]
fn register_request_matches_the_contract_bytes() {
    let request = RegisterRequest {
        identity: Some(ServiceIdentity {
            service_id: "a/b".into(),
            service_type: ServiceType::Sink.into(),
            name: "b".into(),
            version: "1".into(),
            capabilities: vec!["c".into()],
            group_id: "g".into(),
        }),
        endpoint: Some(Endpoint { host: "h".into(), port: 50051, use_tls: true }),
        metadata: Some(ServiceMetadata {
            labels: HashMap::from([("k".to_string(), "v".to_string())]),
            record_types_handled: vec!["r".into()],
            max_concurrent_requests: 4,
            weight: 5,
        }),
        heartbeat_interval: Some(prost_types::Duration { seconds: 10, nanos: 0 }),
        sidecar_id: "s".into(),
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x13,                               // 1 identity, 19 bytes:
            0x0a, 0x03, b'a', b'/', b'b',         //   1 service_id
            0x10, 0x03,                           //   2 service_type = SERVICE_TYPE_SINK
            0x1a, 0x01, b'b',                     //   3 name
            0x22, 0x01, b'1',                     //   4 version
            0x2a, 0x01, b'c',                     //   5 capabilities
            0x32, 0x01, b'g',                     //   6 group_id
        0x12, 0x09,                               // 2 endpoint, 9 bytes:
            0x0a, 0x01, b'h',                     //   1 host
            0x10, 0x83, 0x87, 0x03,               //   2 port = 50051 (varint)
            0x18, 0x01,                           //   3 use_tls
        0x1a, 0x0f,                               // 3 metadata, 15 bytes:
            0x0a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', // 1 labels entry
            0x12, 0x01, b'r',                     //   2 record_types_handled
            0x18, 0x04,                           //   3 max_concurrent_requests
            0x20, 0x05,                           //   4 weight
        0x22, 0x02, 0x08, 0x0a,                   // 4 heartbeat_interval { 1 seconds = 10 }
        0x52, 0x01, b's',                         // 10 sidecar_id (tag 10 << 3 | 2 = 0x52)
    ];
    assert_wire(&request, &expected);
}

#[test]
fn service_names_match_the_contract() {
    use conveyor_etl_operator::router::proto::registry::service_registry_server;
    use conveyor_etl_operator::router::proto::router::router_admin_server;
    assert_eq!(router_admin_server::SERVICE_NAME, "conveyor_etl.router.RouterAdmin");
    assert_eq!(service_registry_server::SERVICE_NAME, "conveyor_etl.registry.ServiceRegistry");
}

#[test]
fn heartbeat_messages_match_the_public_routers_bytes() {
    use conveyor_etl_operator::router::proto::common::HealthStatus;
    use conveyor_etl_operator::router::proto::registry::{
        HeartbeatRequest, HeartbeatResponse, ServiceHealth, ServiceLoad,
    };
    let request = HeartbeatRequest {
        service_id: "a/b".into(),
        registration_id: "r".into(),
        health: Some(ServiceHealth { status: HealthStatus::Healthy.into(), ..Default::default() }),
        load: Some(ServiceLoad { active_requests: 7, ..Default::default() }),
    };
    #[rustfmt::skip]
    let expected = [
        0x0a, 0x03, b'a', b'/', b'b',             // 1 service_id
        0x12, 0x01, b'r',                         // 2 registration_id
        0x1a, 0x02, 0x08, 0x01,                   // 3 health { 1 status = HEALTHY }
        0x22, 0x02, 0x18, 0x07,                   // 4 load { 3 active_requests = 7 }
    ];
    assert_wire(&request, &expected);
    let response = HeartbeatResponse {
        acknowledged: true,
        next_heartbeat_deadline: Some(prost_types::Duration { seconds: 30, nanos: 0 }),
        commands: Vec::new(),
    };
    #[rustfmt::skip]
    let expected = [
        0x08, 0x01,                               // 1 acknowledged
        0x12, 0x02, 0x08, 0x1e,                   // 2 next_heartbeat_deadline { 1 seconds = 30 }
    ];
    assert_wire(&response, &expected);
    // A RouterCommand (here a DrainCommand { reason: "x" }, oneof field 1) decodes, its payload skipped.
    let with_command = [0x08, 0x01, 0x1a, 0x05, 0x0a, 0x03, 0x0a, 0x01, b'x'];
    assert_eq!(HeartbeatResponse::decode(&with_command[..]).unwrap().commands.len(), 1);
}
