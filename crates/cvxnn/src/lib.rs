//! cvxnn: train two-layer ReLU networks to their global optimum through their convex programs.
#![warn(missing_docs)]

pub mod data;
pub mod error;
pub mod linalg;
pub mod loss;
pub mod patterns;
pub mod program;
pub mod solver;

pub use error::{CvxnnError, Result};
pub use linalg::Matrix;
pub mod operator;
pub mod penalty;
pub mod certificate;
pub mod solver;
pub mod network;
pub mod estimator;
