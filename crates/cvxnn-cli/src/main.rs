//! `cvxnn`: train two-layer ReLU networks to their global optimum through their convex programs.
//! Thin layer over the library: argument parsing, progress, printing. No math here.

mod args;
mod baseline;
mod cnn;
mod commands;
mod path;
mod plot;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
