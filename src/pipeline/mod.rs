//! The `EtlPipeline` kind: a pipeline submitted to a router cluster.
//!
//! So far the pure half: `machine` (statig) with its `states.md` table,
//! `observation` and `assess` (which event, which router call). The observe
//! and act steps and the controller come next, on the shared runtime.

pub mod assess;
pub mod conditions;
pub mod machine;
pub mod observation;

#[cfg(test)]
mod tests;
