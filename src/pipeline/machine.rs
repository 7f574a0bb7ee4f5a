//! The EtlPipeline state machine: which phase follows from the current phase
//! and what the reconciler observed. Pure: handlers decide, never act.
//! `states.md` is its specification; `tests/machine_table.rs` holds the two together.

use statig::prelude::*;

/// What one reconcile observed of a pipeline, condensed into the one fact
/// that drives its phase. `assess` picks it by precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// No router cluster to run on: none in the namespace, several and no
    /// `clusterRef`, or the named one does not exist.
    NoCluster,
    /// The cluster exists but is not Ready.
    ClusterNotReady,
    /// A referenced source, step or sink does not exist.
    ReferencesMissing,
    /// Every reference exists, but one is not registered (not Ready) yet.
    ReferencesNotReady,
    /// The status records another cluster than the one the spec names: the
    /// pipeline is removed from that one before it is submitted to this one.
    Moving,
    /// No router member answered.
    RouterUnreachable,
    /// The router answers RouterAdmin calls with UNIMPLEMENTED.
    RouterAdminUnimplemented,
    /// The router holds a pipeline with this id that this operator did not submit.
    Conflict,
    /// The router's copy is missing or differs from this generation: submit it.
    OutOfSync,
    /// The router holds this generation, but a referenced service is unhealthy.
    ServiceUnhealthy,
    /// The router confirmed this generation and every service is healthy.
    InSync,
    /// The router holds this generation, paused as `spec.enabled: false` asks.
    Disabled,
}

impl Event {
    /// Waiting for dependencies that are on their way, not a problem to fix.
    pub fn is_wait(self) -> bool {
        matches!(self, Event::ClusterNotReady | Event::ReferencesNotReady)
    }

    pub const ALL: [Event; 12] = [
        Event::NoCluster,
        Event::ClusterNotReady,
        Event::ReferencesMissing,
        Event::ReferencesNotReady,
        Event::Moving,
        Event::RouterUnreachable,
        Event::RouterAdminUnimplemented,
        Event::Conflict,
        Event::OutOfSync,
        Event::ServiceUnhealthy,
        Event::InSync,
        Event::Disabled,
    ];
}

/// Zero-sized: the state lives in `status.phase` and is restored every reconcile.
#[derive(Default)]
pub struct PipelineMachine;

#[state_machine(initial = "State::pending()", state(derive(Debug, Clone, Copy, PartialEq, Eq)))]
impl PipelineMachine {
    /// Never taken by the router yet: waits for its cluster and references.
    #[state]
    fn pending(event: &Event) -> Outcome<State> {
        match event {
            Event::OutOfSync | Event::Moving => Transition(State::provisioning()),
            Event::InSync => Transition(State::ready()),
            Event::Disabled => Transition(State::disabled()),
            Event::ServiceUnhealthy => Transition(State::degraded()),
            _ => Handled,
        }
    }

    /// Being submitted; retried until the router confirms it.
    #[state]
    fn provisioning(event: &Event) -> Outcome<State> {
        match event {
            Event::InSync => Transition(State::ready()),
            Event::Disabled => Transition(State::disabled()),
            Event::ServiceUnhealthy => Transition(State::degraded()),
            Event::NoCluster
            | Event::ClusterNotReady
            | Event::ReferencesMissing
            | Event::ReferencesNotReady
            | Event::Conflict => Transition(State::pending()),
            Event::OutOfSync | Event::Moving | Event::RouterUnreachable | Event::RouterAdminUnimplemented => {
                Handled
            }
        }
    }

    /// Taken by the router once: health and sync alone move it.
    #[superstate]
    fn operational(event: &Event) -> Outcome<State> {
        match event {
            Event::InSync => Transition(State::ready()),
            Event::Disabled => Transition(State::disabled()),
            Event::OutOfSync | Event::Moving => Transition(State::provisioning()),
            _ => Transition(State::degraded()),
        }
    }

    #[state(superstate = "operational")]
    fn ready(event: &Event) -> Outcome<State> {
        match event {
            Event::InSync => Handled,
            _ => Super,
        }
    }

    #[state(superstate = "operational")]
    fn degraded(event: &Event) -> Outcome<State> {
        match event {
            Event::InSync | Event::Disabled | Event::OutOfSync | Event::Moving => Super,
            _ => Handled,
        }
    }

    /// Held by the router and paused, as the spec asks; a problem degrades it
    /// like a running one.
    #[state(superstate = "operational")]
    fn disabled(event: &Event) -> Outcome<State> {
        match event {
            Event::Disabled => Handled,
            _ => Super,
        }
    }
}

crate::phase_machine!(PipelineMachine, Event, disabled);
