//! The EtlRouterCluster state machine: which phase follows from the current
//! phase and what the reconciler observed. Pure: handlers decide, never act.
//! `states.md` at the repository root is its specification; the table test
//! below holds the two together.

use statig::prelude::*;

use crate::crd::ClusterPhase;

/// What a reconcile observed, condensed into the one fact that drives the
/// phase. `assess::event` picks it by precedence from the full observation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// The spec breaks a rule the schema cannot express (see `validate`).
    SpecInvalid,
    /// No StatefulSet exists yet: the objects are about to be applied.
    NotDeployed,
    /// Not every pod is ready and no leader can be reached.
    PodsStarting,
    /// Pods are ready but no member answered the health poll.
    RouterUnreachable,
    /// Members answer but none is leader: an election, or quorum lost.
    NoQuorum,
    /// A leader serves, but a member is unhealthy, missing or not yet joined.
    MembersUnhealthy,
    /// Several members, but the router serves no `RouterAdmin` to add members
    /// (the public router's formation gap): the cluster cannot form.
    MembersCannotJoin,
    /// Healthy, with a one-member scale step still to take.
    Scaling,
    /// Healthy, with pods still to roll to the current template.
    RollingUpdate,
    /// Leader elected, every member healthy, the spec fully rolled out.
    Healthy,
}

impl Event {
    pub const ALL: [Event; 10] = [
        Event::SpecInvalid,
        Event::NotDeployed,
        Event::PodsStarting,
        Event::RouterUnreachable,
        Event::NoQuorum,
        Event::MembersUnhealthy,
        Event::MembersCannotJoin,
        Event::Scaling,
        Event::RollingUpdate,
        Event::Healthy,
    ];
}

/// Zero-sized: the machine has no memory beyond its state, which lives in
/// `status.phase` and is restored on every reconcile.
#[derive(Default)]
pub struct ClusterMachine;

#[state_machine(initial = "State::pending()", state(derive(Debug, Clone, Copy, PartialEq, Eq)))]
impl ClusterMachine {
    /// Accepted, nothing deployed yet.
    #[state]
    fn pending(event: &Event) -> Outcome<State> {
        match event {
            Event::SpecInvalid => Handled,
            Event::NotDeployed | Event::PodsStarting => Transition(State::provisioning()),
            Event::Healthy => Transition(State::ready()),
            Event::RouterUnreachable
            | Event::NoQuorum
            | Event::MembersUnhealthy
            | Event::MembersCannotJoin
            | Event::Scaling
            | Event::RollingUpdate => Transition(State::raft_forming()),
        }
    }

    /// The cluster has not yet been fully formed: anything short of healthy
    /// keeps it here.
    #[superstate]
    fn forming(event: &Event) -> Outcome<State> {
        match event {
            Event::Healthy => Transition(State::ready()),
            _ => Handled,
        }
    }

    /// Objects applied; waiting for the pods.
    #[state(superstate = "forming")]
    fn provisioning(event: &Event) -> Outcome<State> {
        match event {
            Event::RouterUnreachable
            | Event::NoQuorum
            | Event::MembersUnhealthy
            | Event::MembersCannotJoin
            | Event::Scaling
            | Event::RollingUpdate => Transition(State::raft_forming()),
            _ => Super,
        }
    }

    /// Pods ready; waiting for a leader and for every member to join.
    #[state(superstate = "forming")]
    fn raft_forming(event: &Event) -> Outcome<State> {
        match event {
            Event::NotDeployed | Event::PodsStarting => Transition(State::provisioning()),
            _ => Super,
        }
    }

    /// The cluster has formed once: health alone moves it between Ready,
    /// Degraded and Unavailable.
    #[superstate]
    fn operational(event: &Event) -> Outcome<State> {
        match event {
            Event::NotDeployed => Transition(State::provisioning()),
            Event::PodsStarting | Event::RouterUnreachable | Event::NoQuorum => {
                Transition(State::unavailable())
            }
            Event::SpecInvalid
            | Event::MembersUnhealthy
            | Event::MembersCannotJoin
            | Event::Scaling
            | Event::RollingUpdate => Transition(State::degraded()),
            Event::Healthy => Transition(State::ready()),
        }
    }

    #[state(superstate = "operational")]
    fn ready(event: &Event) -> Outcome<State> {
        match event {
            Event::Healthy => Handled,
            _ => Super,
        }
    }

    #[state(superstate = "operational")]
    fn degraded(event: &Event) -> Outcome<State> {
        match event {
            Event::SpecInvalid
            | Event::MembersUnhealthy
            | Event::MembersCannotJoin
            | Event::Scaling
            | Event::RollingUpdate => Handled,
            _ => Super,
        }
    }

    #[state(superstate = "operational")]
    fn unavailable(event: &Event) -> Outcome<State> {
        match event {
            Event::PodsStarting | Event::RouterUnreachable | Event::NoQuorum => Handled,
            _ => Super,
        }
    }
}

impl State {
    fn of(phase: ClusterPhase) -> State {
        match phase {
            ClusterPhase::Pending => State::pending(),
            ClusterPhase::Provisioning => State::provisioning(),
            ClusterPhase::RaftForming => State::raft_forming(),
            ClusterPhase::Ready => State::ready(),
            ClusterPhase::Degraded => State::degraded(),
            ClusterPhase::Unavailable => State::unavailable(),
        }
    }

    fn phase(&self) -> ClusterPhase {
        match self {
            State::Pending {} => ClusterPhase::Pending,
            State::Provisioning {} => ClusterPhase::Provisioning,
            State::RaftForming {} => ClusterPhase::RaftForming,
            State::Ready {} => ClusterPhase::Ready,
            State::Degraded {} => ClusterPhase::Degraded,
            State::Unavailable {} => ClusterPhase::Unavailable,
        }
    }
}

/// The phase that follows `current` when `event` is observed. The machine is
/// rebuilt from the stored phase each time; nothing else carries over.
pub fn next_phase(current: ClusterPhase, event: Event) -> ClusterPhase {
    let mut machine = ClusterMachine.uninitialized_state_machine();
    *machine.state_mut() = State::of(current);
    let mut machine = machine.init();
    machine.handle(&event);
    machine.state().phase()
}
