//! Activation patterns: bit-packed masks, seeded gate sampling, exact enumeration.

mod masks;
pub mod sample;

pub use masks::{pack, Masks, PatternSet};
