//! Column generation for the ReLU program (DESIGN section 1): start from a few patterns, solve,
//! ask the dual oracle ([`crate::certificate::oracle`]) for missing patterns whose dual
//! constraint `|theta^T (X u)_+| <= lambda` is violated, add the most violated ones, re-solve
//! warm-started, and stop when the oracle finds no violation or a budget ends.
//!
//! Every accepted point is feasible for the cone constraints (a real network), and a round's
//! point replaces the previous one only when its objective is not larger, so the reported
//! objective never increases from round to round.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{ModelKind, TwoLayerProgram};
use crate::certificate::{dual_bound, search_patterns, OracleSettings};
use crate::error::{CvxnnError, Result};
use crate::linalg::{norm2, Matrix};
use crate::loss::LossKind;
use crate::network::{train_gradient_from, GradientSettings, Network};
use crate::operator::ArrangementOperator;
use crate::patterns::{GatedPatterns, Masks};
use crate::solver::{relative_gap, Multipliers, Progress, Solution, SolverSettings, Status};

/// Budgets and batch sizes of [`solve_column_generation`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnGenerationSettings {
    /// Most violated patterns added per round. Default 16.
    pub batch: usize,
    /// Most rounds (oracle calls). Default 30 (gradient rounds also stop when they stall).
    pub max_rounds: usize,
    /// Largest working set of patterns. Default 4000.
    pub max_patterns: usize,
    /// Rounds a pattern's groups may stay zero before it leaves the working set. Default 3.
    pub drop_after: usize,
    /// How hard the oracle searches.
    pub oracle: OracleSettings,
    /// What re-optimizes after patterns are added. Default: gradient rounds.
    pub round_solver: RoundSolver,
    /// Relative tolerance of each round's solve (the last solve uses the solver's). Default 1e-4.
    pub round_tol: f64,
    /// First-order iterations per round. Default 500 (measured: more rounds of fewer iterations
    /// lower the objective faster than fewer, longer solves).
    pub round_max_iter: usize,
    /// First-order iterations of the final solve on the last working set. Default 100 (it
    /// gives the restricted dual bound; on the bundled sets it did not lower the objective).
    pub final_max_iter: usize,
}

impl Default for ColumnGenerationSettings {
    fn default() -> Self {
        ColumnGenerationSettings {
            batch: 16,
            max_rounds: 30,
            max_patterns: 4000,
            drop_after: 3,
            oracle: OracleSettings::default(),
            round_solver: RoundSolver::default(),
            round_tol: 1e-4,
            round_max_iter: 500,
            final_max_iter: 100,
        }
    }
}

/// What re-optimizes the network after each oracle call.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoundSolver {
    /// The oracle's directions join the network as neurons of size `scale` (`||u|| = |alpha|`,
    /// sign that lowers the objective), then full-batch Adam runs `epochs` epochs from there.
    /// Measured on diabetes (lambda 1e-2): 10 rounds reach 2.1433e-1 in 2.9 s where Adam alone,
    /// continued as long, stays at 2.2021e-1.
    Gradient {
        /// Adam epochs per round.
        epochs: usize,
        /// Adam learning rate.
        learning_rate: f64,
        /// Initial size of an added neuron.
        scale: f64,
    },
    /// Each round solves the convex program over the working set (augmented Lagrangian,
    /// `round_max_iter` iterations, multipliers carried over); the best rebuilt network is kept.
    Convex,
}

impl Default for RoundSolver {
    fn default() -> Self {
        RoundSolver::Gradient {
            epochs: 500,
            learning_rate: 1e-3,
            scale: 0.05,
        }
    }
}

/// How column generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ColumnGenerationEnd {
    /// The oracle found no pattern whose dual constraint is violated beyond the tolerance.
    NoViolationFound,
    /// The round, pattern or iteration budget ended first.
    Budget,
    /// Gradient rounds: the objective improved by less than `STALL_TOL` (relative) over the
    /// last `STALL_ROUNDS` rounds.
    Stalled,
}

/// Gradient rounds stop when `STALL_ROUNDS` rounds together lowered the objective by less than
/// `STALL_TOL` relative (measured: at lambda 1e-2 the objective flattens after ~8 rounds on the
/// bundled sets, at 1e-3 it still drops ~1% per round at 20).
const STALL_ROUNDS: usize = 3;
/// See [`STALL_ROUNDS`].
const STALL_TOL: f64 = 1e-4;

/// One round of column generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnGenerationRound {
    /// Round number (0 = the initial patterns).
    pub round: usize,
    /// Patterns in the working set during this round's solve.
    pub patterns: usize,
    /// Objective of the accepted point after the round.
    pub objective: f64,
    /// Dual bound over the working set (not global; convex rounds only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restricted_bound: Option<f64>,
    /// Largest `|theta^T (X u)_+| / lambda` the oracle found (1 + tol or less: no violation).
    pub oracle_ratio: f64,
    /// Patterns added after this round.
    pub added: usize,
    /// Patterns dropped after this round.
    pub dropped: usize,
    /// First-order iterations (convex rounds) or Adam epochs (gradient rounds) of this round.
    pub iterations: usize,
    /// Seconds since the start.
    pub seconds: f64,
}

/// The outcome of [`solve_column_generation`].
#[derive(Clone, Debug)]
pub struct ColumnGenerationOutcome {
    /// Final working set.
    pub masks: Masks,
    /// One gate realizing each pattern of `masks` (`d x P`).
    pub gates: Matrix,
    /// Solution over `masks` (ReLU layout `[V W]`); `dual_bound` is relative to `masks`.
    pub solution: Solution,
    /// Trajectory.
    pub rounds: Vec<ColumnGenerationRound>,
    /// How it ended.
    pub end: ColumnGenerationEnd,
    /// Last oracle ratio `max |theta^T (X u)_+| / lambda` found.
    pub oracle_ratio: f64,
    /// Lower bound on the global optimum, valid if the oracle's maximum is the true one (so
    /// heuristic unless the oracle is exact): `theta` rescaled by the largest dual norm found.
    pub searched_bound: f64,
    /// Objective of the warm-start network mapped into the program (when one was given).
    pub warm_objective: Option<f64>,
}

/// Runs column generation for the ReLU program from `initial` patterns (plus the activation
/// patterns of `warm`'s neurons, whose weights are the first round's starting point).
#[allow(clippy::too_many_arguments)]
pub fn solve_column_generation(
    x: &Matrix,
    y: &[f64],
    loss: LossKind,
    lambda: f64,
    initial: &GatedPatterns,
    warm: Option<&Network>,
    settings: &SolverSettings,
    cg: &ColumnGenerationSettings,
    progress: &mut dyn FnMut(&Progress),
) -> Result<ColumnGenerationOutcome> {
    let start = std::time::Instant::now();
    settings.validate()?;
    if cg.batch == 0 || cg.max_rounds == 0 || cg.max_patterns == 0 {
        return Err(CvxnnError::arg(
            "patterns",
            "column generation needs batch, rounds and pattern limits of at least 1",
        ));
    }
    let (n, d) = (x.nrows(), x.ncols());
    let mut work = WorkingSet::new(n, d);
    for i in 0..initial.masks.len() {
        work.add(
            initial.masks.pattern_words(i).to_vec(),
            initial.gates.col(i),
        );
    }
    let mut vars = vec![0.0; 2 * d * work.len()];
    if let Some(net) = warm {
        if net.gates.is_some() || net.input_dim() != d {
            return Err(CvxnnError::arg(
                "init-network",
                format!(
                    "needs a ReLU network on {d} design columns; got {} inputs{}",
                    net.input_dim(),
                    if net.gates.is_some() { " (gated)" } else { "" }
                ),
            ));
        }
        vars = work.embed(x, net, &vars);
    }
    if work.is_empty() {
        return Err(CvxnnError::arg(
            "patterns",
            "no activation pattern with an active sample to start from",
        ));
    }
    let objective_of = |work: &WorkingSet, v: &[f64]| -> Result<f64> {
        let masks = work.masks();
        TwoLayerProgram::new(x, y, &masks, loss, ModelKind::Relu, lambda)?.objective(v)
    };
    // The best real network so far (the warm network, if any) and its objective.
    let mut best = objective_of(&work, &vars)?;
    let warm_objective = warm.map(|_| best);
    let mut best_net: Option<Network> = warm.cloned();

    let mut rounds = Vec::new();
    let mut multipliers: Option<Multipliers> = None;
    let mut total_iters = 0usize;
    let mut end = ColumnGenerationEnd::Budget;
    let mut oracle_ratio;
    let threshold = lambda * (1.0 + settings.tol.max(cg.round_tol));
    if let RoundSolver::Gradient {
        epochs,
        learning_rate,
        scale,
    } = cg.round_solver
    {
        // Rounds in network space: the oracle's directions join the current network as small
        // neurons, and a short Adam run from there re-optimizes every neuron (each keeps acting
        // with its own pattern, so every iterate is a real network).
        let mut net = best_net.clone().unwrap_or_else(|| empty_network(d));
        for round in 0..cg.max_rounds {
            // One pass over X gives both the predictions and the neurons' own patterns.
            let xn = x.matmul(&net.hidden);
            let mut z = vec![0.0; n];
            for (j, &a) in net.alpha.iter().enumerate() {
                for (zi, &v) in z.iter_mut().zip(xn.col(j)) {
                    *zi += a * v.max(0.0);
                }
            }
            let mut theta = vec![0.0; n];
            loss.grad(&z, y, 1, &mut theta);
            let found = search_patterns(
                x,
                &theta,
                Some(&net.hidden),
                &OracleSettings {
                    seed: cg.oracle.seed.wrapping_add(round as u64),
                    ..cg.oracle.clone()
                },
            )?;
            oracle_ratio = found.max_value / lambda;
            let own: std::collections::HashSet<Vec<u64>> = (0..net.neurons())
                .map(|j| {
                    let active: Vec<bool> = xn.col(j).iter().map(|&v| v >= 0.0).collect();
                    crate::patterns::pack(&active)
                })
                .collect();
            let fresh: Vec<_> = found
                .candidates
                .iter()
                .filter(|c| c.value > threshold && !own.contains(&c.pattern))
                .take(cg.batch)
                .collect();
            if found.max_value <= threshold {
                end = ColumnGenerationEnd::NoViolationFound;
                rounds.push(ColumnGenerationRound {
                    round,
                    patterns: own.len(),
                    objective: best,
                    restricted_bound: None,
                    oracle_ratio,
                    added: 0,
                    dropped: 0,
                    iterations: 0,
                    seconds: start.elapsed().as_secs_f64(),
                });
                break;
            }
            // Violations only at the network's own patterns: no new neuron, Adam goes on.
            let grown = grow(x, &net, &theta, &fresh, scale);
            let trained = train_gradient_from(
                x,
                y,
                loss,
                lambda,
                &GradientSettings {
                    epochs,
                    learning_rate,
                    seed: cg.oracle.seed,
                    ..GradientSettings::default()
                },
                Some(grown),
            )?;
            let before = net.neurons() + fresh.len();
            net = prune(trained.network);
            let objective = net.objective(x, y, loss, lambda)?;
            if objective < best {
                best = objective;
                best_net = Some(net.clone());
            }
            rounds.push(ColumnGenerationRound {
                round,
                patterns: own.len() + fresh.len(),
                objective: best,
                restricted_bound: None,
                oracle_ratio,
                added: fresh.len(),
                dropped: before - net.neurons(),
                iterations: epochs,
                seconds: start.elapsed().as_secs_f64(),
            });
            let k = rounds.len();
            if k > STALL_ROUNDS
                && rounds[k - 1 - STALL_ROUNDS].objective - best <= STALL_TOL * best.abs()
            {
                end = ColumnGenerationEnd::Stalled;
                break;
            }
            progress(&Progress {
                iteration: (round + 1) * epochs,
                objective: best,
                dual_bound: f64::NEG_INFINITY,
                relative_gap: f64::INFINITY,
                violation: 0.0,
            });
        }
    }
    let convex_rounds = if matches!(cg.round_solver, RoundSolver::Convex) {
        cg.max_rounds + 1
    } else {
        0
    };
    for round in 0..convex_rounds {
        let last_round = round == cg.max_rounds || total_iters >= settings.max_iter;
        let masks = work.masks();
        let program = TwoLayerProgram::new(x, y, &masks, loss, ModelKind::Relu, lambda)?;
        let remaining = settings.max_iter.saturating_sub(total_iters).max(1);
        let round_settings = SolverSettings {
            tol: cg.round_tol.max(settings.tol),
            max_iter: cg.round_max_iter.min(remaining),
            ..settings.clone()
        };
        let offset = total_iters;
        let sol = program.solve_warm(
            &round_settings,
            Some(&vars),
            multipliers.as_ref(),
            &mut |p: &Progress| {
                progress(&Progress {
                    iteration: p.iteration + offset,
                    ..*p
                })
            },
        )?;
        multipliers = sol.multipliers.clone();
        total_iters += sol.iterations;
        // The solver's point is a real network once rebuilt (each neuron acts with its own
        // pattern); its true objective decides whether it is the best so far. The solver
        // state itself stays in its slots, so the working set only grows through the oracle.
        let net = prune(Network::from_convex(ModelKind::Relu, d, &sol.x, None)?);
        let net_objective = net.objective(x, y, loss, lambda)?;
        if net_objective < best {
            best = net_objective;
            best_net = Some(net);
        }
        vars = sol.x;
        let before = work.len();
        // The oracle at the solver's point (same working set), started from its neurons too.
        let z = program.predict(&vars)?;
        let mut theta = vec![0.0; n];
        loss.grad(&z, y, 1, &mut theta);
        let found = search_patterns(
            x,
            &theta,
            Some(&active_columns(&vars, d)),
            &OracleSettings {
                seed: cg.oracle.seed.wrapping_add(round as u64),
                ..cg.oracle.clone()
            },
        )?;
        oracle_ratio = found.max_value / lambda;
        let room = cg.max_patterns.saturating_sub(work.len());
        let fresh: Vec<_> = found
            .candidates
            .iter()
            .filter(|c| c.value > threshold && work.index(&c.pattern).is_none())
            .take(if last_round { 0 } else { cg.batch.min(room) })
            .collect();
        work.age(&vars);
        let kept = if fresh.is_empty() {
            (0..before).collect()
        } else {
            work.drop_stale(cg.drop_after, &mut vars)
        };
        let dropped = before - kept.len();
        for c in &fresh {
            work.add(c.pattern.clone(), &c.gate);
        }
        vars = work.grow_vars(&vars);
        // Multipliers follow their columns; new columns start at zero.
        multipliers = multipliers.map(|m| Multipliers {
            gamma: remap_multipliers(&m.gamma, n, before, &kept, work.len()),
            rho: m.rho,
        });
        rounds.push(ColumnGenerationRound {
            round,
            patterns: masks.len(),
            objective: best,
            restricted_bound: Some(sol.dual_bound),
            oracle_ratio,
            added: fresh.len(),
            dropped,
            iterations: sol.iterations,
            seconds: start.elapsed().as_secs_f64(),
        });
        if fresh.is_empty() {
            if found.max_value <= threshold {
                end = ColumnGenerationEnd::NoViolationFound;
            }
            break;
        }
    }
    // Final solve to the requested tolerance, from the best network embedded at its own
    // patterns (exactly feasible, objective `best`), for the certificate.
    let before = work.len();
    if let Some(net) = &best_net {
        vars = work.embed(x, net, &vec![0.0; 2 * d * work.len()]);
    } else {
        vars = vec![0.0; 2 * d * work.len()];
    }
    let kept: Vec<usize> = (0..before).collect();
    let multipliers = multipliers.map(|m| Multipliers {
        gamma: remap_multipliers(&m.gamma, n, before, &kept, work.len()),
        rho: m.rho,
    });
    let masks = work.masks();
    let program = TwoLayerProgram::new(x, y, &masks, loss, ModelKind::Relu, lambda)?;
    let remaining = settings.max_iter.saturating_sub(total_iters).max(1);
    let offset = total_iters;
    let fin = program.solve_warm(
        &SolverSettings {
            max_iter: remaining.min(cg.final_max_iter).max(1),
            ..settings.clone()
        },
        Some(&vars),
        multipliers.as_ref(),
        &mut |p: &Progress| {
            progress(&Progress {
                iteration: p.iteration + offset,
                ..*p
            })
        },
    )?;
    total_iters += fin.iterations;
    let mut solution = if fin.violation <= settings.tol.min(1e-9) && fin.objective <= best {
        fin
    } else {
        Solution {
            x: vars,
            status: Status::MaxIterations,
            objective: best,
            dual_bound: fin.dual_bound,
            violation: 0.0,
            iterations: 0,
            seconds: 0.0,
            trace: fin.trace,
            multipliers: None,
            step: None,
        }
    };
    solution.violation = program.violation(&solution.x)?;
    solution.objective = program.objective(&solution.x)?;
    solution.iterations = total_iters;
    solution.seconds = start.elapsed().as_secs_f64();
    solution.status = if relative_gap(solution.objective, solution.dual_bound) <= settings.tol {
        Status::Converged
    } else {
        Status::MaxIterations
    };
    // theta at the final point; the oracle, started from the final neurons too, searches every
    // pattern (those in the program included), so its maximum scales theta into a dual point
    // that is feasible if the search missed nothing. (The exact per-cone norms of the program's
    // own patterns, as `relu_kkt_dual_bound` computes them, cost seconds on larger sets and add
    // nothing to a heuristic.)
    let z = program.predict(&solution.x)?;
    let mut theta = vec![0.0; n];
    loss.grad(&z, y, 1, &mut theta);
    let found = search_patterns(x, &theta, Some(&active_columns(&solution.x, d)), &cg.oracle)?;
    oracle_ratio = found.max_value / lambda;
    let searched_bound = dual_bound(
        crate::solver::fista::LossImage {
            loss,
            y,
            outputs: 1,
        },
        &theta,
        found.max_value,
        lambda,
    );
    if end == ColumnGenerationEnd::NoViolationFound
        && found.max_value > lambda * (1.0 + settings.tol.max(cg.round_tol))
    {
        end = ColumnGenerationEnd::Budget;
    }
    Ok(ColumnGenerationOutcome {
        gates: work.gates(),
        masks,
        solution,
        rounds,
        end,
        oracle_ratio,
        searched_bound,
        warm_objective,
    })
}

/// Drops neurons whose `|alpha| ||u||` is below `1e-4` of the largest: a first-order iterate
/// keeps many tiny groups, and snapping each to its own pattern would flood the working set (the
/// snapped objective is checked before the point is accepted).
fn prune(net: Network) -> Network {
    let size: Vec<f64> = (0..net.neurons())
        .map(|j| net.alpha[j].abs() * norm2(net.hidden.col(j)))
        .collect();
    let top = size.iter().fold(0.0f64, |a, &b| a.max(b));
    let keep: Vec<usize> = (0..size.len()).filter(|&j| size[j] >= 1e-4 * top).collect();
    let d = net.hidden.nrows();
    let hidden: Vec<f64> = keep
        .iter()
        .flat_map(|&j| net.hidden.col(j).to_vec())
        .collect();
    Network {
        hidden: Matrix::from_col_major(d, keep.len(), hidden)
            .unwrap_or_else(|| Matrix::zeros(d, 0)),
        alpha: keep.iter().map(|&j| net.alpha[j]).collect(),
        outputs: 1,
        gates: None,
    }
}

/// Multipliers of `old_p` patterns (`2 old_p` columns, constraint layout of
/// [`ArrangementOperator::constraint_position`]) moved to `new_p` patterns where pattern `k` of
/// the new set is old pattern `kept[k]` for `k < kept.len()` and new (zero) after that.
fn remap_multipliers(
    gamma: &[f64],
    n: usize,
    old_p: usize,
    kept: &[usize],
    new_p: usize,
) -> Vec<f64> {
    let mut out = vec![0.0; 2 * n * new_p];
    if gamma.len() != 2 * n * old_p {
        return out;
    }
    for (k, &i) in kept.iter().enumerate() {
        for half in 0..2 {
            let (old_col, new_col) = (half * old_p + i, half * new_p + k);
            for row in 0..n {
                out[ArrangementOperator::constraint_position(n, 2 * new_p, row, new_col)] =
                    gamma[ArrangementOperator::constraint_position(n, 2 * old_p, row, old_col)];
            }
        }
    }
    out
}

/// A network with no neuron (predicts 0).
fn empty_network(d: usize) -> Network {
    Network {
        hidden: Matrix::zeros(d, 0),
        alpha: Vec::new(),
        outputs: 1,
        gates: None,
    }
}

/// `net` plus one neuron per candidate: `u = scale * gate`, `alpha = -scale * sign(theta^T (X gate)_+)`
/// (adding it lowers the loss to first order, by more than its penalty when the value exceeds
/// lambda).
fn grow(
    x: &Matrix,
    net: &Network,
    theta: &[f64],
    fresh: &[&crate::certificate::OracleCandidate],
    scale: f64,
) -> Network {
    let d = x.ncols();
    let mut hidden = net.hidden.as_slice().to_vec();
    let mut alpha = net.alpha.clone();
    for c in fresh {
        let xu = x.matvec(&c.gate);
        let ip: f64 = xu.iter().zip(theta).map(|(a, t)| a.max(0.0) * t).sum();
        hidden.extend(c.gate.iter().map(|v| v * scale));
        alpha.push(if ip > 0.0 { -scale } else { scale });
    }
    let m = alpha.len();
    Network {
        hidden: Matrix::from_col_major(d, m, hidden).unwrap_or_else(|| Matrix::zeros(d, 0)),
        alpha,
        outputs: 1,
        gates: None,
    }
}

/// Non-zero variable columns (`d x k`), the current neurons' directions.
fn active_columns(vars: &[f64], d: usize) -> Matrix {
    let cols: Vec<f64> = vars
        .chunks(d)
        .filter(|c| norm2(c) > 0.0)
        .flatten()
        .copied()
        .collect();
    let k = cols.len() / d.max(1);
    Matrix::from_col_major(d, k, cols).unwrap_or_else(|| Matrix::zeros(d, 0))
}

/// Patterns in the working set, a realizing gate for each, and how long each has been unused.
#[derive(Clone)]
struct WorkingSet {
    n: usize,
    d: usize,
    positions: HashMap<Vec<u64>, usize>,
    words: Vec<Vec<u64>>,
    gates: Vec<Vec<f64>>,
    idle: Vec<usize>,
}

impl WorkingSet {
    fn new(n: usize, d: usize) -> Self {
        WorkingSet {
            n,
            d,
            positions: HashMap::new(),
            words: Vec::new(),
            gates: Vec::new(),
            idle: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.words.len()
    }

    fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    fn index(&self, w: &[u64]) -> Option<usize> {
        self.positions.get(w).copied()
    }

    /// Adds a pattern that has an active sample and is new; its variables come in
    /// [`WorkingSet::grow_vars`].
    fn add(&mut self, words: Vec<u64>, gate: &[f64]) {
        if words.iter().all(|&w| w == 0) || self.positions.contains_key(&words) {
            return;
        }
        self.positions.insert(words.clone(), self.words.len());
        self.words.push(words);
        self.gates.push(gate.to_vec());
        self.idle.push(0);
    }

    fn masks(&self) -> Masks {
        let mut m = Masks::new(self.n);
        for w in &self.words {
            m.push_words(w);
        }
        m
    }

    fn gates(&self) -> Matrix {
        let flat: Vec<f64> = self.gates.iter().flatten().copied().collect();
        Matrix::from_col_major(self.d, self.gates.len(), flat)
            .unwrap_or_else(|| Matrix::zeros(self.d, 0))
    }

    /// Counts rounds each pattern has had both groups at zero (`vars` laid out for `len()`).
    fn age(&mut self, vars: &[f64]) {
        let (d, p) = (self.d, self.len());
        for i in 0..p {
            let used = norm2(&vars[i * d..(i + 1) * d]) > 0.0
                || norm2(&vars[(p + i) * d..(p + i + 1) * d]) > 0.0;
            self.idle[i] = if used { 0 } else { self.idle[i] + 1 };
        }
    }

    /// Removes patterns idle for at least `after` rounds, and their (zero) variables; returns
    /// the old indices of the patterns kept, in their new order.
    fn drop_stale(&mut self, after: usize, vars: &mut Vec<f64>) -> Vec<usize> {
        let (d, p) = (self.d, self.len());
        let keep: Vec<usize> = (0..p).filter(|&i| self.idle[i] < after).collect();
        if keep.len() == p {
            return keep;
        }
        let mut v = Vec::with_capacity(2 * d * keep.len());
        for half in 0..2 {
            for &i in &keep {
                let c = half * p + i;
                v.extend_from_slice(&vars[c * d..(c + 1) * d]);
            }
        }
        *vars = v;
        let words: Vec<Vec<u64>> = keep.iter().map(|&i| self.words[i].clone()).collect();
        self.positions = words
            .iter()
            .enumerate()
            .map(|(k, w)| (w.clone(), k))
            .collect();
        self.gates = keep.iter().map(|&i| self.gates[i].clone()).collect();
        self.idle = keep.iter().map(|&i| self.idle[i]).collect();
        self.words = words;
        keep
    }

    /// Adds `net`'s neurons at their own activation patterns (new patterns join the set) to
    /// `vars` (laid out for the current set): `v = u |alpha|` in the `V` half for `alpha > 0`,
    /// in `W` otherwise. The result is exactly feasible and its objective is at most the
    /// network's (the balanced weight decay, and neurons sharing a pattern merge).
    fn embed(&mut self, x: &Matrix, net: &Network, vars: &[f64]) -> Vec<f64> {
        let d = self.d;
        let xu = x.matmul(&net.hidden);
        let mut placed = Vec::new();
        for j in 0..net.neurons() {
            let a = net.alpha[j];
            let active: Vec<bool> = xu.col(j).iter().map(|&v| v >= 0.0).collect();
            if a == 0.0 || !active.iter().any(|&b| b) {
                continue;
            }
            let words = crate::patterns::pack(&active);
            self.add(words.clone(), net.hidden.col(j));
            if let Some(i) = self.index(&words) {
                placed.push((i, a, j));
            }
        }
        let mut out = self.grow_vars(vars);
        let p = self.len();
        for (i, a, j) in placed {
            let col = if a > 0.0 { i } else { p + i };
            for (dst, &u) in out[col * d..(col + 1) * d]
                .iter_mut()
                .zip(net.hidden.col(j))
            {
                *dst += u * a.abs();
            }
        }
        out
    }

    /// `vars` laid out for the first `vars.len() / (2d)` patterns, extended with zero groups for
    /// the patterns added since.
    fn grow_vars(&self, vars: &[f64]) -> Vec<f64> {
        let (d, p) = (self.d, self.len());
        let old = vars.len() / (2 * d);
        let mut v = vec![0.0; 2 * d * p];
        v[..old * d].copy_from_slice(&vars[..old * d]);
        v[p * d..(p + old) * d].copy_from_slice(&vars[old * d..2 * old * d]);
        v
    }
}
