//! Holds the EtlRouterCluster machine to its transition table in `states.md`.

use crate::crd::ClusterPhase;
use crate::router_cluster::conditions::{event_type, main_conditions};
use crate::router_cluster::machine::{Event, next_phase};
use crate::runtime::state_table::{TransitionTable, check, main_columns};

struct RouterClusterTable;

impl TransitionTable for RouterClusterTable {
    type Phase = ClusterPhase;
    type Event = Event;
    const MARKER: &'static str = "router-cluster-transitions";

    fn phases() -> Vec<ClusterPhase> {
        use ClusterPhase::*;
        vec![Pending, Provisioning, RaftForming, Ready, Degraded, Unavailable]
    }

    fn events() -> Vec<Event> {
        Event::ALL.to_vec()
    }

    fn next(from: ClusterPhase, event: Event) -> ClusterPhase {
        next_phase(from, event)
    }

    fn columns(to: Self::Phase, event: Event) -> Vec<(&'static str, String)> {
        main_columns(&main_conditions(to, event, "message"), event_type(to, event))
    }
}

#[test]
fn the_router_cluster_machine_matches_states_md() {
    check::<RouterClusterTable>(30);
}
