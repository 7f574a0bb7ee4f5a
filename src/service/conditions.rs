//! The Ready condition and Event type of a service, as a pure function of
//! its phase and the event that led there.

use crate::crd::Phase;
use crate::runtime::conditions::{Status, Wanted};

use super::machine::Event;

pub const READY: &str = "Ready";

pub fn reason(event: Event) -> &'static str {
    match event {
        Event::EndpointInvalid => "InvalidEndpoint",
        Event::NoCluster => "NoRouterCluster",
        Event::AmbiguousCluster => "AmbiguousRouterCluster",
        Event::Moving => "MovingCluster",
        Event::ClusterNotReady => "RouterClusterNotReady",
        Event::RouterUnreachable => "RouterUnreachable",
        Event::NotRegistered => "Registering",
        Event::ServiceUnhealthy => "ServiceUnhealthy",
        Event::LeaseLapsed => "RegistrationLapsed",
        Event::Registered => "Registered",
    }
}

/// True only in Ready; Unknown while the router cannot be read.
pub fn ready(phase: Phase, event: Event, message: &str) -> Wanted {
    let status = match (phase, event) {
        (Phase::Ready, _) => Status::True,
        (_, Event::RouterUnreachable) => Status::Unknown,
        _ => Status::False,
    };
    Wanted::new(READY, status, reason(event), message)
}

/// A spec or setup a person must fix, or a registered service gone wrong, is a Warning.
pub fn event_type(phase: Phase, event: Event) -> &'static str {
    let misconfigured = matches!(event, Event::EndpointInvalid | Event::NoCluster | Event::AmbiguousCluster);
    if misconfigured || phase == Phase::Degraded { "Warning" } else { "Normal" }
}
