//! Activation patterns: bit-packed masks, seeded gate sampling, exact enumeration.

pub mod exact;
mod masks;
pub mod sample;
pub mod second_layer;

pub use masks::{pack, Masks, PatternSet};

pub use sample::{patterns_from_gates, sample_patterns, GatedPatterns};
pub use second_layer::{all_sample_patterns, sample_second_layer_patterns, MAX_EXACT_SAMPLES};
