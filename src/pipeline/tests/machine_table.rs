//! Holds the EtlPipeline machine to its transition table in `states.md`.

use crate::crd::Phase;
use crate::pipeline::conditions::{conditions, event_type};
use crate::pipeline::machine::{Event, next_phase};
use crate::runtime::state_table::{TransitionTable, check, main_columns};

struct PipelineTable;

impl TransitionTable for PipelineTable {
    type Phase = Phase;
    type Event = Event;
    const MARKER: &'static str = "pipeline-transitions";

    fn phases() -> Vec<Phase> {
        vec![Phase::Pending, Phase::Provisioning, Phase::Ready, Phase::Degraded, Phase::Disabled]
    }

    fn events() -> Vec<Event> {
        Event::ALL.to_vec()
    }

    fn next(from: Phase, event: Event) -> Phase {
        next_phase(from, event)
    }

    fn columns(to: Self::Phase, event: Event) -> Vec<(&'static str, String)> {
        main_columns(&conditions(to, event, "message"), event_type(to, event))
    }
}

#[test]
fn the_pipeline_machine_matches_states_md() {
    check::<PipelineTable>(15);
}
