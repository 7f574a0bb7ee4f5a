//! The conditions and Kubernetes Event of an EtlRouterCluster, as a pure
//! function of its phase and the event that led there.

use crate::crd::ClusterPhase;
use crate::runtime::conditions::{self, Status, Wanted};

use super::machine::Event;

pub use crate::runtime::conditions::{DEGRADED, PROGRESSING, READY};
pub const PAUSED: &str = "ReconciliationPaused";
pub const SPEC_WARNING: &str = "SpecWarning";
pub use crate::runtime::clusters::ROUTER_ADMIN_CONDITION as ROUTER_ADMIN;

fn forming(phase: ClusterPhase) -> bool {
    matches!(phase, ClusterPhase::Pending | ClusterPhase::Provisioning | ClusterPhase::RaftForming)
}

/// PascalCase reason shared by the three main conditions and the Event.
pub fn reason(phase: ClusterPhase, event: Event) -> &'static str {
    match event {
        Event::SpecInvalid => "InvalidSpec",
        Event::NotDeployed => "Deploying",
        Event::PodsStarting if forming(phase) => "PodsStarting",
        Event::PodsStarting => "PodsNotReady",
        Event::RouterUnreachable => "RouterUnreachable",
        Event::NoQuorum if forming(phase) => "ElectingLeader",
        Event::NoQuorum => "QuorumLost",
        Event::MembersUnhealthy if forming(phase) => "WaitingForMembers",
        Event::MembersUnhealthy => "MemberUnhealthy",
        Event::MembersCannotJoin => "MembersCannotJoin",
        Event::Scaling => "Scaling",
        Event::RollingUpdate => "RollingUpdate",
        Event::Healthy => "ClusterHealthy",
    }
}

/// Ready, Progressing and Degraded for a cluster in `phase` after `event`.
/// They share one reason and message, so `kubectl describe` tells one story.
pub fn main_conditions(phase: ClusterPhase, event: Event, message: &str) -> [Wanted; 3] {
    let ready = match (phase, event) {
        (ClusterPhase::Ready, _) => Status::True,
        // Health that cannot be read is never shown as known.
        (_, Event::RouterUnreachable) => Status::Unknown,
        _ => Status::False,
    };
    // A cluster whose members cannot join is not progressing: nothing will change by itself.
    let progressing = (matches!(phase, ClusterPhase::Provisioning | ClusterPhase::RaftForming)
        && event != Event::MembersCannotJoin)
        || matches!(event, Event::Scaling | Event::RollingUpdate);
    let degraded = matches!(phase, ClusterPhase::Degraded | ClusterPhase::Unavailable);
    conditions::main_conditions(ready, progressing, degraded, reason(phase, event), message)
}

/// Kubernetes Event type for arriving in `phase` after `event`: a planned
/// scale or roll is Normal even though the cluster is Degraded meanwhile.
pub fn event_type(phase: ClusterPhase, event: Event) -> &'static str {
    let planned = matches!(event, Event::Scaling | Event::RollingUpdate);
    let degraded = matches!(phase, ClusterPhase::Degraded | ClusterPhase::Unavailable);
    let stuck = matches!(event, Event::SpecInvalid | Event::MembersCannotJoin);
    if stuck || (degraded && !planned) { "Warning" } else { "Normal" }
}

/// Whether the router serves `RouterAdmin`: False once it answered
/// UNIMPLEMENTED, saying where health comes from instead; True again (once
/// the condition exists) when it answers.
pub fn router_admin(served: bool) -> Wanted {
    if served {
        Wanted::new(
            ROUTER_ADMIN,
            true,
            "RouterAdminServed",
            "the router serves RouterAdmin: health, leader and members come from GetClusterStatus",
        )
    } else {
        Wanted::new(
            ROUTER_ADMIN,
            false,
            "RouterAdminUnimplemented",
            "the router serves no RouterAdmin (GetClusterStatus answers UNIMPLEMENTED), as the public \
             conveyor-etl-router does: health comes from pod readiness and a ServiceRegistry check, leader, \
             term and members are not known, and pipelines cannot run on it; services still register. \
             Deploy a router build with RouterAdmin for pipelines",
        )
    }
}

pub fn paused(on: bool) -> Wanted {
    if on {
        Wanted::new(
            PAUSED,
            true,
            "PausedByAnnotation",
            "annotation conveyor.etl/paused=true: the operator changes nothing; remove it to resume",
        )
    } else {
        Wanted::new(PAUSED, false, "Resumed", "changes are applied again")
    }
}

pub fn spec_warnings(warnings: &[String]) -> Wanted {
    if warnings.is_empty() {
        Wanted::new(SPEC_WARNING, false, "NoWarnings", "")
    } else {
        Wanted::new(SPEC_WARNING, true, "SpecWarning", warnings.join("; "))
    }
}
