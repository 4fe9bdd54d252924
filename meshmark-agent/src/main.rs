use std::process::ExitCode;

use clap::Parser as _;
use meshmark_agent::cli::{run, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    run(Cli::parse()).await
}
