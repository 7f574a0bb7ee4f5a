//! The `EtlRouterCluster` kind: a Raft cluster of router nodes.
//!
//! A reconcile observes (`observe`), condenses what it saw (`assess`), asks
//! the state machine for the next phase (`machine`), then acts: applies the
//! objects `build` describes, takes the next safe scale or roll step, and
//! writes status and an Event when something changed (`reconcile`).
//! `states.md` at the repository root is the machine's specification.

pub mod assess;
pub mod build;
pub mod conditions;
pub mod controller;
pub mod machine;
pub mod observation;
pub mod observe;
pub mod reconcile;
pub mod validate;

#[cfg(test)]
mod tests;
