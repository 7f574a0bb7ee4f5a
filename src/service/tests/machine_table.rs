//! Holds the service machine to its transition table in `states.md`.

use crate::crd::Phase;
use crate::runtime::state_table::{TransitionTable, check};
use crate::service::conditions::{event_type, ready};
use crate::service::machine::{Event, next_phase};

struct ServiceTable;

impl TransitionTable for ServiceTable {
    type Phase = Phase;
    type Event = Event;
    const MARKER: &'static str = "service-transitions";

    fn phases() -> Vec<Phase> {
        vec![Phase::Pending, Phase::Provisioning, Phase::Ready, Phase::Degraded]
    }

    fn events() -> Vec<Event> {
        Event::ALL.to_vec()
    }

    fn next(from: Phase, event: Event) -> Phase {
        next_phase(from, event)
    }

    fn columns(to: Phase, event: Event) -> Vec<(&'static str, String)> {
        let ready = ready(to, event, "message");
        vec![
            ("Ready", ready.status.as_str().to_owned()),
            ("Reason", ready.reason.to_owned()),
            ("Event type", event_type(to, event).to_owned()),
        ]
    }
}

#[test]
fn the_service_machine_matches_states_md() {
    check::<ServiceTable>(15);
}
