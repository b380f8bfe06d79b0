//! Activation patterns: bit-packed masks, seeded gate sampling, exact enumeration.

pub mod exact;
mod masks;
pub mod sample;

pub use masks::{pack, Masks, PatternSet};
