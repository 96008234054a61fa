use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    ringraft::cli::run(ringraft::cli::Cli::parse())
}
