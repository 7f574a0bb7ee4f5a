//! Router cluster simulator.
