//! The machine EtlSource, EtlTransform and EtlSink share: registered with the
//! router or on the way there. Pure; `states.md` is its specification.

use statig::prelude::*;

/// The one fact a reconcile observed, picked by precedence in `assess`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// `spec.grpc.endpoint` is not a usable `host:port`.
    EndpointInvalid,
    /// No cluster in the namespace, or `spec.clusterRef` names a missing one.
    NoCluster,
    /// Several clusters in the namespace and no `spec.clusterRef`.
    AmbiguousCluster,
    /// The status records another cluster than the one the spec resolves
    /// to: the service is deregistered there before it registers here.
    Moving,
    /// The cluster is not Ready (or has no ready member to talk to).
    ClusterNotReady,
    /// The router could not be read.
    RouterUnreachable,
    /// The router does not hold the registration, or holds a different one.
    NotRegistered,
    /// Registered as the spec says, and the router reports it unhealthy.
    ServiceUnhealthy,
    /// A leased registry (per member): the registration's lease lapsed on some
    /// member, which no longer routes to it.
    LeaseLapsed,
    /// Registered as the spec says, and healthy.
    Registered,
}

impl Event {
    pub const ALL: [Event; 10] = [
        Event::EndpointInvalid,
        Event::NoCluster,
        Event::AmbiguousCluster,
        Event::Moving,
        Event::ClusterNotReady,
        Event::RouterUnreachable,
        Event::NotRegistered,
        Event::ServiceUnhealthy,
        Event::LeaseLapsed,
        Event::Registered,
    ];
}

#[derive(Default)]
pub struct ServiceMachine;

#[state_machine(initial = "State::pending()", state(derive(Debug, Clone, Copy, PartialEq, Eq)))]
impl ServiceMachine {
    /// Waiting for a valid endpoint and a Ready cluster; nothing registered.
    #[state]
    fn pending(event: &Event) -> Outcome<State> {
        match event {
            Event::NotRegistered | Event::Moving => Transition(State::provisioning()),
            Event::Registered => Transition(State::ready()),
            Event::ServiceUnhealthy | Event::LeaseLapsed => Transition(State::degraded()),
            _ => Handled,
        }
    }

    /// Registering; what stands in the way sends it back to Pending.
    #[state]
    fn provisioning(event: &Event) -> Outcome<State> {
        match event {
            Event::Registered => Transition(State::ready()),
            Event::ServiceUnhealthy | Event::LeaseLapsed => Transition(State::degraded()),
            Event::EndpointInvalid | Event::NoCluster | Event::AmbiguousCluster | Event::ClusterNotReady => {
                Transition(State::pending())
            }
            Event::NotRegistered | Event::Moving | Event::RouterUnreachable => Handled,
        }
    }

    /// Registered once: a lost or changed registration is registered again,
    /// anything else wrong is Degraded.
    #[superstate]
    fn registered(event: &Event) -> Outcome<State> {
        match event {
            Event::Registered => Transition(State::ready()),
            Event::NotRegistered | Event::Moving => Transition(State::provisioning()),
            _ => Transition(State::degraded()),
        }
    }

    #[state(superstate = "registered")]
    fn ready(event: &Event) -> Outcome<State> {
        match event {
            Event::Registered => Handled,
            _ => Super,
        }
    }

    #[state(superstate = "registered")]
    fn degraded(event: &Event) -> Outcome<State> {
        match event {
            Event::Registered | Event::NotRegistered | Event::Moving => Super,
            _ => Handled,
        }
    }
}

crate::phase_machine!(ServiceMachine, Event);
