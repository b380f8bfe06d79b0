//! Solvers.

pub mod conic;
