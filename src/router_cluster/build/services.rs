//! The headless Service `<n>-raft` for the Raft peers and the client Service `<n>`.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Ctx;

/// Name of the gRPC port on the container and the Services.
pub const GRPC_PORT_NAME: &str = "grpc";
/// Name of the Raft port on the container and the headless Service.
pub const RAFT_PORT_NAME: &str = "raft";
/// Name of the router's metrics port on the container.
pub const METRICS_PORT_NAME: &str = "metrics";

/// A TCP port `name` targeting the container port of the same name.
/// `protocol` is explicit: it is a list-map key, which server-side apply on
/// older API servers requires.
fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        protocol: Some("TCP".to_owned()),
        target_port: Some(IntOrString::String(name.to_owned())),
        ..ServicePort::default()
    }
}

/// Headless Service through which each pod gets the stable DNS name
/// `<n>-<i>.<n>-raft.<namespace>.svc`. `publishNotReadyAddresses` lets the
/// peers resolve each other before they are Ready, which they only become
/// once they listen, so the cluster can form.
pub(super) fn raft_service(ctx: &Ctx<'_>) -> Service {
    let ports = &ctx.cluster.spec.ports;
    Service {
        metadata: ctx.meta(&ctx.names.raft_service),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![port(RAFT_PORT_NAME, ports.raft), port(GRPC_PORT_NAME, ports.grpc)]),
            selector: Some(ctx.selector()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// ClusterIP Service for gRPC clients, over the Ready pods.
pub(super) fn client_service(ctx: &Ctx<'_>) -> Service {
    Service {
        metadata: ctx.meta(&ctx.names.client_service),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            ports: Some(vec![port(GRPC_PORT_NAME, ctx.cluster.spec.ports.grpc)]),
            selector: Some(ctx.selector()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
