//! The `decentcom` command line (clap derive).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(name = "decentcom", version, about = "A self-hosted, Discord-like chat server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: load the configuration, connect to the database (running its embedded
    /// migrations), and serve the REST API and gateway until SIGINT or SIGTERM.
    Serve(ConfigArg),
    /// Print the effective configuration (defaults, file and DECENTCOM_* environment merged) as
    /// TOML, with secrets redacted.
    Config(ConfigArg),
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Configuration file (TOML). Without it, ./decentcom.toml is read if it exists.
    /// Every key can be overridden by DECENTCOM_<SECTION>__<KEY> environment variables.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> eyre::Result<ExitCode> {
    match cli.command {
        Command::Config(arg) => {
            let config = Config::load(arg.config.as_deref())?;
            print!("{}", config.to_redacted_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(arg) => {
            let config = Config::load(arg.config.as_deref())?;
            crate::http::init_tracing();
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(crate::http::serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
