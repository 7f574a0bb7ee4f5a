//! From what a reconcile observed to the one event that drives the machine,
//! with a message a person can act on. Pure.

use crate::router::proto::common::{Endpoint, HealthStatus};
use crate::router::{EndpointError, RegisterRequest, RegisteredService};
use crate::runtime::arrival;
use crate::runtime::clusters::Resolution;
use crate::runtime::snapshot::Read;

use super::leases::LeaseView;
use super::machine::Event;

#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    pub event: Event,
    pub message: String,
    /// The router's record of the service, when it matches the spec.
    pub view: Option<RegisteredService>,
}

impl Assessment {
    fn new(event: Event, message: impl Into<String>) -> Assessment {
        Assessment { event, message: message.into(), view: None }
    }
}

/// What keeps the service from talking to its cluster, if anything: a bad
/// endpoint, no cluster (or several), a cluster not Ready or without members.
/// `arriving`: the service is younger than the reference grace, so an absent
/// cluster may be on its way (see [`arrival`]) and is waited for.
pub fn blocker(
    desired: &Result<RegisterRequest, EndpointError>,
    resolution: &Resolution,
    members: &[String],
    namespace: &str,
    arriving: bool,
) -> Option<Assessment> {
    if let Err(error) = desired {
        return Some(Assessment::new(
            Event::EndpointInvalid,
            format!("spec.grpc.endpoint is invalid: {error}; nothing is registered until it is fixed"),
        ));
    }
    let cluster = match resolution {
        Resolution::Found(cluster) => cluster,
        Resolution::Ambiguous(_) => {
            return Some(Assessment::new(Event::AmbiguousCluster, resolution.problem(namespace)?));
        }
        absent if arriving => {
            let message = format!("{}; {}", absent.problem(namespace)?, arrival::on_its_way("service"));
            return Some(Assessment::new(Event::ClusterNotReady, message));
        }
        _ => return Some(Assessment::new(Event::NoCluster, resolution.problem(namespace)?)),
    };
    let name = kube::ResourceExt::name_any(cluster.as_ref());
    // The cluster's phase is left to the cluster: naming it here rewrote
    // every waiting service's status at each step of the cluster's forming.
    if !crate::runtime::clusters::serves_dependants(cluster) {
        return Some(Assessment::new(
            Event::ClusterNotReady,
            format!(
                "EtlRouterCluster {name} is not Ready; registering waits until it is Ready (or Degraded with a leader)"
            ),
        ));
    }
    if members.is_empty() {
        return Some(Assessment::new(
            Event::ClusterNotReady,
            format!("EtlRouterCluster {name} has no ready pod to talk to; registering waits for one"),
        ));
    }
    None
}

/// Moving from the cluster `from` the status records to `to`: deregistered
/// from `from` first, so the router never routes to it from both.
pub fn moving(from: &str, to: &str) -> Assessment {
    Assessment::new(
        Event::Moving,
        format!(
            "moving from EtlRouterCluster {from} to {to}: it is deregistered from {from} before it registers \
             with {to}; while {from} cannot be asked, the move waits for it to answer or to be deleted \
             (Synced says why)"
        ),
    )
}

/// The event once the cluster's registered services were read.
pub fn against_registry(
    registry: &Read<Vec<RegisteredService>>,
    desired: &RegisterRequest,
    registration_id: Option<&str>,
    cluster: &str,
) -> Assessment {
    let services = match registry {
        Ok(services) => services,
        Err(error) => {
            return Assessment::new(
                Event::RouterUnreachable,
                format!("could not list the services of EtlRouterCluster {cluster}: {}", error.summary()),
            );
        }
    };
    let id = desired.identity.as_ref().map(|i| i.service_id.as_str()).unwrap_or_default();
    let found = services.iter().find(|s| s.identity.as_ref().is_some_and(|i| i.service_id == id));
    let Some(registered) = found else {
        let message = match registration_id {
            Some(_) => {
                format!("EtlRouterCluster {cluster} no longer holds the registration; registering again")
            }
            None => format!("registering with EtlRouterCluster {cluster}"),
        };
        return Assessment::new(Event::NotRegistered, message);
    };
    let changed = differences(registered, desired);
    if !changed.is_empty() {
        return Assessment::new(
            Event::NotRegistered,
            format!("the registration differs from the spec ({}); registering again", changed.join(", ")),
        );
    }
    if registration_id.is_none() {
        return Assessment::new(Event::NotRegistered, format!("registering with EtlRouterCluster {cluster}"));
    }
    let health = health_of(registered);
    let (event, message) = match health {
        HealthStatus::Degraded | HealthStatus::Unhealthy => {
            let said = registered.health.as_ref().map(|h| h.message.as_str()).unwrap_or_default();
            let said = if said.is_empty() { String::new() } else { format!(": {said}") };
            (Event::ServiceUnhealthy, format!("the router reports the service {}{said}", health_name(health)))
        }
        HealthStatus::Healthy | HealthStatus::Unspecified => {
            (Event::Registered, format!("registered with EtlRouterCluster {cluster}"))
        }
    };
    Assessment { event, message, view: Some(registered.clone()) }
}

/// The event for a cluster whose registry is per member and leased, from
/// what the lease keeper knows (see `super::leases`).
pub fn against_leases(view: &LeaseView, cluster: &str) -> Assessment {
    let held = view.members - view.lapsed.len();
    let (event, message) = if !view.kept {
        (Event::NotRegistered, format!("registering with every member of EtlRouterCluster {cluster}"))
    } else if view.lapsed.is_empty() && view.members > 0 {
        let message = format!(
            "registered with EtlRouterCluster {cluster}; its lease is renewed on all {} members",
            view.members
        );
        (Event::Registered, message)
    } else if view.first_lease || view.members == 0 {
        let message = format!(
            "registering with every member of EtlRouterCluster {cluster}: {held} of {} so far",
            view.members
        );
        (Event::NotRegistered, message)
    } else {
        let message = format!(
            "the registration's lease lapsed on {} of {} members of EtlRouterCluster {cluster} ({}), which do not route to it: they cannot be reached for Heartbeat or Register; it is registered again there once they answer",
            view.lapsed.len(),
            view.members,
            view.lapsed.join(", ")
        );
        (Event::LeaseLapsed, message)
    };
    Assessment::new(event, message)
}

/// What differs between the router's record and the registration the spec asks for.
pub fn differences(registered: &RegisteredService, desired: &RegisterRequest) -> Vec<String> {
    let mut changed = Vec::new();
    let identity = |i: Option<&crate::router::ServiceIdentity>| i.map(|i| (i.service_type, i.name.clone()));
    if identity(registered.identity.as_ref()) != identity(desired.identity.as_ref()) {
        changed.push("service type or name".to_owned());
    }
    if registered.endpoint != desired.endpoint {
        changed.push(format!(
            "endpoint {} → {}",
            show(registered.endpoint.as_ref()),
            show(desired.endpoint.as_ref())
        ));
    }
    let labels = |m: Option<&crate::router::proto::registry::ServiceMetadata>| m.map(|m| m.labels.clone());
    if labels(registered.metadata.as_ref()) != labels(desired.metadata.as_ref()) {
        changed.push("labels".to_owned());
    }
    changed
}

fn show(endpoint: Option<&Endpoint>) -> String {
    match endpoint {
        Some(e) if e.host.contains(':') => format!("[{}]:{}", e.host, e.port),
        Some(e) => format!("{}:{}", e.host, e.port),
        None => "none".to_owned(),
    }
}

pub fn health_of(service: &RegisteredService) -> HealthStatus {
    service.health.as_ref().map(|h| h.status()).unwrap_or(HealthStatus::Unspecified)
}

pub fn health_name(health: HealthStatus) -> &'static str {
    match health {
        HealthStatus::Healthy => "Healthy",
        HealthStatus::Degraded => "Degraded",
        HealthStatus::Unhealthy => "Unhealthy",
        HealthStatus::Unspecified => "Unknown",
    }
}
