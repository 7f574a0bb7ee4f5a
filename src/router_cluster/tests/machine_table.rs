//! Holds the state machine to the transition table in `states.md`.

use crate::conditions::Wanted;
use crate::crd::ClusterPhase;
use crate::router_cluster::conditions::{event_type, main_conditions};
use crate::router_cluster::machine::{Event, next_phase};

const PHASES: [ClusterPhase; 6] = [
    ClusterPhase::Pending,
    ClusterPhase::Provisioning,
    ClusterPhase::RaftForming,
    ClusterPhase::Ready,
    ClusterPhase::Degraded,
    ClusterPhase::Unavailable,
];

#[derive(Debug)]
struct Row {
    from: String,
    event: String,
    to: String,
    ready: String,
    progressing: String,
    degraded: String,
    reason: String,
    event_type: String,
}

fn table() -> Vec<Row> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/states.md")).unwrap();
    let start = text.find("<!-- router-cluster-transitions:begin -->").expect("table start marker");
    let end = text.find("<!-- router-cluster-transitions:end -->").expect("table end marker");
    text[start..end]
        .lines()
        .filter(|line| line.starts_with('|'))
        .skip(2) // header and separator
        .map(|line| {
            let cells: Vec<String> =
                line.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect();
            assert_eq!(cells.len(), 8, "malformed row: {line}");
            let mut cells = cells.into_iter();
            let mut next = || cells.next().unwrap();
            Row {
                from: next(),
                event: next(),
                to: next(),
                ready: next(),
                progressing: next(),
                degraded: next(),
                reason: next(),
                event_type: next(),
            }
        })
        .collect()
}

fn name<T: std::fmt::Debug>(value: T) -> String {
    format!("{value:?}")
}

fn status_of(conditions: &[Wanted; 3], index: usize) -> &'static str {
    conditions[index].status.as_str()
}

#[test]
fn every_row_of_states_md_holds_in_code() {
    let rows = table();
    assert!(rows.len() >= 30, "suspiciously short table: {} rows", rows.len());
    for row in &rows {
        let from = *PHASES
            .iter()
            .find(|p| name(p) == row.from)
            .unwrap_or_else(|| panic!("unknown phase {}", row.from));
        let event = *Event::ALL
            .iter()
            .find(|e| name(e) == row.event)
            .unwrap_or_else(|| panic!("unknown event {}", row.event));
        let to = next_phase(from, event);
        assert_eq!(name(to), row.to, "{row:?}");
        let conditions = main_conditions(to, event, "message");
        assert_eq!(status_of(&conditions, 0), row.ready, "Ready in {row:?}");
        assert_eq!(status_of(&conditions, 1), row.progressing, "Progressing in {row:?}");
        assert_eq!(status_of(&conditions, 2), row.degraded, "Degraded in {row:?}");
        assert_eq!(conditions[0].reason, row.reason, "reason in {row:?}");
        assert_eq!(event_type(to, event), row.event_type, "event type in {row:?}");
    }
}

#[test]
fn the_code_has_no_transition_the_table_lacks() {
    let rows = table();
    for from in PHASES {
        for event in Event::ALL {
            let to = next_phase(from, event);
            let documented = rows.iter().any(|row| row.from == name(from) && row.event == name(event));
            if to != from {
                assert!(documented, "{from:?} --{event:?}--> {to:?} is not in states.md");
            } else {
                assert!(
                    !documented,
                    "states.md lists {from:?} --{event:?}--> but the code stays in {from:?}"
                );
            }
        }
    }
}

#[test]
fn table_rows_are_unique() {
    let rows = table();
    for (i, row) in rows.iter().enumerate() {
        assert!(
            !rows[..i].iter().any(|other| other.from == row.from && other.event == row.event),
            "duplicate row {row:?}"
        );
    }
}
