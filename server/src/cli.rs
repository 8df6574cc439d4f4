//! The `decentcom` command line (clap derive).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Backend, Config};
use crate::migrate::{self, MigrateError};

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
    /// Copy the database (and, when the two sides' media stores differ, every media blob) from
    /// SQLite to PostgreSQL or back, then prove the copy lossless: per-table row counts and
    /// content digests of both sides must match. The source is only read (one snapshot); the
    /// target must be empty (or, with --resume, hold an interrupted run of the same source).
    #[command(after_help = MIGRATE_EXIT_CODES)]
    Migrate(MigrateArgs),
    /// Media store maintenance.
    #[command(subcommand)]
    Media(MediaCommand),
}

#[derive(Debug, Subcommand)]
pub enum MediaCommand {
    /// Check every media row against its blob (missing, wrong size, wrong content with
    /// --verify-hashes) and list blobs no row refers to and stale temporary uploads; --repair
    /// removes those leftovers (never a blob a row refers to). Safe while servers run.
    #[command(after_help = MEDIA_CHECK_EXIT_CODES)]
    Check(MediaCheckArgs),
}

const MEDIA_CHECK_EXIT_CODES: &str = "\
Uses the server's configuration: [storage] for the database, [storage.media] for the store.
A blob without a row counts as an orphan once it is older than storage.media.stale_upload_seconds
(a younger one may belong to an upload finishing right now).

Exit codes:
  0  clean (with --repair: every leftover removed, no row broken)
  1  error (database or media store unreachable, a removal failed, ...)
  2  usage or configuration error
  3  a media row's blob is missing, of the wrong size or of the wrong content (never repaired)
  4  orphan blobs or stale temporary uploads found (run with --repair to remove them)";

/// `decentcom media check` options.
#[derive(Debug, clap::Args)]
pub struct MediaCheckArgs {
    /// Configuration file (TOML). Without it, ./decentcom.toml is read if it exists.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Also read every blob and compare its SHA-256 with its name.
    #[arg(long)]
    pub verify_hashes: bool,
    /// Remove orphan blobs and stale temporary uploads, and print what was removed.
    #[arg(long)]
    pub repair: bool,
}

const MIGRATE_EXIT_CODES: &str = "\
Both databases come from one configuration: storage.database_path is the SQLite side,
storage.database_url the PostgreSQL side. [storage.media] is the source's media store;
[migrate.target_media] the target's, when blobs must move (local <-> S3).

Exit codes:
  0  migrated (or verified, or dry run) with every table identical on both sides
  1  error (unreachable database or media store, schema of the source not this version, ...)
  2  usage or configuration error
  3  verification failed: a table differs between source and target (named in the output)
  4  target refused: it already holds data (and --resume is not given or not possible), or
     its schema version is not this binary's
  5  media blobs missing from the source store (names printed; see --allow-missing-media)
  6  the source holds values the target cannot store (SQLite -> PostgreSQL: U+0000 in text, see
     --replace-nul; text that is not UTF-8); each is listed with its table, column and row key,
     and nothing is written";

/// `decentcom migrate` options.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The side to copy from.
    #[arg(long, value_enum)]
    pub from: Side,
    /// The side to copy to.
    #[arg(long, value_enum)]
    pub to: Side,
    /// Configuration file (TOML) describing both sides. Without it, ./decentcom.toml is read if
    /// it exists; DECENTCOM_<SECTION>__<KEY> variables override it.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Only show what would be copied (rows per table, media objects and bytes); touch nothing.
    #[arg(long, conflicts_with_all = ["resume", "verify_only"])]
    pub dry_run: bool,
    /// Rows written per target transaction [default: 50000 into PostgreSQL, 10000 into SQLite]
    #[arg(long, value_name = "ROWS")]
    pub batch_size: Option<usize>,
    /// Continue an interrupted migration of the same source into this target.
    #[arg(long)]
    pub resume: bool,
    /// Only compare the two sides (row counts and content digests per table); write nothing.
    #[arg(long)]
    pub verify_only: bool,
    /// Copy even when media blobs named by the database are missing from the source store.
    #[arg(long)]
    pub allow_missing_media: bool,
    /// No progress bars and no tables: only errors (for scripts; see the exit codes).
    #[arg(long, short)]
    pub quiet: bool,
    /// Copy text holding U+0000 (which PostgreSQL cannot store) with U+FFFD in its place, and
    /// verify every other byte; without it such a source is refused (exit 6).
    #[arg(long)]
    pub replace_nul: bool,
}

/// A database kind on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    Sqlite,
    Postgres,
}

impl From<Side> for Backend {
    fn from(side: Side) -> Backend {
        match side {
            Side::Sqlite => Backend::Sqlite,
            Side::Postgres => Backend::Postgres,
        }
    }
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
            crate::logging::init(&config);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(crate::http::serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(args) => Ok(run_migrate(args)),
        Command::Media(MediaCommand::Check(args)) => Ok(run_media_check(args)),
    }
}

fn run_media_check(args: MediaCheckArgs) -> ExitCode {
    use crate::media::check;
    let config = match Config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(check::EXIT_USAGE);
        }
    };
    let options = check::Options { verify_hashes: args.verify_hashes, repair: args.repair };
    let outcome = tokio::runtime::Runtime::new().map_err(eyre::Report::from).and_then(|runtime| {
        runtime.block_on(async {
            let storage = crate::storage::open(&config.storage).await?;
            let credentials = crate::media::S3Credentials::for_provider(config.storage.media.provider);
            let blobs = crate::media::Blobs::from_config(&config.storage.media, credentials.as_ref()).await?;
            let report = check::run(storage.as_ref(), &blobs, options).await?;
            Ok((check::render(&report, options, blobs.stale_after()), report))
        })
    });
    match outcome {
        Ok((text, report)) => {
            print!("{text}");
            ExitCode::from(report.exit_code(options))
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(check::EXIT_ERROR)
        }
    }
}

fn run_migrate(args: MigrateArgs) -> ExitCode {
    let outcome = (|| {
        let config = Config::load(args.config.as_deref()).map_err(|e| MigrateError::Usage(e.to_string()))?;
        let options = migrate::Options {
            from: args.from.into(),
            to: args.to.into(),
            dry_run: args.dry_run,
            batch_size: args.batch_size.unwrap_or(migrate::default_batch_size(args.to.into())),
            resume: args.resume,
            verify_only: args.verify_only,
            allow_missing_media: args.allow_missing_media,
            quiet: args.quiet,
            nul_text: if args.replace_nul {
                migrate::unstorable::NulText::Replace
            } else {
                migrate::unstorable::NulText::Refuse
            },
        };
        let runtime = tokio::runtime::Runtime::new().map_err(|e| MigrateError::Failed(e.into()))?;
        runtime.block_on(migrate::run(&config, &options))
    })();
    match outcome {
        Ok(_) => ExitCode::from(migrate::EXIT_OK),
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            ExitCode::from(err.exit_code())
        }
    }
}

/// The error as the operator reads it (the chain of causes of an unexpected failure included).
fn describe(err: &MigrateError) -> String {
    match err {
        MigrateError::Failed(report) => format!("{report:#}"),
        other => other.to_string(),
    }
}
