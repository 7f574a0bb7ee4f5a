//! From an observation to the machine's event, the message conditions show,
//! and the one router call that brings the router's copy in line. Pure.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::machine::Event;
use super::observation::{ClusterView, Observation, Reference, RouterCopy, ServiceState};
use crate::runtime::arrival;

/// The router call to make now. Chosen from the router's own copy, so an
/// operator restart or a lost reply never creates a pipeline twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submit {
    Create,
    Update,
    Enable,
    Disable,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub event: Event,
    pub message: String,
    pub submit: Option<Submit>,
    /// `ReferencesResolved`: whether every reference is Ready, and a sentence naming those that are not.
    pub references_resolved: (bool, String),
}

fn describe(reference: &Reference) -> String {
    format!("{} {} ({})", reference.kind, reference.name, reference.role)
}

/// Each service once, in pipeline order: a transform named by many steps
/// is listed with its first role and how many more (a thousand steps naming
/// one missing transform would otherwise repeat it a thousand times).
fn listed<'a>(references: impl Iterator<Item = &'a Reference>) -> Vec<String> {
    let mut first: HashMap<(&str, &str), usize> = HashMap::new();
    let mut services: Vec<(&Reference, usize)> = Vec::new();
    for reference in references {
        match first.entry((reference.kind, reference.name.as_str())) {
            Entry::Occupied(index) => services[*index.get()].1 += 1,
            Entry::Vacant(slot) => {
                slot.insert(services.len());
                services.push((reference, 0));
            }
        }
    }
    services
        .into_iter()
        .map(|(reference, more)| match more {
            0 => describe(reference),
            more => format!("{} {} ({} and {more} more)", reference.kind, reference.name, reference.role),
        })
        .collect()
}

/// `arriving`: missing references may be on their way (see [`arrival`]).
fn references_resolved(references: &[Reference], arriving: bool) -> (bool, String) {
    let missing = listed(references.iter().filter(|r| r.state == ServiceState::Missing));
    let not_ready = listed(references.iter().filter(|r| r.state == ServiceState::NotReady));
    let mut parts = Vec::new();
    if !missing.is_empty() && arriving {
        parts.push(format!("not seen yet: {} ({})", missing.join(", "), arrival::on_its_way("pipeline")));
    } else if !missing.is_empty() {
        parts.push(format!("missing: {}", missing.join(", ")));
    }
    if !not_ready.is_empty() {
        parts.push(format!("not Ready yet: {}", not_ready.join(", ")));
    }
    if parts.is_empty() {
        (
            true,
            format!("the source, {} step(s) and the sink are registered", references.len().saturating_sub(2)),
        )
    } else {
        (false, format!("{}; the pipeline goes on by itself once they are Ready", parts.join("; ")))
    }
}

/// The one call that brings the router's `copy` to `generation`, enabled or
/// not; `None` when it holds it already (or cannot be asked).
pub fn submission(copy: &RouterCopy, generation: i64, enabled: bool) -> Option<Submit> {
    match copy {
        RouterCopy::Unreachable(_) | RouterCopy::Unimplemented(_) | RouterCopy::Foreign => None,
        RouterCopy::Absent => Some(Submit::Create),
        RouterCopy::Present { matches: false, .. } => Some(Submit::Update),
        RouterCopy::Present { generation: applied, .. } if *applied != Some(generation) => {
            Some(Submit::Update)
        }
        RouterCopy::Present { enabled: held, .. } if *held != enabled => {
            Some(if enabled { Submit::Enable } else { Submit::Disable })
        }
        RouterCopy::Present { .. } => None,
    }
}

pub fn assess(observation: &Observation) -> Assessment {
    let references_resolved = references_resolved(&observation.references, observation.arriving);
    let done = |event: Event, message: String, submit: Option<Submit>| Assessment {
        event,
        message,
        submit,
        references_resolved: references_resolved.clone(),
    };
    if let (Some(leaving), ClusterView::NotReady { name } | ClusterView::Ready { name }) =
        (&observation.leaving, &observation.cluster)
        && !leaving.gone
    {
        let message = format!(
            "moving from router cluster {} to {name}: it is removed from {} before it is submitted to \
             {name}, so it never runs on both; while {} cannot be asked, the move waits for it to answer \
             or to be deleted (Synced says why)",
            leaving.from, leaving.from, leaving.from
        );
        return done(Event::Moving, message, None);
    }
    let cluster = match &observation.cluster {
        ClusterView::Absent(why) if observation.arriving => {
            let message = format!("{why}; {}", arrival::on_its_way("pipeline"));
            return done(Event::ClusterNotReady, message, None);
        }
        ClusterView::Unresolved(why) | ClusterView::Absent(why) => {
            return done(Event::NoCluster, why.clone(), None);
        }
        // Whether Ready or not, a router without RouterAdmin can never take the pipeline.
        ClusterView::NotReady { name } | ClusterView::Ready { name }
            if matches!(observation.router, Some(RouterCopy::Unimplemented(_))) =>
        {
            name
        }
        ClusterView::NotReady { name } => {
            let message = format!(
                "router cluster {name} is neither Ready nor Degraded with a leader; the pipeline waits for it"
            );
            return done(Event::ClusterNotReady, message, None);
        }
        ClusterView::Ready { name } => name,
    };
    if let Some(RouterCopy::Unimplemented(why)) = &observation.router {
        let message = format!(
            "router cluster {cluster} does not serve RouterAdmin ({why}): this router build cannot run \
             pipelines; deploy a router image with RouterAdmin"
        );
        return done(Event::RouterAdminUnimplemented, message, None);
    }
    let missing = observation.references.iter().any(|r| r.state == ServiceState::Missing);
    if missing && !observation.arriving {
        return done(Event::ReferencesMissing, references_resolved.1.clone(), None);
    }
    if missing || observation.references.iter().any(|r| r.state == ServiceState::NotReady) {
        return done(Event::ReferencesNotReady, references_resolved.1.clone(), None);
    }
    let generation = observation.generation;
    let submit = match &observation.router {
        None => {
            return done(
                Event::ClusterNotReady,
                format!("router cluster {cluster} has no member to ask"),
                None,
            );
        }
        Some(RouterCopy::Unreachable(why)) => {
            let message = format!("no member of router cluster {cluster} answered ({why}); retrying");
            return done(Event::RouterUnreachable, message, None);
        }
        Some(RouterCopy::Foreign) => {
            let message = format!(
                "router cluster {cluster} holds a pipeline with this one's id that this operator did not \
                 submit (it lacks the {} metadata): it is left alone; delete it from the router, or rename \
                 this EtlPipeline",
                crate::router::mapping::METADATA_GENERATION
            );
            return done(Event::Conflict, message, None);
        }
        Some(copy) => submission(copy, generation, observation.enabled),
    };
    if let Some(submit) = submit {
        let what = match submit {
            Submit::Create => "creating it",
            Submit::Update => "updating it",
            Submit::Enable => "enabling it",
            Submit::Disable => "disabling it",
        };
        let message = format!("router cluster {cluster} does not hold generation {generation} yet: {what}");
        return done(Event::OutOfSync, message, Some(submit));
    }
    if !observation.enabled {
        let message = format!(
            "router cluster {cluster} holds generation {generation}, disabled: it processes no records \
             until spec.enabled is true"
        );
        return done(Event::Disabled, message, None);
    }
    let unhealthy: Vec<String> = observation
        .references
        .iter()
        .filter_map(|r| match &r.state {
            ServiceState::Unhealthy(why) => Some(format!("{} ({why})", describe(r))),
            _ => None,
        })
        .collect();
    if !unhealthy.is_empty() {
        let message = format!("the router reports {} unhealthy", unhealthy.join(", "));
        return done(Event::ServiceUnhealthy, message, None);
    }
    done(Event::InSync, format!("router cluster {cluster} holds generation {generation}, running"), None)
}
