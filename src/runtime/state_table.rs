//! Holds a kind's state machine to its transition table in `states.md`.
//!
//! Each kind's table sits between `<!-- <marker>:begin -->` and
//! `<!-- <marker>:end -->` and has the columns `From`, `Event`, `To`, then any
//! columns the kind computes from the phase it arrives in and the event
//! (conditions, reason, Event type). A kind adds a table and implements
//! [`TransitionTable`]; [`check`] does the rest: every row holds in code, the
//! code has no transition the table lacks, and no row is listed twice.

use std::collections::BTreeMap;
use std::fmt::Debug;

/// A kind's machine as the table describes it.
pub trait TransitionTable {
    type Phase: Copy + Debug + PartialEq;
    type Event: Copy + Debug;
    /// The marker around the kind's table in `states.md`.
    const MARKER: &'static str;
    fn phases() -> Vec<Self::Phase>;
    fn events() -> Vec<Self::Event>;
    /// The machine's answer.
    fn next(from: Self::Phase, event: Self::Event) -> Self::Phase;
    /// The columns after `To`, by header, as the code computes them.
    fn columns(to: Self::Phase, event: Self::Event) -> Vec<(&'static str, String)>;
}

/// The columns every kind's table has after `To`: its main conditions (as
/// `runtime::conditions::main_conditions` builds them), their shared reason,
/// and the Event type.
pub fn main_columns(
    conditions: &[super::conditions::Wanted; 3],
    event_type: &str,
) -> Vec<(&'static str, String)> {
    let [ready, progressing, degraded] = conditions;
    vec![
        ("Ready", ready.status.as_str().to_owned()),
        ("Progressing", progressing.status.as_str().to_owned()),
        ("Degraded", degraded.status.as_str().to_owned()),
        ("Reason", ready.reason.to_owned()),
        ("Event type", event_type.to_owned()),
    ]
}

/// The rows of the table between the markers, each as header → cell.
pub fn rows(marker: &str) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/states.md")).expect("states.md");
    let begin = format!("<!-- {marker}:begin -->");
    let end = format!("<!-- {marker}:end -->");
    let start = text.find(&begin).unwrap_or_else(|| panic!("no {begin} in states.md"));
    let stop = text.find(&end).unwrap_or_else(|| panic!("no {end} in states.md"));
    let cells = |line: &str| -> Vec<String> {
        line.trim().trim_matches('|').split('|').map(|cell| cell.trim().to_string()).collect()
    };
    let mut lines = text[start..stop].lines().filter(|line| line.trim_start().starts_with('|'));
    let headers = cells(lines.next().expect("a header row"));
    lines
        .skip(1) // separator
        .map(|line| {
            let row = cells(line);
            assert_eq!(row.len(), headers.len(), "malformed row: {line}");
            headers.iter().cloned().zip(row).collect()
        })
        .collect()
}

fn name<T: Debug>(value: T) -> String {
    format!("{value:?}")
}

/// Checks the code of `T` against its table; panics naming the first difference.
pub fn check<T: TransitionTable>(minimum_rows: usize) {
    let rows = rows(T::MARKER);
    assert!(rows.len() >= minimum_rows, "suspiciously short table {}: {} rows", T::MARKER, rows.len());
    let cell = |row: &BTreeMap<String, String>, header: &str| -> String {
        row.get(header).unwrap_or_else(|| panic!("no column {header} in {}", T::MARKER)).clone()
    };
    for (i, row) in rows.iter().enumerate() {
        let from = T::phases()
            .into_iter()
            .find(|p| name(p) == cell(row, "From"))
            .unwrap_or_else(|| panic!("unknown phase in {row:?}"));
        let event = T::events()
            .into_iter()
            .find(|e| name(e) == cell(row, "Event"))
            .unwrap_or_else(|| panic!("unknown event in {row:?}"));
        let to = T::next(from, event);
        assert_eq!(name(to), cell(row, "To"), "{row:?}");
        for (header, value) in T::columns(to, event) {
            assert_eq!(value, cell(row, header), "{header} in {row:?}");
        }
        assert!(
            !rows[..i].iter().any(|other| other["From"] == row["From"] && other["Event"] == row["Event"]),
            "duplicate row {row:?}"
        );
    }
    for from in T::phases() {
        for event in T::events() {
            let to = T::next(from, event);
            let documented = rows.iter().any(|row| row["From"] == name(from) && row["Event"] == name(event));
            if to != from {
                assert!(documented, "{from:?} --{event:?}--> {to:?} is not in the {} table", T::MARKER);
            } else {
                assert!(
                    !documented,
                    "the {} table lists {from:?} --{event:?}--> but the code stays",
                    T::MARKER
                );
            }
        }
    }
}
