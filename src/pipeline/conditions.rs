//! The main conditions and Event type of an EtlPipeline, as a pure function
//! of the phase it arrived in and the event that led there.

use crate::crd::Phase;
use crate::runtime::conditions::{Status, Wanted, main_conditions};

use super::machine::Event;

/// PascalCase reason shared by Ready, Progressing and Degraded and the Event.
pub fn reason(event: Event) -> &'static str {
    match event {
        Event::NoCluster => "NoRouterCluster",
        Event::ClusterNotReady => "RouterClusterNotReady",
        Event::ReferencesMissing => "ReferencesMissing",
        Event::ReferencesNotReady => "ReferencesNotReady",
        Event::Moving => "MovingCluster",
        Event::RouterUnreachable => "RouterUnreachable",
        Event::RouterAdminUnimplemented => "RouterAdminUnimplemented",
        Event::Conflict => "PipelineConflict",
        Event::OutOfSync => "Submitting",
        Event::ServiceUnhealthy => "ServiceUnhealthy",
        Event::InSync => "PipelineRunning",
        Event::Disabled => "Disabled",
    }
}

pub fn conditions(phase: Phase, event: Event, message: &str) -> [Wanted; 3] {
    let ready = match (phase, event) {
        (Phase::Ready, _) => Status::True,
        (_, Event::RouterUnreachable) => Status::Unknown,
        _ => Status::False,
    };
    main_conditions(ready, phase == Phase::Provisioning, phase == Phase::Degraded, reason(event), message)
}

/// Warning when the pipeline is degraded, the router cannot run it at all, or
/// its id is taken by a pipeline someone else made.
pub fn event_type(phase: Phase, event: Event) -> &'static str {
    let blocked = matches!(event, Event::RouterAdminUnimplemented | Event::Conflict);
    if phase == Phase::Degraded || blocked { "Warning" } else { "Normal" }
}
