//! Seeded Gaussian gate sampling.
