//! `kubectl conveyor`: the Conveyor ETL kubectl plugin.
//!
//! The pure parts, unit-tested on objects built from JSON, are separate from
//! the IO: [`snapshot`] holds what was read from the API server, [`why`]
//! follows a not-Ready object to its first cause over a snapshot, [`graph`]
//! lays out a pipeline's stages, and [`render`] turns them into tables,
//! text and Graphviz. [`fetch`] reads a snapshot and [`cli`] wires the
//! commands.

pub mod cli;
pub mod events;
pub mod fetch;
pub mod graph;
pub mod kinds;
pub mod render;
pub mod snapshot;
pub mod time;
pub mod why;

#[cfg(test)]
mod tests;
