//! The `learnlake` binary: one executable for every user (PRODUCT.md §12).
//! Parses the command line, loads the config, and hands off to the library.
//! Human output goes to stdout; logs go to stderr.

mod charts;
mod cli;
mod commands;
mod flags;
mod mail;
mod output;
mod progress;
mod pseudonym;
mod report;
mod rows;
mod runs;
mod scheduler;
mod students;
mod templates;
mod webhooks;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use learnlake_pipeline::Error as PipelineError;

use cli::{Cli, LogFormat};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use commands::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon and scheduled runs log their runs and steps by default:
    // an operator reads them in the journal or the container's log.
    let verbose = match cli.command {
        cli::Command::Schedule | cli::Command::Run { .. } => cli.global.verbose.max(1),
        _ => cli.global.verbose,
    };
    init_tracing(cli.global.log_format, verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Deep query plans are encoded and decoded recursively (a Ballista
        // scheduler or executor in this process, and the client).
        .thread_stack_size(32 << 20)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The error and its causes on one line, each cause once: a library error's
/// message already holds its source, so a cause that the text so far
/// contains is not repeated.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(text.trim()) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text.trim());
    }
    // DataFusion puts its own causes on lines of their own.
    line.replace("\ncaused by\n", ": ").replace('\n', " ")
}

/// 2 usage/config, 3 lake or landing unreachable, 1 any other failure
/// (documented in `cli::EXIT_CODES`).
fn exit_code(error: &anyhow::Error) -> u8 {
    match error.downcast_ref::<Failure>() {
        Some(Failure::Usage(_)) => return 2,
        Some(Failure::Unreachable(_)) => return 3,
        None => {}
    }
    let library = error.downcast_ref::<PipelineError>().or_else(|| {
        error
            .chain()
            .find_map(|c| c.downcast_ref::<PipelineError>())
    });
    match library {
        Some(
            PipelineError::Config(_)
            | PipelineError::InvalidWeeks(_)
            | PipelineError::EngineSetting { .. },
        ) => 2,
        Some(PipelineError::InvalidUrl { .. } | PipelineError::ObjectStore { .. }) => 3,
        _ => 1,
    }
}

/// `warn` by default, `-v` info, `-vv` debug, `-vvv` trace; `LEARNLAKE_LOG`
/// or else `RUST_LOG` choose exactly. Colour only on a terminal.
fn init_tracing(format: LogFormat, verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        // delta-rs logs a commit that waited for another writer and was
        // then checked and retried as a warning; it is routine here.
        0 => "warn,deltalake_core=error,buoyant_kernel=error,buoyant_kernel_engine=error",
        1 => {
            "info,datafusion=warn,sqllogictest=warn,deltalake_core=warn,buoyant_kernel=warn,buoyant_kernel_engine=warn"
        }
        2 => "debug,datafusion=info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("LEARNLAKE_LOG")
        .or_else(|_| EnvFilter::try_from_env("RUST_LOG"))
        .unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_target(false).init(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use anyhow::Context;

    use super::*;

    fn missing_file() -> PipelineError {
        PipelineError::ReadFile {
            path: PathBuf::from("/no/such/file.csv"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }
    }

    #[test]
    fn each_cause_is_printed_once() {
        let error = Err::<(), _>(missing_file()).context("ingest").unwrap_err();
        assert_eq!(
            one_line(&error),
            "ingest: could not read /no/such/file.csv: entity not found"
        );
        let error = anyhow::Error::new(std::io::Error::other("disk full")).context("writing x");
        assert_eq!(one_line(&error), "writing x: disk full");
    }

    #[test]
    fn exit_codes_tell_usage_unreachable_and_failed_runs_apart() {
        let config = anyhow::Error::new(PipelineError::Config("timezone: bad".into()));
        assert_eq!(exit_code(&config), 2);
        let weeks = anyhow::Error::new(PipelineError::InvalidWeeks("x".into())).context("analyze");
        assert_eq!(exit_code(&weeks), 2);
        let lake = Err::<(), _>(PipelineError::InvalidUrl {
            url: "s3://x".into(),
            reason: "no".into(),
        })
        .with_context(|| Failure::Unreachable("cannot open the lake".into()))
        .unwrap_err();
        assert_eq!(exit_code(&lake), 3);
        let empty = anyhow::Error::new(PipelineError::NothingToAnalyze("no activity".into()));
        assert_eq!(exit_code(&empty), 1);
        assert_eq!(exit_code(&anyhow::anyhow!("boom")), 1);
    }
}
