//! A progress line on stderr for solves longer than about a second; hidden when stderr is not a
//! terminal or with --quiet.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use cvxnn::solver::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// Shows solver progress once a solve has run for a second.
pub struct SolveProgress {
    enabled: bool,
    start: Instant,
    bar: Option<ProgressBar>,
    stage: String,
}

impl SolveProgress {
    /// A progress reporter; does nothing when `quiet` or stderr is not a terminal.
    pub fn new(quiet: bool) -> Self {
        SolveProgress {
            enabled: !quiet && std::io::stderr().is_terminal(),
            start: Instant::now(),
            bar: None,
            stage: String::new(),
        }
    }

    /// Called by the solver at every iteration.
    pub fn update(&mut self, p: &Progress) {
        if !self.enabled || self.start.elapsed() < Duration::from_secs(1) {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        bar.set_message(format!(
            "{}iteration {}  objective {:.6e}  rel. gap {:.2e}  violation {:.1e}",
            self.stage, p.iteration, p.objective, p.relative_gap, p.violation
        ));
    }

    /// Text shown before the solver's numbers (e.g. which lambda of a path is being solved).
    pub fn set_stage(&mut self, stage: String) {
        self.stage = stage;
    }

    /// Removes the line.
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
