//! # cvxnn
//!
//! Train two-layer ReLU networks to their **global optimum** by solving the convex programs they
//! are equivalent to (Pilanci & Ergen, ICML 2020), rebuild the network from the solution, and
//! certify by duality how far it is from optimal.
//!
//! With activation patterns `D_i = diag(1[X g_i >= 0])`, weight-decay training of
//! `f(X) = sum_j (X u_j)_+ alpha_j` is the cone-constrained group lasso
//!
//! ```text
//! min (1/n) sum_j loss((sum_i D_i X (v_i - w_i))_j, y_j) + lambda sum_i (||v_i|| + ||w_i||)
//! s.t. (2 D_i - I) X v_i >= 0,  (2 D_i - I) X w_i >= 0,
//! ```
//!
//! and its gated-ReLU relaxation drops the constraints. Data flows one way:
//! [`data`] -> [`patterns`] -> [`operator`] -> [`program`] -> [`solver`] -> [`network`] /
//! [`certificate`]; [`estimator`] runs the whole pipeline on a table, [`path`] solves it over a
//! lambda grid with warm starts (and recommends a lambda by validation), and [`baseline`] trains the
//! same network on a table directly by Adam or SGD, for comparison.
//!
//! ```
//! use cvxnn::linalg::Matrix;
//! use cvxnn::loss::LossKind;
//! use cvxnn::network::Network;
//! use cvxnn::patterns::sample_patterns;
//! use cvxnn::program::{ModelKind, TwoLayerProgram};
//! use cvxnn::solver::{SolverSettings, Status};
//!
//! // Six samples, one feature plus a bias column.
//! let rows: Vec<Vec<f64>> = [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]
//!     .iter()
//!     .map(|&t| vec![t, 1.0])
//!     .collect();
//! let x = Matrix::from_rows(&rows, 2).unwrap();
//! let y = vec![1.0, 0.3, 0.0, 0.2, 0.9, 1.6];
//! let patterns = sample_patterns(&x, 50, 0).unwrap();
//! let program = TwoLayerProgram::new(&x, &y, &patterns.masks, LossKind::Squared, ModelKind::Relu, 1e-3).unwrap();
//! let solution = program.solve(&SolverSettings::default(), None, &mut |_| {}).unwrap();
//! assert_eq!(solution.status, Status::Converged);
//! assert!(solution.relative_gap() <= 1e-6);
//! // The rebuilt ReLU network attains the convex objective.
//! let net = Network::from_convex(ModelKind::Relu, 2, &solution.x, None).unwrap();
//! let obj = net.objective(&x, &y, LossKind::Squared, 1e-3).unwrap();
//! assert!((obj - solution.objective).abs() <= 1e-5 * solution.objective);
//! ```
#![warn(missing_docs)]

// The BLAS/LAPACK symbols of Clarabel's PSD cone: nothing calls this crate by name, so without
// the `extern crate` the linker would never see it.
extern crate cvxnn_lapack;

pub mod architecture;
pub mod baseline;
pub mod certificate;
pub mod conv;
pub mod conv3;
pub mod conv_circular;
pub mod data;
pub mod error;
pub mod estimator;
pub mod linalg;
pub mod linear_model;
pub mod loss;
pub mod metrics;
pub mod network;
pub mod operator;
pub mod path;
pub mod patterns;
pub mod penalty;
pub mod program;
pub mod solver;

pub use error::{CvxnnError, Result};
pub use linalg::Matrix;
